// Package dist makes podpreset's release artifacts (make dist): the
// kubectl-podpreset CLI for each platform in archives with their SHA-256
// checksums, a krew plugin manifest for them, the install bundle (the
// kustomize install rendered into one file, its image pinned by digest when
// make image has run) and the packaged Helm chart.
package dist

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Platform is an operating system and an architecture, as GOOS and GOARCH.
type Platform struct{ OS, Arch string }

// Platforms are those the CLI is released for.
var Platforms = []Platform{{"linux", "amd64"}, {"linux", "arm64"}, {"darwin", "amd64"}, {"darwin", "arm64"}, {"windows", "amd64"}, {"windows", "arm64"}}

// ImageRepository is the webhook image's name in the install.
const ImageRepository = "ghcr.io/podpreset/podpreset-webhook"

// Options says what to make and where.
type Options struct {
	// Root is the repository; Out the directory the artifacts go to.
	Root, Out string
	// Version is the release's version, vMAJOR.MINOR.PATCH.
	Version string
	// URL is where the archives are downloaded from (the krew manifest's
	// uri is URL/archive).
	URL string
	// Image is the webhook image the bundle installs: a name with a tag
	// or a digest.
	Image string
	// Platforms are the CLI's; nil: all of Platforms.
	Platforms []Platform
}

// Archive is one platform's CLI archive.
type Archive struct {
	Platform
	// Name is the archive's file name; SHA256 its checksum in hex.
	Name, SHA256 string
	// Bin is the executable's name inside it.
	Bin string
}

// Make builds every artifact into o.Out and returns the archives.
func Make(o Options) ([]Archive, error) {
	if !validVersion(o.Version) {
		return nil, fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH (an optional -suffix)", o.Version)
	}
	if o.Platforms == nil {
		o.Platforms = Platforms
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	var archives []Archive
	var sums strings.Builder
	for _, p := range o.Platforms {
		a, err := cli(o, p)
		if err != nil {
			return nil, err
		}
		archives = append(archives, a)
		fmt.Fprintf(&sums, "%s  %s\n", a.SHA256, a.Name)
	}
	krew, err := KrewManifest(o.Version, o.URL, archives)
	if err != nil {
		return nil, err
	}
	bundle, err := Bundle(o.Root, o.Image)
	if err != nil {
		return nil, err
	}
	for name, b := range map[string][]byte{"podpreset.krew.yaml": krew, "podpreset.yaml": bundle} {
		if err := os.WriteFile(filepath.Join(o.Out, name), b, 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(&sums, "%s  %s\n", sum(b), name)
	}
	chart, err := Chart(o.Root, o.Version, o.Out)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(chart)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&sums, "%s  %s\n", sum(b), filepath.Base(chart))
	return archives, os.WriteFile(filepath.Join(o.Out, "SHA256SUMS"), []byte(sums.String()), 0o644)
}

func validVersion(v string) bool {
	core, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), "-")
	parts := strings.Split(core, ".")
	if !strings.HasPrefix(v, "v") || len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// cli builds kubectl-podpreset for a platform, the version stamped in,
// and archives it with the README: a tar.gz, a zip for Windows.
func cli(o Options, p Platform) (Archive, error) {
	bin := "kubectl-podpreset"
	if p.OS == "windows" {
		bin += ".exe"
	}
	tmp, err := os.MkdirTemp("", "dist-")
	if err != nil {
		return Archive{}, err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+o.Version, "-o", filepath.Join(tmp, bin), "./cmd/kubectl-podpreset")
	cmd.Dir = o.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Archive{}, fmt.Errorf("building kubectl-podpreset for %s/%s: %w\n%s", p.OS, p.Arch, err, out)
	}
	binary, err := os.ReadFile(filepath.Join(tmp, bin))
	if err != nil {
		return Archive{}, err
	}
	readme, err := os.ReadFile(filepath.Join(o.Root, "README.md"))
	if err != nil {
		return Archive{}, err
	}
	files := []file{{bin, binary, 0o755}, {"README.md", readme, 0o644}}
	var buf bytes.Buffer
	name := fmt.Sprintf("kubectl-podpreset_%s_%s_%s", o.Version, p.OS, p.Arch)
	if p.OS == "windows" {
		name += ".zip"
		err = writeZip(&buf, files)
	} else {
		name += ".tar.gz"
		err = writeTarGz(&buf, files)
	}
	if err != nil {
		return Archive{}, err
	}
	if err := os.WriteFile(filepath.Join(o.Out, name), buf.Bytes(), 0o644); err != nil {
		return Archive{}, err
	}
	return Archive{Platform: p, Name: name, SHA256: sum(buf.Bytes()), Bin: bin}, nil
}

type file struct {
	name string
	data []byte
	mode int64
}

// epoch is every archived file's time: the same sources give the same
// archive.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func writeTarGz(w io.Writer, files []file) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func writeZip(w io.Writer, files []file) error {
	zw := zip.NewWriter(w)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: epoch}
		h.SetMode(os.FileMode(f.mode))
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := fw.Write(f.data); err != nil {
			return err
		}
	}
	return zw.Close()
}

// KrewManifest is the krew plugin manifest (krew-index's plugins/podpreset.yaml)
// for these archives.
func KrewManifest(version, url string, archives []Archive) ([]byte, error) {
	type selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	}
	type platform struct {
		Selector selector `json:"selector"`
		URI      string   `json:"uri"`
		SHA256   string   `json:"sha256"`
		Bin      string   `json:"bin"`
	}
	var platforms []platform
	for _, a := range archives {
		platforms = append(platforms, platform{Selector: selector{MatchLabels: map[string]string{"os": a.OS, "arch": a.Arch}},
			URI: strings.TrimSuffix(url, "/") + "/" + a.Name, SHA256: a.SHA256, Bin: a.Bin})
	}
	return yaml.Marshal(map[string]any{
		"apiVersion": "krew.googlecontainertools.github.com/v1alpha2",
		"kind":       "Plugin",
		"metadata":   map[string]any{"name": "podpreset"},
		"spec": map[string]any{
			"version":          version,
			"homepage":         "https://github.com/podpreset/podpreset",
			"shortDescription": "See what PodPresets do to workloads, offline or in a cluster",
			"description": `kubectl podpreset is the companion of the podpreset admission webhook:
  apply     what the webhook would inject into workloads, from files, offline
  explain   which presets select a pod, why (not), and what it got of each
  status    the presets of a cluster with their pods' counts
  migrate   settings.k8s.io/v1alpha1 PodPresets to podpreset.dev/v1alpha1
`,
			"platforms": platforms,
		},
	})
}

// Bundle renders manifests/default with the image set to image (a name
// with a tag or a digest), into one file of YAML documents.
func Bundle(root, image string) ([]byte, error) {
	name, digest, hasDigest := strings.Cut(image, "@")
	tag := ""
	if !hasDigest {
		if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
			name, tag = image[:i], image[i+1:]
		}
	}
	if name == "" || (digest == "" && tag == "") {
		return nil, fmt.Errorf("image %q: want name:tag or name@sha256:digest", image)
	}
	fs := filesys.MakeFsOnDisk()
	overlay, err := os.MkdirTemp(filepath.Join(root, "manifests"), ".bundle-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(overlay) }()
	k := types.Kustomization{
		Resources: []string{"../default"},
		Images:    []types.Image{{Name: ImageRepository, NewName: name, NewTag: tag, Digest: digest}},
	}
	b, err := yaml.Marshal(k)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), b, 0o644); err != nil {
		return nil, err
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, overlay)
	if err != nil {
		return nil, fmt.Errorf("kustomize build manifests/default: %w", err)
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, err
	}
	return append([]byte("# podpreset, image "+image+": kubectl apply --server-side -f podpreset.yaml\n"), out...), nil
}

// Chart packages the Helm chart with this version (its appVersion, and
// so the image tag it installs by default) into dir, and returns the
// package's path.
func Chart(root, version, dir string) (string, error) {
	c, err := loader.Load(filepath.Join(root, "manifests", "helm", "podpreset"))
	if err != nil {
		return "", fmt.Errorf("loading the chart: %w", err)
	}
	c.Metadata.Version = strings.TrimPrefix(version, "v")
	c.Metadata.AppVersion = version
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("the chart: %w", err)
	}
	return chartutil.Save(c, dir)
}
