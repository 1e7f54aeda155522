// Package cluster starts a real, local Kubernetes control plane for the e2e
// tests and `make run`: etcd and kube-apiserver through controller-runtime's
// envtest, kube-controller-manager (so that Deployments create pods), the
// podpreset CRDs and webhook configurations, and the podpreset-webhook binary
// itself as a subprocess, all on loopback. The servers are the ones
// hack/build-servers.sh builds into bin/; a missing one is an error that says
// how to build it, never a skip.
//
// The webhook configurations are the kustomize build of manifests/webhook
// (so the real namespaceSelector is in force), with each clientConfig
// rewritten by envtest to a URL on loopback signed by envtest's own CA.
package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// WebhookNamespace is the namespace the webhook is told it runs in; the
// pod webhook's namespaceSelector leaves it alone.
const WebhookNamespace = "podpreset-system"

// Cluster is a running control plane.
type Cluster struct {
	// Root is the repository root.
	Root string
	// Config is an admin client configuration.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file.
	Kubeconfig string

	env     *envtest.Environment
	dir     string
	kcm     *process
	webhook *process
	metrics string // the webhook's /metrics URL
	logs    io.Writer
}

// Options says what to start.
type Options struct {
	// Root is the repository root: bin/, manifests/ and cmd/ are under it.
	Root string
	// ControllerManager starts kube-controller-manager.
	ControllerManager bool
	// Logs receives the output of the subprocesses; nil discards it.
	Logs io.Writer
}

// Binaries the control plane needs in bin/.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"}

// Start starts etcd, kube-apiserver, the CRDs and webhook configurations,
// and kube-controller-manager if asked. Stop it with Stop.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	bin := filepath.Join(opts.Root, "bin")
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("bin/%s is missing: run hack/build-servers.sh (make test does): %w", b, err)
		}
	}
	logs := opts.Logs
	if logs == nil {
		logs = io.Discard
	}
	mutating, validating, err := webhookConfigurations(filepath.Join(opts.Root, "manifests", "webhook"))
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "podpreset-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Root: opts.Root, dir: dir, logs: logs}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	c.env = &envtest.Environment{
		BinaryAssetsDirectory: bin,
		CRDDirectoryPaths:     []string{filepath.Join(opts.Root, "manifests", "crd")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			LocalServingHost:   "127.0.0.1",
			MutatingWebhooks:   mutating,
			ValidatingWebhooks: validating,
		},
	}
	if c.Config, err = c.env.Start(); err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	user, err := c.env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding the admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("writing the admin kubeconfig: %w", err)
	}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	if opts.ControllerManager {
		c.kcm, err = startProcess(ctx, "kube-controller-manager", logs, filepath.Join(bin, "kube-controller-manager"),
			"--kubeconfig="+c.Kubeconfig,
			"--controllers=deployment-controller,replicaset-controller,garbage-collector-controller",
			"--leader-elect=false",
			"--secure-port=0",
			"--use-service-account-credentials=false",
			"--concurrent-deployment-syncs=2", "--concurrent-replicaset-syncs=2",
		)
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// webhookConfigurations builds manifests/webhook with kustomize.
func webhookConfigurations(dir string) ([]*admissionregistrationv1.MutatingWebhookConfiguration, []*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var mutating []*admissionregistrationv1.MutatingWebhookConfiguration
	var validating []*admissionregistrationv1.ValidatingWebhookConfiguration
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			return nil, nil, err
		}
		switch r.GetKind() {
		case "MutatingWebhookConfiguration":
			var w admissionregistrationv1.MutatingWebhookConfiguration
			if err := yaml.UnmarshalStrict(b, &w); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", r.CurId(), err)
			}
			mutating = append(mutating, &w)
		case "ValidatingWebhookConfiguration":
			var w admissionregistrationv1.ValidatingWebhookConfiguration
			if err := yaml.UnmarshalStrict(b, &w); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", r.CurId(), err)
			}
			validating = append(validating, &w)
		}
	}
	if len(mutating) == 0 || len(validating) == 0 {
		return nil, nil, fmt.Errorf("kustomize build %s: no webhook configurations", dir)
	}
	return mutating, validating, nil
}

// WebhookBinary builds bin/podpreset-webhook from the working tree.
func (c *Cluster) WebhookBinary(ctx context.Context) (string, error) {
	out := filepath.Join(c.Root, "bin", "podpreset-webhook")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/podpreset-webhook")
	cmd.Dir = c.Root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building podpreset-webhook: %w\n%s", err, b)
	}
	return out, nil
}

// StartWebhook starts the podpreset-webhook binary against the control
// plane, serving where the webhook configurations point, and waits until
// /readyz says it is ready. Its output goes to out (and to the cluster's
// logs).
func (c *Cluster) StartWebhook(ctx context.Context, binary string, out io.Writer, extraArgs ...string) error {
	if c.webhook != nil {
		return errors.New("the webhook is already running")
	}
	w := c.env.WebhookInstallOptions
	health, err := freePort()
	if err != nil {
		return err
	}
	metrics, err := freePort()
	if err != nil {
		return err
	}
	c.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics)
	args := append([]string{
		"--kubeconfig=" + c.Kubeconfig,
		"--namespace=" + WebhookNamespace,
		"--host=" + w.LocalServingHost,
		"--port=" + strconv.Itoa(w.LocalServingPort),
		"--cert-dir=" + w.LocalServingCertDir,
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(metrics),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(health),
	}, extraArgs...)
	if out == nil {
		out = io.Discard
	}
	p, err := startProcess(ctx, "podpreset-webhook", io.MultiWriter(out, c.logs), binary, args...)
	if err != nil {
		return err
	}
	c.webhook = p
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", health)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(readyz)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.exited() {
			c.webhook = nil
			return fmt.Errorf("podpreset-webhook exited before it was ready: %v", p.wait())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("podpreset-webhook not ready after 60s (last: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitForPresets waits until the webhook's index holds every PodPreset and
// ClusterPodPreset the API server has, as its podpreset_presets_cached
// metric says: a pod created after that receives them all.
func (c *Cluster) WaitForPresets(ctx context.Context) error {
	cl, err := client.New(c.Config, client.Options{Scheme: scheme()})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pps v1alpha1.PodPresetList
		var cpps v1alpha1.ClusterPodPresetList
		if err := cl.List(ctx, &pps); err != nil {
			return err
		}
		if err := cl.List(ctx, &cpps); err != nil {
			return err
		}
		want := len(pps.Items) + len(cpps.Items)
		got, err := c.cachedPresets()
		if err == nil && got == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the webhook's index holds %d presets after 30s, the API server %d (%v)", got, want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cachedPresets reads podpreset_presets_cached from the webhook's metrics.
func (c *Cluster) cachedPresets() (int, error) {
	m, err := c.Metrics()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, "podpreset_presets_cached "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	return 0, errors.New("no podpreset_presets_cached in the webhook's metrics")
}

// Metrics returns the webhook's /metrics page.
func (c *Cluster) Metrics() (string, error) {
	if c.metrics == "" {
		return "", errors.New("the webhook is not running")
	}
	resp, err := http.Get(c.metrics)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// ApplyExample applies an example directory with kubectl as a person
// would, but in two steps: the namespaces and presets (files not starting
// with 20-), then, once the webhook holds the presets, the workloads (20-*).
// It returns what kubectl printed.
func (c *Cluster) ApplyExample(ctx context.Context, dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var first, then []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		if strings.HasPrefix(e.Name(), "20-") {
			then = append(then, filepath.Join(dir, e.Name()))
		} else {
			first = append(first, filepath.Join(dir, e.Name()))
		}
	}
	if len(first) == 0 || len(then) == 0 {
		return "", fmt.Errorf("%s: want namespace and preset files and 20- workload files", dir)
	}
	var out strings.Builder
	apply := func(files []string) error {
		for _, f := range files {
			o, _, err := c.Kubectl(ctx, nil, "apply", "-f", f)
			out.WriteString(o)
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := apply(first); err != nil {
		return out.String(), err
	}
	if err := c.WaitForPresets(ctx); err != nil {
		return out.String(), err
	}
	return out.String(), apply(then)
}

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

// StopWebhook stops the webhook binary and waits for it to exit.
func (c *Cluster) StopWebhook() error {
	if c.webhook == nil {
		return nil
	}
	err := c.webhook.stop()
	c.webhook = nil
	return err
}

// Kubectl runs bin/kubectl against the cluster.
func (c *Cluster) Kubectl(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Root, "bin", "kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	var o, e bytesBuffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %v: %w: %s", args, err, e.String())
	}
	return o.String(), e.String(), err
}

// Stop stops everything that Start and StartWebhook started.
func (c *Cluster) Stop() error {
	var errs []error
	if err := c.StopWebhook(); err != nil {
		errs = append(errs, err)
	}
	if c.kcm != nil {
		if err := c.kcm.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.env != nil {
		if err := c.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping the control plane: %w", err))
		}
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
	return errors.Join(errs...)
}

// process is a subprocess whose output is copied, line by line and
// prefixed with its name, to a writer.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	copy sync.WaitGroup
}

func startProcess(ctx context.Context, name string, out io.Writer, path string, args ...string) (*process, error) {
	cmd := exec.Command(path, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	p.copy.Add(1)
	go func() {
		defer p.copy.Done()
		s := bufio.NewScanner(stdout)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			fmt.Fprintf(out, "[%s] %s\n", name, s.Text())
		}
	}()
	go func() {
		p.copy.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			p.stop()
		case <-p.done:
		}
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) wait() error { <-p.done; return p.err }

// stop sends SIGTERM, then SIGKILL after 10 seconds.
func (p *process) stop() error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
