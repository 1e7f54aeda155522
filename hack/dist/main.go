// Command dist makes a release's artifacts into --out (make dist
// VERSION=vX.Y.Z): see package internal/dist.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/podpreset/podpreset/internal/dist"
)

func main() {
	version := flag.String("version", "", "the release's version, vX.Y.Z")
	out := flag.String("out", "_output/dist", "where the artifacts go")
	repo := flag.String("image-repository", dist.ImageRepository, "the webhook image's name in the install bundle")
	digestFile := flag.String("digest-file", "_output/image/digest", "the image's digest, written by make image; the bundle pins it when the file exists, else it names the version's tag")
	url := flag.String("url", "", "where the archives are downloaded from (default the GitHub release of the version)")
	flag.Parse()
	if *url == "" {
		*url = "https://github.com/podpreset/podpreset/releases/download/" + *version
	}
	image := *repo + ":" + *version
	if b, err := os.ReadFile(*digestFile); err == nil {
		image = *repo + "@" + strings.TrimSpace(string(b))
	}
	root, err := os.Getwd()
	if err == nil {
		_, err = dist.Make(dist.Options{Root: root, Out: filepath.Clean(*out), Version: *version, URL: *url, Image: image})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
	fmt.Printf("dist: %s: the CLI for %d platforms, SHA256SUMS, podpreset.krew.yaml, podpreset.yaml (image %s) and the chart\n", *out, len(dist.Platforms), image)
}
