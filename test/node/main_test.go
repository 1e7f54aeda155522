// Package node tests podpreset where it lands: on a real node (kubelet,
// containerd, runc, a CNI bridge; test/cluster with Options.Node), with the
// webhook installed from manifests/default as a Deployment of the image
// make image builds, and containers that report, in their own processes,
// what they received (test/images/report).
//
// It needs root (network interfaces, mounts) and the node's binaries in
// bin/ (hack/build-servers.sh). The control plane, the node and the images
// start once in TestMain; each test works in namespaces of its own.
package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/test/cluster"
)

var (
	cp     *cluster.Cluster
	k8s    client.Client
	scheme = runtime.NewScheme()
	// webhookImage is the webhook image the node loaded, as make image
	// builds it.
	webhookImage = cluster.LocalWebhookImage
	// logs holds what every server printed.
	logs cluster.Buffer
	// installed is the overlay installed last.
	installed string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	logf.SetLogger(logr.Discard())
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "node: the node tier needs root (network interfaces, mounts); make test runs it as root in CI")
		return 1
	}
	ctx := context.Background()
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	var w interface{ Write([]byte) (int, error) } = &logs
	if os.Getenv("E2E_VERBOSE") != "" {
		w = multiWriter{&logs, os.Stderr}
	}
	start := time.Now()
	cp, err = cluster.Start(ctx, cluster.Options{Root: root, Node: true, Logs: w})
	if err != nil {
		fmt.Fprintf(os.Stderr, "node: %v\n%s", err, tail(logs.String(), 60))
		return 1
	}
	dir := cp.NodeDir()
	code := func() int {
		if err := cp.LoadWebhookImage(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "node: %v\n", err)
			return 1
		}
		if k8s, err = client.New(cp.Config, client.Options{Scheme: scheme}); err != nil {
			fmt.Fprintf(os.Stderr, "node: %v\n", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "node: control plane, node and images up in %s\n", time.Since(start).Round(time.Millisecond))
		t0 := time.Now()
		if err := cp.Install(ctx, cluster.LocalInstall, webhookDeploy); err != nil {
			fmt.Fprintf(os.Stderr, "node: kubectl apply --server-side -k %s: %v\n%s", cluster.LocalInstall, err, tail(logs.String(), 80))
			return 1
		}
		installed = cluster.LocalInstall
		fmt.Fprintf(os.Stderr, "node: %s installed and rolled out in %s\n", cluster.LocalInstall, time.Since(t0).Round(time.Millisecond))
		code := m.Run()
		// A webhook that restarted during the tier failed open for the
		// pods created meanwhile (failurePolicy Ignore): that is a
		// failure whatever the tests saw, and its last words say why.
		if restarts, report := webhookHealth(ctx, code != 0); restarts > 0 || code != 0 {
			fmt.Fprint(os.Stderr, report)
			if restarts > 0 {
				code = 1
			}
		}
		t0 = time.Now()
		if err := uninstall(ctx, installed); err != nil {
			fmt.Fprintf(os.Stderr, "node: uninstalling %s: %v\n", installed, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "node: kubectl delete -k %s removed everything in %s; a pod created afterwards ran without presets\n", installed, time.Since(t0).Round(time.Millisecond))
		return code
	}()
	stopStart := time.Now()
	if err := cp.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "node: stopping: %v\n", err)
		code = 1
	}
	if left := cluster.NodeLeftovers(dir); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "node: left behind after Stop:\n  %s\n", strings.Join(left, "\n  "))
		code = 1
	} else {
		fmt.Fprintf(os.Stderr, "node: stopped in %s, nothing left behind (mounts, interfaces, processes)\n", time.Since(stopStart).Round(time.Millisecond))
	}
	return code
}

// webhookHealth counts the restarts of the webhook's containers and
// reports, for each pod that restarted (every pod when all is true), the
// end of its previous and current logs.
func webhookHealth(ctx context.Context, all bool) (int, string) {
	var pods corev1.PodList
	if err := k8s.List(ctx, &pods, client.InNamespace(installNS), client.MatchingLabels{"app.kubernetes.io/name": "podpreset"}); err != nil {
		return 0, fmt.Sprintf("node: listing the webhook's pods: %v\n", err)
	}
	var b strings.Builder
	restarts := 0
	for _, p := range pods.Items {
		for _, c := range p.Status.ContainerStatuses {
			restarts += int(c.RestartCount)
			if c.RestartCount == 0 && !all {
				continue
			}
			fmt.Fprintf(&b, "node: pod %s/%s container %s restarted %d times (last state %+v)\n", p.Namespace, p.Name, c.Name, c.RestartCount, c.LastTerminationState.Terminated)
			for _, prev := range []bool{true, false} {
				if prev && c.RestartCount == 0 {
					continue
				}
				args := []string{"logs", "-n", p.Namespace, p.Name, "-c", c.Name, "--tail", "40"}
				if prev {
					args = append(args, "--previous")
				}
				out, _, err := cp.Kubectl(ctx, nil, args...)
				if err != nil {
					out = err.Error()
				}
				fmt.Fprintf(&b, "--- kubectl %s\n%s\n", strings.Join(args, " "), out)
			}
		}
	}
	if restarts > 0 {
		fmt.Fprintf(&b, "node: the webhook's containers restarted %d times during the tier: pods created meanwhile went without their presets\n", restarts)
	}
	return restarts, b.String()
}

type multiWriter []interface{ Write([]byte) (int, error) }

func (m multiWriter) Write(p []byte) (int, error) {
	for _, w := range m {
		if _, err := w.Write(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// namespace creates a namespace for one test and deletes it afterwards.
func namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "node-" + rand.String(6), Labels: labels}}
	if err := k8s.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	return ns.Name
}

// eventually retries f until it returns nil or the time is up.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v\n%s", timeout, err, admissionState(context.Background()))
		}
		time.Sleep(250 * time.Millisecond)
	}
}
