// Package image builds podpreset's container images without Docker or a
// registry: the webhook image that `make image` writes, and the small images
// the node tests run (a sandbox "pause" image and a workload that reports
// what it received).
//
// An image is one layer of files on an empty base (no shell, no package
// manager), a config with the user, entrypoint and labels, and nothing that
// depends on when or where it was built: file times and the creation time
// are a fixed date (the commit's), entries are sorted, owners are root. The
// same inputs give the same digest. go-containerregistry does the rest:
// layer digests, config, manifest, the OCI layout and the `docker save`
// tarball that `ctr images import` and `docker load` read. The layer's tar
// is written here (a few headers with fixed modes and times), as
// go-containerregistry's own helper writes files without permissions.
package image

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// File is one file of an image.
type File struct {
	// Path is absolute, such as /podpreset-webhook.
	Path string
	// Mode is the permission bits; 0644 when zero.
	Mode int64
	// Data is the content.
	Data []byte
	// Link, when set, makes the file a symbolic link to it (Data unused).
	Link string
}

// Spec is what an image holds.
type Spec struct {
	Files      []File
	User       string // "65532:65532"
	Entrypoint []string
	Cmd        []string
	Env        []string
	Labels     map[string]string
	// Created is the time every file and the image carry: the commit's,
	// for a reproducible digest.
	Created time.Time
	// Arch is the CPU architecture (amd64, arm64).
	Arch string
}

// NonRoot is the user the webhook runs as, with the passwd and group files
// that name it (distroless's numbers).
const NonRoot = "65532:65532"

// BaseFiles are the files every image gets besides its own: /etc/passwd
// and /etc/group naming root and nonroot, the CA certificates (the Mozilla
// roots of golang.org/x/crypto/x509roots/fallback, pinned in go.mod, so the
// bundle is the same on every machine), and /tmp.
func BaseFiles() []File {
	return []File{
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{Path: "/etc/ssl/certs/ca-certificates.crt", Data: CABundle()},
	}
}

// CABundle is the PEM of the unconstrained Mozilla roots.
func CABundle() []byte {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue // distrusted after a date: no PEM can say so
		}
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
	}
	return b.Bytes()
}

// Build assembles an image.
func Build(s Spec) (v1.Image, error) {
	layer, err := filesLayer(s.Files, s.Created)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: s.Created}, CreatedBy: "podpreset internal/image", Comment: fmt.Sprintf("%d files", len(s.Files))}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", s.Arch
	cf.Created = v1.Time{Time: s.Created}
	cf.Config.User = s.User
	cf.Config.Entrypoint = s.Entrypoint
	cf.Config.Cmd = s.Cmd
	cf.Config.Env = s.Env
	cf.Config.Labels = s.Labels
	cf.Config.WorkingDir = "/"
	return mutate.ConfigFile(img, cf)
}

// filesLayer writes the files, and the directories above them, into one
// layer: sorted, owned by root, dated created.
func filesLayer(files []File, created time.Time) (v1.Layer, error) {
	dirs := map[string]bool{"/tmp": true}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			return nil, fmt.Errorf("image file %q: want a clean absolute path", f.Path)
		}
		for d := path.Dir(f.Path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	type entry struct {
		hdr  tar.Header
		data []byte
	}
	var entries []entry
	for d := range dirs {
		mode := int64(0o755)
		if d == "/tmp" {
			mode = 0o1777
		}
		entries = append(entries, entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: mode}})
	}
	for _, f := range files {
		h := tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, Size: int64(len(f.Data))}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if f.Link != "" {
			h = tar.Header{Typeflag: tar.TypeSymlink, Name: h.Name, Linkname: f.Link, Mode: 0o777}
		}
		entries = append(entries, entry{hdr: h, data: f.Data})
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.hdr.Name, b.hdr.Name) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.ModTime, h.Format = created.UTC(), tar.FormatPAX
		h.Uname, h.Gname = "root", "root"
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// WriteLayout writes an image into an OCI image layout directory, tagged
// ref (the org.opencontainers.image.ref.name annotation).
func WriteLayout(dir string, img v1.Image, ref string) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing the OCI layout %s: %w", dir, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		return fmt.Errorf("writing the image into %s: %w", dir, err)
	}
	return nil
}

// WriteTarball writes an image as a `docker save` tarball tagged ref.
func WriteTarball(file string, img v1.Image, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}

// Labels of the webhook image (OCI annotation keys).
const (
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
	LabelCreated  = "org.opencontainers.image.created"
	LabelTitle    = "org.opencontainers.image.title"
)

// Source is where the webhook's source lives.
const Source = "https://github.com/podpreset/podpreset"

// Webhook is the spec of the podpreset-webhook image: the static binary as
// the entrypoint, run as nonroot (65532), with the CA certificates, no
// shell.
func Webhook(binary []byte, version, revision string, created time.Time, arch string) Spec {
	return Spec{
		Files:      append(BaseFiles(), File{Path: "/podpreset-webhook", Mode: 0o755, Data: binary}),
		User:       NonRoot,
		Entrypoint: []string{"/podpreset-webhook"},
		Env:        []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		Labels: map[string]string{LabelVersion: version, LabelRevision: revision, LabelSource: Source,
			LabelCreated: created.UTC().Format(time.RFC3339), LabelTitle: "podpreset-webhook"},
		Created: created,
		Arch:    arch,
	}
}
