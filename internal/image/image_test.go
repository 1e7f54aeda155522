package image

import (
	"archive/tar"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certutil "k8s.io/client-go/util/cert"
)

func testSpec() Spec {
	return Spec{
		Files:      append(BaseFiles(), File{Path: "/podpreset-webhook", Mode: 0o755, Data: []byte("binary")}),
		User:       NonRoot,
		Entrypoint: []string{"/podpreset-webhook"},
		Labels:     map[string]string{"org.opencontainers.image.version": "v1.2.3"},
		Created:    time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		Arch:       "amd64",
	}
}

// TestBuildIsReproducible: the same inputs give the same digest, and a
// changed byte changes it.
func TestBuildIsReproducible(t *testing.T) {
	digest := func(s Spec) string {
		img, err := Build(s)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	a, b := digest(testSpec()), digest(testSpec())
	if a != b {
		t.Errorf("two builds of the same spec: %s, then %s", a, b)
	}
	changed := testSpec()
	changed.Files[len(changed.Files)-1].Data = []byte("binary2")
	if digest(changed) == a {
		t.Error("another binary gave the same digest")
	}
	later := testSpec()
	later.Created = later.Created.Add(time.Second)
	if digest(later) == a {
		t.Error("another creation time gave the same digest")
	}
}

func TestImageContents(t *testing.T) {
	img, err := Build(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || !cmp.Equal(cf.Config.Entrypoint, []string{"/podpreset-webhook"}) || cf.OS != "linux" || cf.Architecture != "amd64" ||
		cf.Config.Labels["org.opencontainers.image.version"] != "v1.2.3" {
		t.Errorf("config %+v", cf.Config)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	modes := map[string]int64{}
	var ca []byte
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		modes[h.Name] = h.Mode
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(testSpec().Created) {
			t.Errorf("%s: owner %d:%d, time %s", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		if h.Name == "etc/ssl/certs/ca-certificates.crt" {
			if ca, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := map[string]int64{"etc/": 0o755, "etc/group": 0o644, "etc/passwd": 0o644, "etc/ssl/": 0o755, "etc/ssl/certs/": 0o755,
		"etc/ssl/certs/ca-certificates.crt": 0o644, "podpreset-webhook": 0o755, "tmp/": 0o1777}
	if d := cmp.Diff(want, modes); d != "" {
		t.Errorf("files and modes (-want +got):\n%s", d)
	}
	certs, err := certutil.ParseCertsPEM(ca)
	if err != nil || len(certs) < 100 {
		t.Errorf("the CA bundle holds %d certificates (%v)", len(certs), err)
	}
}
