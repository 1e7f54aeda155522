package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/internal/image"
)

// The node: a kubelet with containerd, runc and the CNI bridge plugin, all
// built by hack/build-servers.sh, joined to the control plane, on this
// machine only.
//
// Networking, without kube-proxy and without routing or NAT off the
// machine:
//   - Pods live on a bridge the node creates (ppcni0, with a hardware
//     address of its own: BridgeMAC says why), with two addresses
//     of the host on it: the pod range's first (10.234.0.1 unless that range
//     is in use here) and the service range's first (10.233.0.1). The API
//     server listens on the latter, port 443: that address is also the
//     kubernetes Service's ClusterIP, so a pod's in-cluster client reaches
//     the API server where its environment says, with no proxy in between.
//   - The CNI bridge plugin only attaches pods to the bridge (it is not
//     their gateway, so it neither enables IP forwarding nor masquerades).
//     A pod's only routes are its own subnet and the API server's address;
//     nothing it sends can leave the machine.
//   - The API server dials a webhook Service's endpoints directly
//     (--enable-aggregator-routing), the kubelet its pods' addresses.
//   - Consul and Vault, for the node tests, listen on the host address too.
//
// Everything lives under one directory: containerd's root and state (with
// the pods' network namespaces), the kubelet's root and pod logs, the CNI
// configuration and IPAM state. Stop removes the pods, stops every process,
// unmounts what is left under that directory, deletes the bridge and the
// dummy interface, and says what it could not.

// bridgeLink is the interface the node creates (and removes, a stale one
// included).
const bridgeLink = "ppcni0"

// BridgeLink is the node's bridge, for tests of the node's network.
const BridgeLink = bridgeLink

// BridgeMAC is the bridge's hardware address, set when it is created. A
// Linux bridge created without one takes the lowest address of its ports
// and changes it as they come and go: deleting the pod whose veth had it
// (an eviction, a rolling update) gave the host's addresses on the bridge
// (the API server's among them) a new MAC, and every other pod kept
// sending to the old one until its ARP entry expired, tens of seconds
// without the API server. That was the node tier's intermittent failure:
// a webhook replica whose lease renewals, namespace reads and watches all
// stalled (and which the API server could not reach either), while the
// other went on. A bridge given its address keeps it.
const BridgeMAC = "02:70:70:63:6e:69"

// Images the node loads, built from test/images.
const (
	PauseImage  = "podpreset.local/pause:test"
	ReportImage = "podpreset.local/report:test"
)

// nodeBinaries are what the node needs in bin/.
var nodeBinaries = []string{"kubelet", "kube-scheduler", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "cni/bridge", "cni/host-local", "cni/loopback"}

// nodeNetwork is the node's addresses.
type nodeNetwork struct {
	// ServiceCIDR is the service range; HostIP, its first address, is the
	// API server's, the kubernetes Service's and the node's.
	ServiceCIDR *net.IPNet
	HostIP      net.IP
	// PodCIDR is the pod range; BridgeIP, its first address, the host's on
	// the bridge.
	PodCIDR  *net.IPNet
	BridgeIP net.IP
}

// pickNetwork chooses a service range and a pod range that no address or
// route of this machine overlaps.
func pickNetwork() (nodeNetwork, error) {
	out, err := exec.Command("ip", "-4", "-o", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		return nodeNetwork{}, fmt.Errorf("ip route: %w: %s", err, out)
	}
	addrs, err := exec.Command("ip", "-4", "-o", "addr").CombinedOutput()
	if err != nil {
		return nodeNetwork{}, fmt.Errorf("ip addr: %w: %s", err, addrs)
	}
	var used []*net.IPNet
	for _, line := range strings.Split(string(out)+"\n"+string(addrs), "\n") {
		for _, f := range strings.Fields(line) {
			if _, n, err := net.ParseCIDR(f); err == nil && !n.IP.IsUnspecified() {
				if !strings.Contains(line, bridgeLink) {
					used = append(used, n)
				}
			}
		}
	}
	overlaps := func(n *net.IPNet) bool {
		return slices.ContainsFunc(used, func(u *net.IPNet) bool { return u.Contains(n.IP) || n.Contains(u.IP) })
	}
	for _, pair := range [][2]string{{"10.233.0.0/24", "10.234.0.0/24"}, {"172.29.0.0/24", "172.29.1.0/24"}, {"198.18.0.0/24", "198.18.1.0/24"}} {
		_, svc, _ := net.ParseCIDR(pair[0])
		_, pods, _ := net.ParseCIDR(pair[1])
		if overlaps(svc) || overlaps(pods) {
			continue
		}
		return nodeNetwork{ServiceCIDR: svc, HostIP: nthIP(svc, 1), PodCIDR: pods, BridgeIP: nthIP(pods, 1)}, nil
	}
	return nodeNetwork{}, errors.New("every candidate range for the node's services and pods is in use on this machine")
}

func nthIP(n *net.IPNet, i byte) net.IP {
	ip := slices.Clone(n.IP.To4())
	ip[3] += i
	return ip
}

// ipCmd runs ip with args.
func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setupLinks creates the pods' bridge with the host's two addresses on it,
// removing a stale one first.
func setupLinks(n nodeNetwork) error {
	if err := removeLinks(); err != nil {
		return err
	}
	bridgeOnes, _ := n.PodCIDR.Mask.Size()
	for _, args := range [][]string{
		{"link", "add", bridgeLink, "address", BridgeMAC, "type", "bridge"},
		{"addr", "add", n.BridgeIP.String() + "/" + strconv.Itoa(bridgeOnes), "dev", bridgeLink},
		{"addr", "add", n.HostIP.String() + "/32", "dev", bridgeLink},
		{"link", "set", bridgeLink, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			return err
		}
	}
	return nil
}

// removeLinks deletes the node's bridge; the veths on it go with their
// network namespaces.
func removeLinks() error {
	if err := exec.Command("ip", "link", "show", bridgeLink).Run(); err != nil {
		return nil // not there
	}
	return ipCmd("link", "del", bridgeLink)
}

// node is the running node's processes and where it lives.
type node struct {
	net                         nodeNetwork
	dir                         string
	containerd, kubelet, sched  *process
	socket                      string
	name                        string
	kubeletPort, kubeletHealthz int
}

// containerdConfig is containerd 2's configuration for the node:
// everything under dir, runc from bin/ (before any other on the PATH),
// the CRI plugin with our CNI configuration and sandbox image, network
// namespaces under the state directory, and oom_score_adj left alone (no
// CAP_SYS_RESOURCE here).
func containerdConfig(dir, bin string) string {
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %[4]q
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[5]q]
    conf_dir = %[6]q

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = %[7]q
`, filepath.Join(dir, "containerd", "root"), filepath.Join(dir, "containerd", "state"), filepath.Join(dir, "containerd.sock"),
		filepath.Join(bin, "runc"), filepath.Join(bin, "cni"), filepath.Join(dir, "cni"), PauseImage)
}

// cniConfig attaches pods to the bridge, their addresses from the pod
// range, their only route beyond it the host address.
func cniConfig(n nodeNetwork, dir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "podpreset-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": %q, "gw": %q}]
      }
    },
    {"type": "loopback"}
  ]
}
`, bridgeLink, filepath.Join(dir, "cni-ipam"), n.PodCIDR.String(), n.BridgeIP.String(), n.HostIP.String()+"/32", n.BridgeIP.String())
}

// kubeletConfig is what worked on these machines (../shared/NODE-FACTS.md):
// cgroup v1 with cgroupfs, no QoS cgroups or node allocatable, no swap
// check, no eviction, anonymous access for the API server's log and exec
// calls (tests only), the pods' logs under dir, and a fast sync so that a
// changed ConfigMap reaches a mounted volume within seconds.
func kubeletConfig(n *node) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
healthzBindAddress: 127.0.0.1
healthzPort: %[3]d
readOnlyPort: 0
containerRuntimeEndpoint: unix://%[4]s
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
syncFrequency: 3s
fileCheckFrequency: 3s
podLogsDir: %[5]q
resolvConf: ""
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
`, n.net.HostIP, n.kubeletPort, n.kubeletHealthz, n.socket, filepath.Join(n.dir, "pod-logs"))
}

// startNode starts containerd, loads the images, and starts the kubelet
// and the scheduler; it returns once the node is Ready.
func (c *Cluster) startNode(ctx context.Context, n nodeNetwork) (err error) {
	bin := filepath.Join(c.Root, "bin")
	nd := &node{net: n, dir: filepath.Join(c.dir, "node"), name: "podpreset-node"}
	c.node = nd
	nd.socket = filepath.Join(nd.dir, "containerd.sock")
	for _, d := range []string{"cni", "kubelet", "pod-logs", "images", "containerd"} {
		if err := os.MkdirAll(filepath.Join(nd.dir, d), 0o755); err != nil {
			return err
		}
	}
	write := func(name, content string) (string, error) {
		p := filepath.Join(nd.dir, name)
		return p, os.WriteFile(p, []byte(content), 0o644)
	}
	cdConf, err := write("containerd.toml", containerdConfig(nd.dir, bin))
	if err != nil {
		return err
	}
	if _, err := write(filepath.Join("cni", "10-podpreset.conflist"), cniConfig(n, nd.dir)); err != nil {
		return err
	}
	// The project's shim and runc come first: a containerd 1.x shim from a
	// Debian package elsewhere on the PATH would not do.
	env := []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
	if nd.containerd, err = startProcess(ctx, "containerd", c.logs, env, filepath.Join(bin, "containerd"), "--config", cdConf); err != nil {
		return err
	}
	if err := waitFor(30*time.Second, func() error {
		_, err := c.ctr(ctx, "version")
		return err
	}); err != nil {
		return fmt.Errorf("containerd did not answer: %w", err)
	}
	if err := c.loadTestImages(ctx); err != nil {
		return err
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	nd.kubeletPort, nd.kubeletHealthz = ports[0], ports[1]
	kc, err := write("kubelet.yaml", kubeletConfig(nd))
	if err != nil {
		return err
	}
	if nd.kubelet, err = startProcess(ctx, "kubelet", c.logs, env, filepath.Join(bin, "kubelet"),
		"--config="+kc, "--kubeconfig="+c.Kubeconfig, "--root-dir="+filepath.Join(nd.dir, "kubelet"),
		"--cert-dir="+filepath.Join(nd.dir, "kubelet", "pki"), "--hostname-override="+nd.name, "--node-ip="+n.HostIP.String(), "-v=1"); err != nil {
		return err
	}
	if nd.sched, err = startProcess(ctx, "kube-scheduler", c.logs, nil, filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig="+c.Kubeconfig, "--authentication-kubeconfig="+c.Kubeconfig, "--authorization-kubeconfig="+c.Kubeconfig,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0", "-v=3"); err != nil {
		return err
	}
	cl, err := client.New(c.Config, client.Options{Scheme: scheme()})
	if err != nil {
		return err
	}
	return waitFor(90*time.Second, func() error {
		var no corev1.Node
		if err := cl.Get(ctx, types.NamespacedName{Name: nd.name}, &no); err != nil {
			return err
		}
		for _, cond := range no.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node %s is not Ready: %v", nd.name, no.Status.Conditions)
	})
}

// ctr runs bin/ctr against the node's containerd, in the CRI's namespace.
func (c *Cluster) ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Root, "bin", "ctr"), append([]string{"--address", c.node.socket, "--namespace", "k8s.io"}, args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// LoadImage imports a `docker save` tarball into the node's containerd,
// where pods find it without a registry.
func (c *Cluster) LoadImage(ctx context.Context, tarball string) error {
	if c.node == nil {
		return errors.New("no node: start the cluster with Options.Node")
	}
	_, err := c.ctr(ctx, "images", "import", "--no-unpack=false", tarball)
	return err
}

// waitFor retries f until it returns nil or the time is up.
func waitFor(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stopNode removes every pod, stops the kubelet, the scheduler and
// containerd and the shims, and unmounts what is left under the node's
// directory. The bridge goes last, after the API server that listens on
// it (Stop).
func (c *Cluster) stopNode() error {
	nd := c.node
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if nd.kubelet != nil && !nd.kubelet.exited() {
		// Pods first, so that the kubelet takes their containers and
		// networks down as it does in a cluster.
		if cl, err := client.New(c.Config, client.Options{Scheme: scheme()}); err == nil {
			// podpreset's own pods stop gracefully, closing their
			// connections to the API server before their network goes;
			// the rest at once.
			var pods corev1.PodList
			if err := cl.List(ctx, &pods); err == nil {
				for i := range pods.Items {
					if p := &pods.Items[i]; p.Spec.NodeName == nd.name {
						grace := int64(0)
						if p.Namespace == InstallNamespace {
							grace = 10
						}
						_ = cl.Delete(ctx, p, client.GracePeriodSeconds(grace))
					}
				}
			}
			// The kubelet stops their containers and sandboxes (and takes
			// their network down) at once; it removes the stopped
			// containers only at its next garbage collection, which is
			// not waited for: they are deleted below.
			if err := waitFor(60*time.Second, func() error {
				out, err := c.ctr(ctx, "tasks", "list")
				if err != nil {
					return err
				}
				if running := strings.Count(out, "RUNNING"); running > 0 {
					return fmt.Errorf("%d containers still running", running)
				}
				return nil
			}); err != nil {
				errs = append(errs, fmt.Errorf("stopping the node's containers: %w", err))
			}
		}
	}
	for _, p := range []*process{nd.sched, nd.kubelet} {
		if p != nil {
			errs = append(errs, p.stop()) // nil when already stopped
		}
	}
	if nd.containerd != nil {
		// Whatever the kubelet left: every task killed and deleted, every
		// container removed (with its snapshot).
		if out, err := c.ctr(ctx, "tasks", "list", "--quiet"); err == nil {
			for _, id := range strings.Fields(out) {
				_, _ = c.ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id)
				_, _ = c.ctr(ctx, "tasks", "delete", "--force", id)
			}
		}
		if out, err := c.ctr(ctx, "containers", "list", "--quiet"); err == nil {
			for _, id := range strings.Fields(out) {
				_, _ = c.ctr(ctx, "containers", "delete", id)
			}
		}
		errs = append(errs, nd.containerd.stop())
	}
	errs = append(errs, killShims(nd.dir), unmountUnder(nd.dir))
	return errors.Join(errs...)
}

// killShims kills the runc shims of the node's containerd: they outlive
// containerd by design.
func killShims(dir string) error {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), "containerd-shim") || !strings.Contains(string(cmdline), dir) {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("killing shim %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, nil
}

// unmountUnder unmounts everything under dir (volumes, overlay snapshots,
// network namespaces) and fails when anything stays.
func unmountUnder(dir string) error {
	for range 3 {
		mounts, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mounts) == 0 {
			return nil
		}
		for _, m := range mounts {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	mounts, err := mountsUnder(dir)
	if err == nil && len(mounts) > 0 {
		err = fmt.Errorf("still mounted: %s", strings.Join(mounts, " "))
	}
	return err
}

// NodeLeftovers lists what a stopped node left behind: mounts under its
// directory, its interfaces, its processes. Empty after a clean Stop.
func NodeLeftovers(dir string) []string {
	var out []string
	if m, _ := mountsUnder(dir); len(m) > 0 {
		out = append(out, "mounts: "+strings.Join(m, " "))
	}
	if exec.Command("ip", "link", "show", bridgeLink).Run() == nil {
		out = append(out, "interface "+bridgeLink)
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		if cmdline, err := os.ReadFile("/proc/" + p.Name() + "/cmdline"); err == nil && strings.Contains(string(cmdline), dir) {
			out = append(out, "process "+p.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return out
}

// NodeDir is where the node lives; empty without a node.
func (c *Cluster) NodeDir() string {
	if c.node == nil {
		return ""
	}
	return c.node.dir
}

// HostIP is the node's address on this machine: the API server's, and
// where servers that pods must reach (Consul, Vault) listen.
func (c *Cluster) HostIP() string {
	if c.node == nil {
		return "127.0.0.1"
	}
	return c.node.net.HostIP.String()
}

// PodLogs returns what a container printed, through the API server and
// the kubelet, as kubectl logs does.
func (c *Cluster) PodLogs(ctx context.Context, ns, pod, container string) (string, error) {
	out, _, err := c.Kubectl(ctx, nil, "logs", "-n", ns, pod, "-c", container)
	return out, err
}

// loadTestImages builds the pause and report images from test/images and
// loads them into containerd.
func (c *Cluster) loadTestImages(ctx context.Context) error {
	for _, img := range []struct{ ref, pkg, file string }{
		{PauseImage, "./test/images/pause", "/pause"},
		{ReportImage, "./test/images/report", "/report"},
	} {
		tarball := filepath.Join(c.node.dir, "images", filepath.Base(img.pkg)+".tar")
		if err := c.buildImage(ctx, img.pkg, img.ref, tarball, func(binary []byte, created time.Time) image.Spec {
			return image.Spec{Files: append(image.BaseFiles(), image.File{Path: img.file, Mode: 0o755, Data: binary}),
				Entrypoint: []string{img.file}, Created: created, Arch: runtime.GOARCH}
		}); err != nil {
			return err
		}
		if err := c.LoadImage(ctx, tarball); err != nil {
			return err
		}
	}
	return nil
}

// WebhookImage builds the webhook image as make image does (a static
// binary, the same spec) and writes it as a tarball; it returns the
// reference, tagged ref.
func (c *Cluster) WebhookImage(ctx context.Context, ref, tarball string) error {
	return c.buildImage(ctx, "./cmd/podpreset-webhook", ref, tarball, func(binary []byte, created time.Time) image.Spec {
		return image.Webhook(binary, "test", "", created, runtime.GOARCH)
	})
}

// buildImage builds a static binary of a main package and an image of it.
func (c *Cluster) buildImage(ctx context.Context, pkg, ref, tarball string, spec func([]byte, time.Time) image.Spec) error {
	out := tarball + ".bin"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = c.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %w\n%s", pkg, err, b)
	}
	binary, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	img, err := image.Build(spec(binary, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
	if err != nil {
		return err
	}
	return image.WriteTarball(tarball, img, ref)
}

// nodeLockPath is the file whose lock a node holds on this machine.
const nodeLockPath = "/run/podpreset-node.lock"

// lockNode takes the machine-wide node lock, waiting (and saying so) while
// another node holds it. The lock goes with the returned file, or with the
// process.
func lockNode(ctx context.Context, logs io.Writer) (*os.File, error) {
	f, err := os.OpenFile(nodeLockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("the node lock: %w", err)
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", nodeLockPath, err)
		}
		if !said {
			fmt.Fprintf(logs, "[cluster] another node runs on this machine (%s is locked): waiting for it\n", nodeLockPath)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another node on this machine to stop: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}
