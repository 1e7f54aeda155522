// Package e2e tests podpreset against a real control plane: etcd,
// kube-apiserver and kube-controller-manager built from pinned versions into
// bin/ by hack/build-servers.sh, the generated CRDs and webhook
// configurations, and the podpreset-webhook binary itself. The control plane
// is started once in TestMain; each test works in namespaces of its own.
package e2e

import (
	"context"

	"fmt"
	"github.com/go-logr/logr"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
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
	cp         *cluster.Cluster
	k8s        client.Client
	scheme     = runtime.NewScheme()
	webhookBin string
	// webhookLog holds everything the webhook printed.
	webhookLog cluster.Buffer
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// The tests' own clients log nothing; the servers' logs are captured.
	logf.SetLogger(logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	var logs *os.File
	if os.Getenv("E2E_VERBOSE") != "" {
		logs = os.Stderr
	}
	var logw = &webhookLog
	start := time.Now()
	cp, err = cluster.Start(ctx, cluster.Options{Root: root, ControllerManager: true, Logs: writerOrNil(logs)})
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: stopping the control plane: %v\n", err)
		}
	}()
	if webhookBin, err = cp.WebhookBinary(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	srcDir, err := os.MkdirTemp("", "podpreset-e2e-sources-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer func() {
		if err := os.RemoveAll(srcDir); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		}
	}()
	cliBin = filepath.Join(srcDir, "kubectl-podpreset")
	srcCfg, err := startSources(ctx, srcDir)
	if consulSrv != nil {
		defer consulSrv.Stop()
	}
	if vaultSrv != nil {
		defer vaultSrv.Stop()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: Consul and Vault: %v\n", err)
		return 1
	}
	webhookArgs = []string{"-v=1", "--sources-config=" + srcCfg}
	if err := cp.StartWebhook(ctx, webhookBin, logw, webhookArgs...); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n%s", err, webhookLog.String())
		return 1
	}
	if k8s, err = client.New(cp.Config, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: control plane, Consul, Vault and webhook up in %s\n", time.Since(start).Round(time.Millisecond))
	return m.Run()
}

// namespace creates a namespace for one test, with the given labels, and
// deletes it afterwards.
func namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + rand.String(6), Labels: labels}}
	create(t, ns)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	return ns.Name
}

// create creates an object and fails the test on error.
func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(t.Context(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// createPreset creates a preset; ClusterPodPresets are deleted when the
// test ends.
func createPreset(t *testing.T, obj client.Object) {
	t.Helper()
	create(t, obj)
	if _, ok := obj.(*v1alpha1.ClusterPodPreset); ok {
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
	}
}

// waitForPreset waits until the webhook applies a preset (ref as in
// podpreset.dev/applied, such as "PodPreset/db@1") to a pod with these
// labels in ns, probing with server-side dry-run creations: the informer
// delivers the preset within moments, and then every pod gets it.
func waitForPreset(t *testing.T, ns string, labels map[string]string, ref string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		probe := testPod("probe", ns, labels)
		if err := k8s.Create(t.Context(), probe, client.DryRunAll); err != nil {
			return err
		}
		if got := probe.Annotations["podpreset.dev/applied"]; !strings.Contains(got, ref) {
			return fmt.Errorf("a pod labelled %v in %s got %q, not %s", labels, ns, got, ref)
		}
		return nil
	})
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
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writerOrNil(f *os.File) interface{ Write([]byte) (int, error) } {
	if f == nil {
		return nil
	}
	return f
}
