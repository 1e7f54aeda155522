package dist

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"sigs.k8s.io/yaml"
)

// krewPlugin is the part of krew's Plugin type that krew reads to install.
type krewPlugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		Homepage         string `json:"homepage"`
		ShortDescription string `json:"shortDescription"`
		Description      string `json:"description"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

// TestMakeARelease makes a release for this machine's platform: the
// archive's binary says its version, every artifact's checksum is in
// SHA256SUMS, the krew manifest points at the archive with its checksum,
// the chart carries the version, and the bundle installs the image asked
// for.
func TestMakeARelease(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	const version = "v9.8.7-rc.1"
	host := Platform{runtime.GOOS, runtime.GOARCH}
	image := ImageRepository + "@sha256:" + strings.Repeat("ab", 32)
	archives, err := Make(Options{Root: root, Out: out, Version: version, URL: "https://example.com/dl/", Image: image, Platforms: []Platform{host}})
	if err != nil {
		t.Fatal(err)
	}
	if len(archives) != 1 || archives[0].Name != fmt.Sprintf("kubectl-podpreset_%s_%s_%s.tar.gz", version, host.OS, host.Arch) {
		t.Fatalf("archives %+v", archives)
	}

	// The binary, out of its archive, says its version.
	f, err := os.Open(filepath.Join(out, archives[0].Name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == "kubectl-podpreset" {
			bin := filepath.Join(t.TempDir(), "kubectl-podpreset")
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bin, b, 0o755); err != nil {
				t.Fatal(err)
			}
			got, err := exec.Command(bin, "--version").Output()
			if err != nil || string(got) != "kubectl-podpreset "+version+"\n" {
				t.Errorf("kubectl-podpreset --version: %q (%v)", got, err)
			}
		}
	}
	if strings.Join(names, " ") != "kubectl-podpreset README.md" {
		t.Errorf("the archive holds %v", names)
	}

	// Every artifact is in SHA256SUMS, with its checksum.
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", line)
		}
		listed[name] = sum
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "SHA256SUMS" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(out, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		if listed[e.Name()] != hex.EncodeToString(h[:]) {
			t.Errorf("%s: SHA256SUMS says %q, the file's is %x", e.Name(), listed[e.Name()], h)
		}
		delete(listed, e.Name())
	}
	if len(listed) > 0 {
		t.Errorf("SHA256SUMS lists files that are not there: %v", listed)
	}

	// The krew manifest.
	var p krewPlugin
	b, err := os.ReadFile(filepath.Join(out, "podpreset.krew.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		t.Fatalf("podpreset.krew.yaml: %v", err)
	}
	if p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || p.Kind != "Plugin" || p.Metadata.Name != "podpreset" ||
		p.Spec.Version != version || p.Spec.Homepage == "" || p.Spec.ShortDescription == "" || p.Spec.Description == "" || len(p.Spec.Platforms) != 1 {
		t.Fatalf("krew manifest %+v", p)
	}
	pl := p.Spec.Platforms[0]
	if pl.Selector.MatchLabels["os"] != host.OS || pl.Selector.MatchLabels["arch"] != host.Arch || pl.URI != "https://example.com/dl/"+archives[0].Name ||
		pl.SHA256 != archives[0].SHA256 || pl.Bin != "kubectl-podpreset" {
		t.Errorf("krew platform %+v, archive %+v", pl, archives[0])
	}

	// The chart.
	c, err := loader.Load(filepath.Join(out, "podpreset-9.8.7-rc.1.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metadata.Version != "9.8.7-rc.1" || c.Metadata.AppVersion != version || len(c.CRDObjects()) != 3 {
		t.Errorf("the chart: version %s, appVersion %s, %d CRDs", c.Metadata.Version, c.Metadata.AppVersion, len(c.CRDObjects()))
	}

	// The bundle installs the image, pinned.
	bundle, err := os.ReadFile(filepath.Join(out, "podpreset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(bundle), "image: "+image+"\n") || strings.Contains(string(bundle), ":v0.1.0") {
		t.Errorf("the bundle does not install %s", image)
	}
}

// TestKrewManifestForEveryPlatform: one krew platform per archive, with
// the Windows binaries' .exe.
func TestKrewManifestForEveryPlatform(t *testing.T) {
	var archives []Archive
	for _, p := range Platforms {
		bin := "kubectl-podpreset"
		if p.OS == "windows" {
			bin += ".exe"
		}
		archives = append(archives, Archive{Platform: p, Name: "a-" + p.OS + "-" + p.Arch, SHA256: strings.Repeat("0", 64), Bin: bin})
	}
	b, err := KrewManifest("v1.2.3", "https://example.com/v1.2.3", archives)
	if err != nil {
		t.Fatal(err)
	}
	var p krewPlugin
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.Platforms) != 6 {
		t.Fatalf("%d platforms", len(p.Spec.Platforms))
	}
	for i, pl := range p.Spec.Platforms {
		a := archives[i]
		if pl.Selector.MatchLabels["os"] != a.OS || pl.Selector.MatchLabels["arch"] != a.Arch || pl.Bin != a.Bin || pl.URI != "https://example.com/v1.2.3/"+a.Name {
			t.Errorf("platform %d: %+v for %+v", i, pl, a)
		}
		if (a.OS == "windows") != strings.HasSuffix(pl.Bin, ".exe") {
			t.Errorf("%s/%s: bin %s", a.OS, a.Arch, pl.Bin)
		}
	}
}

// TestBadVersionsAndImages are refused, naming what is wrong.
func TestBadVersionsAndImages(t *testing.T) {
	for _, v := range []string{"", "1.2.3", "v1.2", "v1.x.3", "v1.2.3.4"} {
		if _, err := Make(Options{Version: v}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("version %q", v)) {
			t.Errorf("version %q: %v", v, err)
		}
	}
	for _, img := range []string{"", "podpreset-webhook", "registry:5000/podpreset-webhook"} {
		if _, err := Bundle("../..", img); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("image %q", img)) {
			t.Errorf("image %q: %v", img, err)
		}
	}
}
