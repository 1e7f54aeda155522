// Command image builds and pushes podpreset's container image without
// Docker (make image, make image-push): see internal/image.
//
//	image webhook --binary FILE --version V --revision R --created TIME --arch A --ref REF --out DIR
//	    writes DIR/oci (an OCI image layout) and DIR/podpreset-webhook.tar
//	    (a `docker save` tarball, for `docker load` and `ctr images import`)
//	    and prints the image's digest.
//	image push --layout DIR --to REGISTRY/NAME:TAG
//	    pushes the image of an OCI layout, with the credentials of
//	    ~/.docker/config.json (docker login, or a credential helper).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/podpreset/podpreset/internal/image"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: image webhook|push [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "webhook":
		binary := fs.String("binary", "", "the static linux podpreset-webhook binary")
		version := fs.String("version", "dev", "the version label")
		revision := fs.String("revision", "", "the git commit")
		created := fs.String("created", "", "the commit's time, RFC 3339: every file and the image carry it")
		arch := fs.String("arch", "amd64", "the binary's architecture")
		ref := fs.String("ref", "", "the image's name and tag")
		out := fs.String("out", "", "the output directory")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *binary == "" || *ref == "" || *out == "" || *created == "" {
			return errors.New("webhook: --binary, --ref, --out and --created are needed")
		}
		at, err := time.Parse(time.RFC3339, *created)
		if err != nil {
			return fmt.Errorf("--created %q: %w", *created, err)
		}
		b, err := os.ReadFile(*binary)
		if err != nil {
			return err
		}
		img, err := image.Build(image.Webhook(b, *version, *revision, at, *arch))
		if err != nil {
			return err
		}
		if err := os.RemoveAll(*out); err != nil {
			return err
		}
		if err := image.WriteLayout(filepath.Join(*out, "oci"), img, *ref); err != nil {
			return err
		}
		if err := image.WriteTarball(filepath.Join(*out, "podpreset-webhook.tar"), img, *ref); err != nil {
			return err
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s %s\n", *ref, d)
		return os.WriteFile(filepath.Join(*out, "digest"), []byte(d.String()+"\n"), 0o644)
	case "push":
		dir := fs.String("layout", "", "the OCI layout make image wrote")
		to := fs.String("to", "", "where to push: registry/name:tag")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ref, err := name.ParseReference(*to)
		if err != nil {
			return fmt.Errorf("--to %q: %w", *to, err)
		}
		p, err := layout.FromPath(*dir)
		if err != nil {
			return fmt.Errorf("--layout %s (run make image first): %w", *dir, err)
		}
		idx, err := p.ImageIndex()
		if err != nil {
			return err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		if len(m.Manifests) != 1 {
			return fmt.Errorf("%s holds %d images, want 1", *dir, len(m.Manifests))
		}
		img, err := idx.Image(m.Manifests[0].Digest)
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		if err := remote.Write(ref, img, remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		fmt.Printf("pushed %s@%s\n", ref.Context(), m.Manifests[0].Digest)
		return nil
	}
	return fmt.Errorf("unknown command %q: want webhook or push", args[0])
}
