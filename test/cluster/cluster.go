// Package cluster starts a real, local Kubernetes control plane for the e2e
// tests and `make run`: etcd and kube-apiserver through controller-runtime's
// envtest, kube-controller-manager (so that Deployments create pods), the
// podpreset CRDs and webhook configurations, and the podpreset-webhook binary
// itself as a subprocess, all on loopback. The servers are the ones
// hack/build-servers.sh builds into bin/; a missing one is an error that says
// how to build it, never a skip.
//
// The webhook configurations are the kustomize build of manifests/webhook
// (so the real namespaceSelector is in force), with each clientConfig a URL on loopback and no caBundle: the
// webhook runs in its default, self-managed certificate mode and must publish
// its own CA bundle before the API server can call it, exactly as in a
// cluster. With several replicas, the pod webhook is listed once per
// replica, each entry calling its own replica, so every pod creation goes
// through all of them.
package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// WebhookConfigName is the name of both webhook configurations. It is not
// the default install's name, so that the e2e tests can also dry-run the
// default install against the same API server.
const WebhookConfigName = "podpreset-local"

// Cluster is a running control plane.
type Cluster struct {
	// Root is the repository root.
	Root string
	// Config is an admin client configuration.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file.
	Kubeconfig string

	env      *envtest.Environment
	dir      string
	kcm      *process
	replicas []*replica
	logs     io.Writer
	node     *node
	nodeLock *os.File // held while the node exists
}

// replica is one webhook process and where it listens.
type replica struct {
	port, health, metrics int
	proc                  *process
}

// Options says what to start.
type Options struct {
	// Root is the repository root: bin/, manifests/ and cmd/ are under it.
	Root string
	// ControllerManager starts kube-controller-manager.
	ControllerManager bool
	// Logs receives the output of the subprocesses; nil discards it.
	Logs io.Writer
	// Replicas is how many webhook replicas the configurations call (1
	// when 0).
	Replicas int
	// FailurePolicy overrides the pod webhook's failurePolicy (Ignore in
	// the manifests) when set.
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// Node adds a node (node.go): kubelet, kube-scheduler, containerd,
	// runc and a CNI bridge, and the controllers pods need; pods run. The
	// webhook is then installed as a Deployment by the caller, so the
	// loopback webhook configurations of the replicas are not installed.
	// Needs root.
	Node bool
}

// Binaries the control plane needs in bin/.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"}

// Start starts etcd, kube-apiserver, the CRDs and webhook configurations,
// and kube-controller-manager if asked. Stop it with Stop.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	bin := filepath.Join(opts.Root, "bin")
	need := binaries
	if opts.Node {
		need = append(slices.Clone(binaries), nodeBinaries...)
		opts.ControllerManager = true
	}
	for _, b := range need {
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
			err = errors.Join(err, c.Stop())
		}
	}()
	c.env = &envtest.Environment{
		BinaryAssetsDirectory: bin,
		CRDDirectoryPaths:     []string{filepath.Join(opts.Root, "manifests", "crd")},
		ErrorIfCRDPathMissing: true,
	}
	var nodeNet nodeNetwork
	if opts.Node {
		// One node on this machine at a time: a second (make run beside
		// make test) waits for the first, rather than remove its bridge.
		lock, err := lockNode(ctx, logs)
		if err != nil {
			return nil, err
		}
		c.nodeLock = lock
		if nodeNet, err = pickNetwork(); err != nil {
			return nil, err
		}
		c.node = &node{net: nodeNet, dir: filepath.Join(dir, "node")}
		if err := setupLinks(nodeNet); err != nil {
			return nil, fmt.Errorf("the node's network: %w", err)
		}
		c.env.ControlPlane.APIServer = nodeAPIServer(nodeNet)
		c.env.ControlPlane.APIServer.Out, c.env.ControlPlane.APIServer.Err = prefixed("kube-apiserver", logs), prefixed("kube-apiserver", logs)
		// The kubelet's and the pods' watches make the API server's
		// graceful stop longer than envtest's default 20 seconds.
		c.env.ControlPlaneStopTimeout = time.Minute
	}
	if c.Config, err = c.env.Start(); err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	n := max(opts.Replicas, 1)
	for range n {
		r := &replica{}
		for _, p := range []*int{&r.port, &r.health, &r.metrics} {
			if *p, err = FreePort(); err != nil {
				return nil, err
			}
		}
		c.replicas = append(c.replicas, r)
	}
	if !opts.Node {
		if err := c.installWebhooks(ctx, mutating[0], validating[0], opts.FailurePolicy); err != nil {
			return nil, err
		}
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
		controllers := "deployment-controller,replicaset-controller,garbage-collector-controller"
		args := []string{"--kubeconfig=" + c.Kubeconfig, "--leader-elect=false", "--secure-port=0",
			"--use-service-account-credentials=false", "--concurrent-deployment-syncs=2", "--concurrent-replicaset-syncs=2"}
		if opts.Node {
			// Pods need their service account and the cluster's CA
			// (projected into every pod), Services their endpoints, an
			// uninstall its namespace deleted, and the node its not-ready
			// taint lifted once it is ready.
			controllers += ",serviceaccount-controller,root-ca-certificate-publisher-controller,endpoints-controller," +
				"endpointslice-controller,namespace-controller,disruption-controller,node-lifecycle-controller"
			caFile := filepath.Join(dir, "ca.crt")
			if err := os.WriteFile(caFile, c.env.ControlPlane.APIServer.CA, 0o644); err != nil {
				return nil, err
			}
			args = append(args, "--root-ca-file="+caFile)
		}
		c.kcm, err = startProcess(ctx, "kube-controller-manager", logs, nil, filepath.Join(bin, "kube-controller-manager"),
			append(args, "--controllers="+controllers)...)
		if err != nil {
			return nil, err
		}
	}
	if opts.Node {
		if err := c.startNode(ctx, nodeNet); err != nil {
			return nil, fmt.Errorf("starting the node: %w", err)
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

// installWebhooks creates the webhook namespace and the webhook
// configurations, each webhook calling its replica on loopback by URL.
func (c *Cluster) installWebhooks(ctx context.Context, mwc *admissionregistrationv1.MutatingWebhookConfiguration,
	vwc *admissionregistrationv1.ValidatingWebhookConfiguration, policy admissionregistrationv1.FailurePolicyType) error {
	cl, err := client.New(c.Config, client.Options{Scheme: scheme()})
	if err != nil {
		return err
	}
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: WebhookNamespace}}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", WebhookNamespace, err)
	}
	url := func(i int, path *string) *string {
		u := fmt.Sprintf("https://127.0.0.1:%d%s", c.replicas[i].port, *path)
		return &u
	}
	pods := mwc.Webhooks[0]
	mwc.Name, mwc.Webhooks = WebhookConfigName, nil
	for i := range c.replicas {
		w := *pods.DeepCopy()
		if len(c.replicas) > 1 {
			w.Name = fmt.Sprintf("pods-%d.podpreset.dev", i)
		}
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: url(i, pods.ClientConfig.Service.Path)}
		if policy != "" {
			w.FailurePolicy = &policy
		}
		mwc.Webhooks = append(mwc.Webhooks, w)
	}
	vwc.Name = WebhookConfigName
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: url(0, vwc.Webhooks[i].ClientConfig.Service.Path)}
	}
	if err := cl.Create(ctx, mwc); err != nil {
		return fmt.Errorf("creating the MutatingWebhookConfiguration: %w", err)
	}
	if err := cl.Create(ctx, vwc); err != nil {
		return fmt.Errorf("creating the ValidatingWebhookConfiguration: %w", err)
	}
	return nil
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

// StartWebhook starts replica 0; see StartReplica.
func (c *Cluster) StartWebhook(ctx context.Context, binary string, out io.Writer, extraArgs ...string) error {
	return c.StartReplica(ctx, 0, binary, out, extraArgs...)
}

// StartReplica starts webhook replica i, in self-managed certificate mode,
// serving where the webhook configurations point, and waits until its
// /readyz says it is ready: it serves a certificate that the configurations'
// caBundle trusts. With more than one replica, they elect a leader. Its
// output goes to out (and to the cluster's logs).
func (c *Cluster) StartReplica(ctx context.Context, i int, binary string, out io.Writer, extraArgs ...string) error {
	r := c.replicas[i]
	if r.proc != nil {
		return fmt.Errorf("webhook replica %d is already running", i)
	}
	args := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--namespace=" + WebhookNamespace,
		"--webhook-config-name=" + WebhookConfigName,
		"--cert-extra-sans=127.0.0.1",
		"--host=127.0.0.1",
		"--port=" + strconv.Itoa(r.port),
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(r.metrics),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(r.health),
	}
	if len(c.replicas) > 1 {
		args = append(args, "--leader-elect")
	}
	args = append(args, extraArgs...)
	if out == nil {
		out = io.Discard
	}
	p, err := startProcess(ctx, fmt.Sprintf("podpreset-webhook-%d", i), io.MultiWriter(out, c.logs), webhookEnv, binary, args...)
	if err != nil {
		return err
	}
	r.proc = p
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", r.health)
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
			r.proc = nil
			return fmt.Errorf("podpreset-webhook replica %d exited before it was ready: %v", i, p.wait())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("podpreset-webhook replica %d not ready after 60s (last: %v)", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ReplicaPID is the process ID of webhook replica i, or 0.
func (c *Cluster) ReplicaPID(i int) int {
	if r := c.replicas[i]; r.proc != nil {
		return r.proc.cmd.Process.Pid
	}
	return 0
}

// ReplicaExited says whether webhook replica i, once started, exited on
// its own, and how.
func (c *Cluster) ReplicaExited(i int) (bool, error) {
	if r := c.replicas[i]; r.proc != nil && r.proc.exited() {
		return true, r.proc.wait()
	}
	return false, nil
}

// ReplicaAddr is where replica i serves the webhook.
func (c *Cluster) ReplicaAddr(i int) string {
	return "127.0.0.1:" + strconv.Itoa(c.replicas[i].port)
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

// cachedPresets reads podpreset_presets_cached from every running
// replica's metrics and returns the smallest.
func (c *Cluster) cachedPresets() (int, error) {
	least := -1
	for i, r := range c.replicas {
		if r.proc == nil {
			continue
		}
		m, err := c.ReplicaMetrics(i)
		if err != nil {
			return 0, err
		}
		found := false
		for _, line := range strings.Split(m, "\n") {
			if v, ok := strings.CutPrefix(line, "podpreset_presets_cached "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return 0, err
				}
				if least < 0 || int(f) < least {
					least = int(f)
				}
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("no podpreset_presets_cached in replica %d's metrics", i)
		}
	}
	if least < 0 {
		return 0, errors.New("no webhook replica is running")
	}
	return least, nil
}

// Metrics returns replica 0's /metrics page.
func (c *Cluster) Metrics() (string, error) { return c.ReplicaMetrics(0) }

// ReplicaMetrics returns replica i's /metrics page.
func (c *Cluster) ReplicaMetrics(i int) (string, error) {
	if c.replicas[i].proc == nil {
		return "", fmt.Errorf("webhook replica %d is not running", i)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", c.replicas[i].metrics))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// ApplyExample applies an example directory with kubectl as a person
// would, but in two steps: the namespaces and presets (files not starting
// with 20-), then, once the webhook holds the presets and each of
// beforeWorkloads has returned, the workloads (20-*). It returns what
// kubectl printed.
func (c *Cluster) ApplyExample(ctx context.Context, dir string, beforeWorkloads ...func(context.Context) error) (string, error) {
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
	for _, f := range beforeWorkloads {
		if err := f(ctx); err != nil {
			return out.String(), err
		}
	}
	return out.String(), apply(then)
}

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

// StopWebhook stops replica 0.
func (c *Cluster) StopWebhook() error { return c.StopReplica(0) }

// StopReplica stops webhook replica i and waits for it to exit.
func (c *Cluster) StopReplica(i int) error {
	r := c.replicas[i]
	if r.proc == nil {
		return nil
	}
	err := r.proc.stop()
	r.proc = nil
	return err
}

// Kubectl runs bin/kubectl against the cluster.
func (c *Cluster) Kubectl(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Root, "bin", "kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	var o, e Buffer
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
	for i := range c.replicas {
		if err := c.StopReplica(i); err != nil {
			errs = append(errs, err)
		}
	}
	if c.node != nil {
		// Nothing recreates or schedules the pods the node is about to
		// remove.
		if c.kcm != nil {
			if err := c.kcm.stop(); err != nil {
				errs = append(errs, err)
			}
		}
		if c.node.sched != nil {
			if err := c.node.sched.stop(); err != nil {
				errs = append(errs, err)
			}
		}
		start := time.Now()
		if err := c.stopNode(); err != nil {
			errs = append(errs, fmt.Errorf("stopping the node: %w", err))
		}
		fmt.Fprintf(c.logs, "[cluster] node stopped in %s\n", time.Since(start).Round(time.Millisecond))
	}
	if c.kcm != nil {
		if err := c.kcm.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.env != nil {
		start := time.Now()
		defer func() {
			fmt.Fprintf(c.logs, "[cluster] control plane stopped in %s\n", time.Since(start).Round(time.Millisecond))
		}()
		if err := c.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping the control plane: %w", err))
		}
	}
	if c.node != nil {
		if err := removeLinks(); err != nil {
			errs = append(errs, fmt.Errorf("removing the node's network: %w", err))
		}
	}
	if c.nodeLock != nil {
		if err := c.nodeLock.Close(); err != nil { // releases the lock
			errs = append(errs, err)
		}
		c.nodeLock = nil
	}
	if c.dir != "" {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// process is a subprocess whose output is copied, line by line and
// prefixed with its name, to a writer.
type process struct {
	name string
	out  io.Writer // its output, and what went wrong stopping it
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	copy sync.WaitGroup
}

// webhookEnv is the environment the webhook runs with, as in
// manifests/default: a soft memory limit under the container's.
var webhookEnv = []string{"GOMEMLIMIT=" + WebhookMemoryLimit}

// WebhookMemoryLimit is the webhook's GOMEMLIMIT in manifests/default.
const WebhookMemoryLimit = "160MiB"

// startProcess starts a program with more environment variables than this
// process has.
func startProcess(ctx context.Context, name string, out io.Writer, env []string, path string, args ...string) (*process, error) {
	cmd := exec.Command(path, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	// Should the test binary die without stopping it (a timeout's
	// SIGKILL), the server goes too, rather than run on, holding ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), out: out}
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
			p.halt()
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

// stop sends SIGINT, then SIGKILL after 10 seconds, and waits for the
// process to exit. The error says it had to be killed.
func (p *process) stop() error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil && !p.exited() {
		return fmt.Errorf("interrupting %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		err := p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 10s of SIGINT and was killed (%v)", p.name, err)
	}
}

// halt stops the process and writes what went wrong into its output:
// for stops that nobody waits on.
func (p *process) halt() {
	if err := p.stop(); err != nil {
		fmt.Fprintf(p.out, "[%s] %v\n", p.name, err)
	}
}

// FreePort returns a port on 127.0.0.1 that nothing listens on, for a
// process started later, from below the kernel's ephemeral range
// (ip_local_port_range). A port from that range (what listening on port 0
// gives) can be taken between the pick and the process's bind by the
// source port of any outgoing connection on the machine — the API
// server's to etcd, a client's — and a cold CI run lost the e2e tier that
// way (the webhook replica: "bind: address already in use"); below it only
// an explicit bind can take the port.
func FreePort() (int, error) {
	low := ephemeralLow()
	const span = 12000
	start := max(low-span, 1024)
	for range 100 {
		port := start + rand.IntN(low-start)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // taken: another
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port in [%d, %d) after 100 tries", start, low)
}

// ephemeralLow is the first port of the kernel's ephemeral range: Linux's
// default, 32768, when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 2048 {
		return 32768
	}
	return low
}

// Process is a process of the webhook binary started by StartProcess.
type Process struct {
	// MetricsAddr serves its /metrics.
	MetricsAddr string
	proc        *process
}

// Stop stops it.
func (p *Process) Stop() error { return p.proc.stop() }

// StartProcess starts the webhook binary with args, the cluster's
// kubeconfig and health and metrics ports of its own (not as a replica the
// webhook configurations call: for --role=sources), and waits until its
// /readyz says it is ready.
func (c *Cluster) StartProcess(ctx context.Context, name, binary string, out io.Writer, args ...string) (*Process, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	args = append([]string{"--kubeconfig=" + c.Kubeconfig,
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(ports[0]),
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(ports[1])}, args...)
	if out == nil {
		out = io.Discard
	}
	p, err := startProcess(ctx, name, io.MultiWriter(out, c.logs), webhookEnv, binary, args...)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(p, "http://127.0.0.1:"+strconv.Itoa(ports[0])+"/readyz", func(string) bool { return true }); err != nil {
		p.halt()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &Process{MetricsAddr: "127.0.0.1:" + strconv.Itoa(ports[1]), proc: p}, nil
}

// nodeAPIServer is the API server of a cluster with a node: on the host
// address, port 443, which is also the kubernetes Service's ClusterIP, with
// the ServiceAccount admission plugin (pods get their tokens) and webhook
// Services dialled at their endpoints.
func nodeAPIServer(n nodeNetwork) *envtest.APIServer {
	api := &envtest.APIServer{}
	api.Address, api.Port = n.HostIP.String(), "443"
	api.Configure().
		Set("advertise-address", n.HostIP.String()).
		Set("kubelet-preferred-address-types", "InternalIP").
		Set("service-cluster-ip-range", n.ServiceCIDR.String()).
		Set("enable-aggregator-routing", "true").
		// A response to a pod that vanished with its network can only time
		// out, and the API server's stop waits for it: 15 seconds, not 60.
		Set("request-timeout", "15s").
		Disable("disable-admission-plugins")
	return api
}

// prefixed writes lines to out with the name of their program in front.
func prefixed(name string, out io.Writer) io.Writer {
	r, w := io.Pipe()
	go func() {
		s := bufio.NewScanner(r)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			fmt.Fprintf(out, "[%s] %s\n", name, s.Text())
		}
	}()
	return w
}

// ServerPIDs returns the process IDs of this cluster's kube-apiserver and
// etcd, found in /proc by the API server's port and the etcd address it is
// told, for readings of their CPU time.
func (c *Cluster) ServerPIDs() (apiserver, etcd int, err error) {
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return 0, 0, err
	}
	cmdlines := map[int][]string{}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0, err
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil {
			continue
		}
		cmdlines[pid] = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	}
	var etcdURL string
	for pid, args := range cmdlines {
		if len(args) > 0 && filepath.Base(args[0]) == "kube-apiserver" && slices.Contains(args, "--secure-port="+u.Port()) {
			apiserver = pid
			for _, a := range args {
				if v, ok := strings.CutPrefix(a, "--etcd-servers="); ok {
					etcdURL = v
				}
			}
		}
	}
	for pid, args := range cmdlines {
		if len(args) > 0 && filepath.Base(args[0]) == "etcd" && etcdURL != "" && slices.Contains(args, "--listen-client-urls="+etcdURL) {
			etcd = pid
		}
	}
	if apiserver == 0 || etcd == 0 {
		return 0, 0, fmt.Errorf("no kube-apiserver on port %s or etcd at %q in /proc", u.Port(), etcdURL)
	}
	return apiserver, etcd, nil
}

// StartBinary runs another program beside the cluster (a peer's server,
// for the benchmarks) with args as given and env added to the environment,
// its output to out and the cluster's logs; Stop it with Process.Stop.
// Nothing waits for it to be ready.
func (c *Cluster) StartBinary(ctx context.Context, name, binary string, out io.Writer, env []string, args ...string) (*Process, error) {
	if out == nil {
		out = io.Discard
	}
	p, err := startProcess(ctx, name, io.MultiWriter(out, c.logs), append([]string{}, env...), binary, args...)
	if err != nil {
		return nil, err
	}
	return &Process{proc: p}, nil
}
