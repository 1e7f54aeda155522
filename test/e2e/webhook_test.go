package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

func TestPodReceivesPreset(t *testing.T) {
	ns := namespace(t, nil)
	createPreset(t, podPreset("db", ns, map[string]string{"app": "web"}, env("DB_HOST", "db.internal"), env("DB_PORT", "5432")))
	waitForPreset(t, ns, map[string]string{"app": "web"}, "PodPreset/db@1")

	pod := testPod("web", ns, map[string]string{"app": "web"})
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "URL", Value: "postgres://$(DB_HOST):$(DB_PORT)"}}
	create(t, pod)
	got := &corev1.Pod{}
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pod), got); err != nil {
		t.Fatal(err)
	}
	want := []corev1.EnvVar{{Name: "DB_HOST", Value: "db.internal"}, {Name: "DB_PORT", Value: "5432"}, {Name: "URL", Value: "postgres://$(DB_HOST):$(DB_PORT)"}}
	if diff := cmp.Diff(want, got.Spec.Containers[0].Env); diff != "" {
		t.Errorf("env of the stored pod (-want +got):\n%s", diff)
	}
	if a := got.Annotations["podpreset.dev/applied"]; a != "PodPreset/db@1" {
		t.Errorf("podpreset.dev/applied = %q", a)
	}
	// Pods that the preset does not select are left alone.
	other := testPod("api", ns, map[string]string{"app": "api"})
	create(t, other)
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(other), other); err != nil {
		t.Fatal(err)
	}
	if len(other.Spec.Containers[0].Env) != 0 || other.Annotations["podpreset.dev/applied"] != "" {
		t.Errorf("an unselected pod was changed: env %v, annotations %v", other.Spec.Containers[0].Env, other.Annotations)
	}
}

func TestDeploymentPodsReceivePreset(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "worker"}
	createPreset(t, podPreset("queue", ns, labels, env("QUEUE_URL", "amqp://queue")))
	waitForPreset(t, ns, labels, "PodPreset/queue@1")
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "worker", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: testPod("", "", nil).Spec},
		},
	}
	create(t, d)
	pods := waitForPods(t, ns, labels, 2)
	for _, p := range pods {
		if got := envOf(p.Spec.Containers[0])["QUEUE_URL"]; got != "amqp://queue" {
			t.Errorf("pod %s: QUEUE_URL = %q, want amqp://queue", p.Name, got)
		}
	}
	// The Deployment's own template is not changed: only pods are.
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(d), d); err != nil {
		t.Fatal(err)
	}
	if len(d.Spec.Template.Spec.Containers[0].Env) != 0 {
		t.Errorf("the Deployment's template was changed: %v", d.Spec.Template.Spec.Containers[0].Env)
	}
}

// waitForPods waits until kube-controller-manager has created n pods.
func waitForPods(t *testing.T, ns string, labels map[string]string, n int) []corev1.Pod {
	t.Helper()
	var list corev1.PodList
	eventually(t, 60*time.Second, func() error {
		if err := k8s.List(t.Context(), &list, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
			return err
		}
		if len(list.Items) < n {
			return errorf("%d of %d pods in %s", len(list.Items), n, ns)
		}
		return nil
	})
	return list.Items
}

func TestClusterPodPresetAppliesOnlyInSelectedNamespaces(t *testing.T) {
	label := "e2e-cpp-" + t.Name()[len(t.Name())-8:]
	selected := namespace(t, map[string]string{"e2e-tier": label})
	other := namespace(t, nil)
	cpp := &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: "tier-" + selected}}
	cpp.Spec.NamespaceSelector = metav1.LabelSelector{MatchLabels: map[string]string{"e2e-tier": label}}
	cpp.Spec.Env = []v1alpha1.EnvVar{env("TIER", label)}
	createPreset(t, cpp)
	waitForPreset(t, selected, nil, "ClusterPodPreset/"+cpp.Name+"@1")

	in, out := testPod("in", selected, nil), testPod("out", other, nil)
	create(t, in)
	create(t, out)
	if got := envOf(in.Spec.Containers[0])["TIER"]; got != label {
		t.Errorf("a pod in the selected namespace got TIER=%q, want %q", got, label)
	}
	if got := out.Spec.Containers[0].Env; len(got) != 0 {
		t.Errorf("a pod in another namespace got env %v", got)
	}
}

func TestPodsLeftAlone(t *testing.T) {
	ns := namespace(t, nil)
	ignored := namespace(t, map[string]string{"podpreset.dev/ignore": "true"})
	labels := map[string]string{"app": "web"}
	createPreset(t, podPreset("p", ns, labels, env("INJECTED", "yes")))
	createPreset(t, podPreset("p", ignored, labels, env("INJECTED", "yes")))
	cpp := &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: "everywhere-" + ns}}
	cpp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"e2e-everywhere": ns}}
	cpp.Spec.Env = []v1alpha1.EnvVar{env("INJECTED", "yes")}
	createPreset(t, cpp)
	waitForPreset(t, ns, labels, "PodPreset/p@1")

	cases := map[string]*corev1.Pod{
		"opted out":                 withAnnotation(testPod("opt-out", ns, labels), "podpreset.dev/exclude", "true"),
		"opted out with legacy key": withAnnotation(testPod("opt-out-legacy", ns, labels), "podpreset.admission.kubernetes.io/exclude", "true"),
		"in an ignored namespace":   testPod("ignored", ignored, labels),
		"in kube-system":            testPod("system-"+ns, "kube-system", map[string]string{"e2e-everywhere": ns}),
	}
	for name, pod := range cases {
		t.Run(name, func(t *testing.T) {
			create(t, pod)
			t.Cleanup(func() { _ = k8s.Delete(context.Background(), pod) })
			if got := pod.Spec.Containers[0].Env; len(got) != 0 {
				t.Errorf("env %v, want none", got)
			}
			if got := pod.Annotations["podpreset.dev/applied"]; got != "" {
				t.Errorf("podpreset.dev/applied = %q, want none", got)
			}
		})
	}
}

func withAnnotation(p *corev1.Pod, k, v string) *corev1.Pod {
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[k] = v
	return p
}

// warnings collects the warnings the API server returns.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

// take returns the warnings received so far and forgets them.
func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	msgs := w.msgs
	w.msgs = nil
	return msgs
}

// warningClient is a client of the test control plane that keeps the
// warnings the API server sends back (the webhook's, among others).
func warningClient() (client.Client, *warnings, error) {
	w := &warnings{}
	cfg := rest.CopyConfig(cp.Config)
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	return c, w, err
}

func TestConflictIsAWarningAndThePodWins(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "web"}
	createPreset(t, podPreset("defaults", ns, labels, env("LOG_LEVEL", "info"), env("REGION", "eu")))
	waitForPreset(t, ns, labels, "PodPreset/defaults@1")

	c, w, err := warningClient()
	if err != nil {
		t.Fatal(err)
	}
	pod := testPod("web", ns, labels)
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "debug"}}
	if err := c.Create(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	if got := envOf(pod.Spec.Containers[0]); got["LOG_LEVEL"] != "debug" || got["REGION"] != "eu" {
		t.Errorf("env %v, want the pod's LOG_LEVEL=debug and the preset's REGION=eu", got)
	}
	want := `podpreset: PodPreset/defaults@1: spec.containers[name=app].env[name=LOG_LEVEL]: kept {"name":"LOG_LEVEL","value":"debug"} (the pod's own), dropped {"name":"LOG_LEVEL","value":"info"}`
	if diff := cmp.Diff([]string{want}, w.take()); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestInvalidPresetsAreRejectedNamingTheField(t *testing.T) {
	ns := namespace(t, nil)
	cases := map[string]struct {
		preset *v1alpha1.PodPreset
		want   []string
	}{
		"injects nothing (CEL in the CRD)": {
			preset: podPreset("empty", ns, map[string]string{"app": "web"}),
			want:   []string{"spec", "spec must inject something"},
		},
		"duplicate env names (list map in the CRD)": {
			preset: podPreset("dup", ns, nil, env("A", "1"), env("A", "2")),
			want:   []string{"spec.env[1]", "Duplicate value"},
		},
		"an env name Kubernetes refuses (the validating webhook)": {
			preset: podPreset("bad-name", ns, nil, env("NOT A NAME", "1")),
			want:   []string{`admission webhook "presets.podpreset.dev" denied the request`, "spec.env[0].name"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := k8s.Create(t.Context(), tc.preset)
			if err == nil {
				t.Fatal("the API server accepted the preset")
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) && !apierrors.IsBadRequest(err) {
				t.Logf("error reason %v", apierrors.ReasonForError(err))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestKubectlDryRunServer(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "web"}
	createPreset(t, podPreset("dry", ns, labels, env("FROM_PRESET", "yes")))
	waitForPreset(t, ns, labels, "PodPreset/dry@1")
	manifest := `apiVersion: v1
kind: Pod
metadata:
  name: dry
  labels: {app: web}
spec:
  containers:
    - name: app
      image: registry.example/app:1
`
	out, _, err := cp.Kubectl(t.Context(), strings.NewReader(manifest), "create", "--dry-run=server", "-n", ns, "-f", "-", "-o", "jsonpath={.spec.containers[0].env[0].name}={.spec.containers[0].env[0].value}")
	if err != nil {
		t.Fatal(err)
	}
	if out != "FROM_PRESET=yes" {
		t.Errorf("kubectl create --dry-run=server printed %q, want FROM_PRESET=yes", out)
	}
	var list corev1.PodList
	if err := k8s.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("a dry run created %d pods", len(list.Items))
	}
}

// TestPodsAreCreatedWhileTheWebhookIsDown stops the webhook: with
// failurePolicy Ignore, pods are still created, without presets. It restarts
// the webhook before it ends.
func TestPodsAreCreatedWhileTheWebhookIsDown(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "web"}
	createPreset(t, podPreset("p", ns, labels, env("INJECTED", "yes")))
	waitForPreset(t, ns, labels, "PodPreset/p@1")
	restart := stopWebhook(t)
	pod := testPod("while-down", ns, labels)
	create(t, pod)
	if len(pod.Spec.Containers[0].Env) != 0 {
		t.Errorf("the webhook is down, yet the pod got %v", pod.Spec.Containers[0].Env)
	}
	restart()
	after := testPod("after", ns, labels)
	create(t, after)
	if got := envOf(after.Spec.Containers[0])["INJECTED"]; got != "yes" {
		t.Errorf("after the restart, INJECTED = %q", got)
	}
}

// stopWebhook stops the webhook and returns what starts it again; if the
// test ends first, its cleanup starts it. It runs with the test run's
// context, not the test's: the webhook outlives the test.
func stopWebhook(t *testing.T) (restart func()) {
	t.Helper()
	if err := cp.StopWebhook(); err != nil {
		t.Fatal(err)
	}
	started := false
	t.Cleanup(func() {
		if !started {
			_ = cp.StartWebhook(context.Background(), webhookBin, &webhookLog, webhookArgs...)
		}
	})
	return func() {
		t.Helper()
		if err := cp.StartWebhook(context.Background(), webhookBin, &webhookLog, webhookArgs...); err != nil {
			t.Fatal(err)
		}
		started = true
	}
}
