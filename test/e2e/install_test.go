package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestDefaultInstallIsAccepted sends `kubectl apply -k manifests/default`
// to the real API server as a server-side dry run: every object of the
// install (CRDs, RBAC, Deployment, PodDisruptionBudget, Service, webhook
// configurations) must be valid. The control plane has no kubelet, so the
// Deployment could not run anyway; the tests run the same binary directly.
func TestDefaultInstallIsAccepted(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "podpreset-system"}}
	if err := client.IgnoreAlreadyExists(k8s.Create(t.Context(), ns)); err != nil {
		t.Fatal(err)
	}
	out, _, err := cp.Kubectl(t.Context(), nil, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-k", cp.Root+"/manifests/default")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/podpresets.podpreset.dev serverside-applied (server dry run)",
		"deployment.apps/podpreset-webhook serverside-applied (server dry run)",
		"poddisruptionbudget.policy/podpreset-webhook serverside-applied (server dry run)",
		"mutatingwebhookconfiguration.admissionregistration.k8s.io/podpreset-webhook serverside-applied (server dry run)",
		"validatingwebhookconfiguration.admissionregistration.k8s.io/podpreset-webhook serverside-applied (server dry run)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl printed no %q:\n%s", want, out)
		}
	}
	// The install with Consul and Vault sources too.
	out, _, err = cp.Kubectl(t.Context(), nil, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-k", cp.Root+"/manifests/sources")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"configmap/podpreset-sources-", "deployment.apps/podpreset-webhook serverside-applied (server dry run)",
		"deployment.apps/podpreset-sources serverside-applied (server dry run)", "clusterrole.rbac.authorization.k8s.io/podpreset-sources serverside-applied (server dry run)"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl printed no %q:\n%s", want, out)
		}
	}
}

// TestMetrics checks that the webhook counts what it does.
func TestMetrics(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "web"}
	createPreset(t, podPreset("m", ns, labels, env("A", "1")))
	if err := cp.WaitForPresets(t.Context()); err != nil {
		t.Fatal(err)
	}
	before := counters(t)
	pod := testPod("counted", ns, labels)
	pod.Spec.Containers[0].Env = nil
	create(t, pod)
	conflict := testPod("conflict", ns, labels)
	conflict.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "mine"}}
	create(t, conflict)
	create(t, withAnnotation(testPod("skipped", ns, labels), "podpreset.dev/exclude", "true"))
	after := counters(t)
	for series, delta := range map[string]float64{
		`podpreset_admission_total{result="injected"}`:             2,
		`podpreset_admission_total{result="skipped"}`:              1,
		`podpreset_conflicts_total{kind="env"}`:                    1,
		`podpreset_presets_applied_total{preset_kind="PodPreset"}`: 2,
	} {
		if got := after[series] - before[series]; got != delta {
			t.Errorf("%s grew by %v, want %v", series, got, delta)
		}
	}
	m, err := cp.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m, `controller_runtime_webhook_latency_seconds_bucket{webhook="/mutate-pods"`) {
		t.Error("no webhook latency histogram for /mutate-pods")
	}
}

var sample = regexp.MustCompile(`^(podpreset_[a-z_]+\{[^}]*\}) ([0-9.e+]+)$`)

func counters(t *testing.T) map[string]float64 {
	t.Helper()
	m, err := cp.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(m, "\n") {
		if s := sample.FindStringSubmatch(line); s != nil {
			v, err := strconv.ParseFloat(s[2], 64)
			if err != nil {
				t.Fatal(err)
			}
			out[s[1]] = v
		}
	}
	return out
}
