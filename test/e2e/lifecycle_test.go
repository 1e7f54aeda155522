package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/inventory"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// deployment is a Deployment of pods with these labels. Its strategy is
// Recreate: on this control plane no node runs pods, so a rolling update
// would wait forever for new pods to be available; Recreate replaces them
// at once.
func deployment(name, ns string, labels map[string]string, replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       testPod("", ns, nil).Spec,
			},
		},
	}
}

// onChange is a preset that restarts its workloads, at most every
// minInterval.
func onChange(pp *v1alpha1.PodPreset, minInterval time.Duration) *v1alpha1.PodPreset {
	pp.Spec.Rollout = &v1alpha1.Rollout{Policy: v1alpha1.RolloutOnChange, MinInterval: &metav1.Duration{Duration: minInterval}}
	return pp
}

// podsCount waits until a preset's status counts its pods as want.
func podsCount(t *testing.T, pp *v1alpha1.PodPreset, want v1alpha1.PodCounts, timeout time.Duration) *v1alpha1.PodPreset {
	t.Helper()
	eventually(t, timeout, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pp), pp); err != nil {
			return err
		}
		if got := pp.Status.Pods; got == nil || *got != want {
			return fmt.Errorf("status.pods of %s is %+v, want %+v", pp.Name, got, want)
		}
		return nil
	})
	return pp
}

// podsOf lists the pods of a namespace with these labels, but for those
// being deleted.
func podsOf(t *testing.T, ns string, labels map[string]string) []corev1.Pod {
	t.Helper()
	var list corev1.PodList
	if err := k8s.List(t.Context(), &list, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil })
}

// eventsAbout lists the events.k8s.io Events that podpreset reported in a
// namespace about an object of this kind and name (not the ones the
// control plane's own controllers reported).
func eventsAbout(t *testing.T, ns, kind, name string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(list.Items, func(e eventsv1.Event) bool {
		return e.ReportingController != "podpreset-webhook" || e.Regarding.Kind != kind || e.Regarding.Name != name
	})
}

// edit changes the latest version of obj and updates it: the status
// controller writes presets too, so the copy a test holds may be old.
func edit(tb testing.TB, obj client.Object, change func()) {
	tb.Helper()
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change()
		return k8s.Update(context.Background(), obj)
	}); err != nil {
		tb.Fatal(err)
	}
}

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

// cli runs kubectl-podpreset, built from the working tree into the run's
// temporary directory (cliBin, set by TestMain), against the control plane.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	cliOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", cliBin, "./cmd/kubectl-podpreset")
		cmd.Dir = cp.Root
		if b, err := cmd.CombinedOutput(); err != nil {
			cliErr = fmt.Errorf("building kubectl-podpreset: %v\n%s", err, b)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	out, err := exec.CommandContext(t.Context(), cliBin, append(args, "--kubeconfig="+cp.Kubeconfig)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl-podpreset %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestMissedPodsAreCountedAndRolledOut creates a preset while the webhook
// is down: the pods created then miss it. Once the webhook is back, the
// inventory counts them as missed, the preset gets one PodsMissed Event,
// and with rollout OnChange the Deployment is restarted, so that its new
// pods have the preset. Bare pods and workloads that opt out stay missed
// and untouched, and a tenant's preset restarts nothing in another
// namespace.
func TestMissedPodsAreCountedAndRolledOut(t *testing.T) {
	ns, other := namespace(t, nil), namespace(t, nil)
	labels := map[string]string{"app": "web"}
	// Created before the preset: predating. Creation times have seconds
	// only, and a pod of the preset's second counts as created after it.
	before := createPod(t, testPod("before", ns, labels))
	time.Sleep(time.Until(before.CreationTimestamp.Add(1100 * time.Millisecond)))

	restart := stopWebhook(t)
	pp := onChange(podPreset("web", ns, labels, env("INJECTED", "yes")), 10*time.Second)
	createPreset(t, pp)
	// Each workload selects its own pods only (a ReplicaSet adopts the
	// pods its selector matches that have no owner).
	web := deployment("web", ns, map[string]string{"app": "web", "workload": "web"}, 2)
	create(t, web)
	optOut := deployment("pinned", ns, map[string]string{"app": "web", "workload": "pinned"}, 1)
	optOut.Annotations = map[string]string{inventory.AnnotationRollout: "Never"}
	create(t, optOut)
	elsewhere := deployment("web", other, map[string]string{"app": "web", "workload": "web"}, 1)
	create(t, elsewhere)
	bare := createPod(t, testPod("bare", ns, map[string]string{"app": "web", "workload": "none"}))
	eventually(t, 30*time.Second, func() error {
		if n, m := len(podsOf(t, ns, labels)), len(podsOf(t, other, labels)); n != 5 || m != 1 {
			return fmt.Errorf("%d pods in %s, %d in %s; want 5 and 1", n, ns, m, other)
		}
		return nil
	})
	for _, p := range append(podsOf(t, ns, labels), podsOf(t, other, labels)...) {
		if len(p.Spec.Containers[0].Env) != 0 {
			t.Fatalf("pod %s got %v while the webhook was down", p.Name, p.Spec.Containers[0].Env)
		}
	}

	restart()

	// One aggregated Event on the preset.
	eventually(t, 30*time.Second, func() error {
		evs := eventsAbout(t, ns, v1alpha1.KindPodPreset, "web")
		if len(evs) != 1 || evs[0].Reason != "PodsMissed" || !strings.Contains(evs[0].Note, "pods created after this preset did not get it") {
			return fmt.Errorf("events on the preset: %+v", evs)
		}
		return nil
	})
	// The Deployment is restarted for the preset, with an Event on it.
	eventually(t, 60*time.Second, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(web), web); err != nil {
			return err
		}
		a := web.Spec.Template.Annotations
		if a[inventory.AnnotationRestartedAt] == "" || a[inventory.AnnotationRestartedFor] != "PodPreset/"+ns+"/web@1" {
			return fmt.Errorf("the Deployment's template annotations are %v", a)
		}
		return nil
	})
	// The Event follows the restart: the recorder sends it on its own
	// goroutine (a cold run read the events in between and found none).
	eventually(t, 15*time.Second, func() error {
		evs := eventsAbout(t, ns, "Deployment", "web")
		if len(evs) != 1 || evs[0].Reason != "PodPresetRollout" || !strings.Contains(evs[0].Note, "restarted for PodPreset "+ns+"/web") ||
			!strings.Contains(evs[0].Note, "2 missed") || evs[0].Related == nil || evs[0].Related.Name != "web" {
			return fmt.Errorf("events on the Deployment: %+v", evs)
		}
		return nil
	})
	// Its new pods have the preset; what cannot be restarted is still
	// missed; the pod from before the preset is predating.
	podsCount(t, pp, v1alpha1.PodCounts{Applied: 2, Missed: 2, Predating: 1}, 60*time.Second)
	for _, p := range podsOf(t, ns, map[string]string{"app": "web"}) {
		got := envOf(p.Spec.Containers[0])["INJECTED"]
		switch {
		case p.Name == "before" || p.Name == "bare" || p.Labels["workload"] == "pinned":
			if got != "" {
				t.Errorf("pod %s was replaced or changed: INJECTED=%q", p.Name, got)
			}
		case got != "yes":
			t.Errorf("the Deployment's new pod %s has INJECTED=%q", p.Name, got)
		}
	}
	if got := podsOf(t, ns, map[string]string{"workload": "none"}); len(got) != 1 || got[0].UID != bare.UID {
		t.Errorf("the bare pod was touched: %+v", got)
	}
	for _, d := range []*appsv1.Deployment{optOut, elsewhere} {
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(d), d); err != nil {
			t.Fatal(err)
		}
		if a := d.Spec.Template.Annotations; a[inventory.AnnotationRestartedAt] != "" {
			t.Errorf("Deployment %s/%s was restarted: %v", d.Namespace, d.Name, a)
		}
	}
	for _, typ := range []string{v1alpha1.ConditionPodsMissed, v1alpha1.ConditionReady, v1alpha1.ConditionPodsStale} {
		c := meta.FindStatusCondition(pp.Status.Conditions, typ)
		want := map[string]metav1.ConditionStatus{v1alpha1.ConditionPodsMissed: "True", v1alpha1.ConditionReady: "False", v1alpha1.ConditionPodsStale: "False"}[typ]
		if c == nil || c.Status != want {
			t.Errorf("condition %s is %+v, want %s", typ, c, want)
		}
	}
	if c := meta.FindStatusCondition(pp.Status.Conditions, v1alpha1.ConditionPodsMissed); c != nil && !strings.Contains(c.Message, ns+"/bare") {
		t.Errorf("PodsMissed does not name the bare pod: %s", c.Message)
	}
	// Still one Event on the preset: never one per pod or per resync.
	if evs := eventsAbout(t, ns, v1alpha1.KindPodPreset, "web"); len(evs) != 1 {
		t.Errorf("%d events on the preset, want 1: %+v", len(evs), evs)
	}

	// kubectl get and kubectl podpreset show the counts; explain says why.
	if out, _, err := cp.Kubectl(t.Context(), nil, "get", "podpresets", "-n", ns); err != nil ||
		!strings.Contains(out, "APPLIED") || !regexpMatch(`web\s+\S+\s+Accepted\s+2\s+0\s+2\s`, out) {
		t.Errorf("kubectl get podpresets: %v\n%s", err, out)
	}
	if out := cli(t, "status", "-n", ns); !regexpMatch(`PodPreset/web\s+Accepted\s+2\s+0\s+2\s+1\s+OnChange\s+False`, out) {
		t.Errorf("kubectl podpreset status:\n%s", out)
	}
	for pod, state := range map[string]string{"bare": "missed", "before": "predating"} {
		if out := cli(t, "explain", "pod/"+pod, "-n", ns); !regexpMatch(`PodPreset/`+ns+`/web\s+1\s+yes\s+`+state, out) {
			t.Errorf("explain pod/%s does not say %s:\n%s", pod, state, out)
		}
	}
	newPod := slices.IndexFunc(podsOf(t, ns, labels), func(p corev1.Pod) bool { return strings.HasPrefix(p.Name, "web-") })
	if newPod < 0 {
		t.Fatal("no pod of the Deployment")
	}
	if out := cli(t, "explain", "pod/"+podsOf(t, ns, labels)[newPod].Name, "-n", ns); !regexpMatch(`PodPreset/`+ns+`/web\s+1\s+yes\s+applied\s+1`, out) ||
		!strings.Contains(out, "env INJECTED (a value)") {
		t.Errorf("explain of the new pod:\n%s", out)
	}
}

// TestPresetEditRollsOutWithinTheRateLimit edits a preset: its pods become
// stale, and with rollout OnChange its two Deployments are restarted one
// after the other, minInterval apart. An edit of spec.rollout alone makes
// no pod stale.
func TestPresetEditRollsOutWithinTheRateLimit(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "api"}
	pp := onChange(podPreset("api", ns, labels, env("VERSION", "1")), 10*time.Second)
	createPreset(t, pp)
	waitForPreset(t, ns, labels, "PodPreset/api@1")
	a := deployment("api-a", ns, map[string]string{"app": "api", "workload": "a"}, 1)
	b := deployment("api-b", ns, map[string]string{"app": "api", "workload": "b"}, 1)
	create(t, a)
	create(t, b)
	podsCount(t, pp, v1alpha1.PodCounts{Applied: 2}, 30*time.Second)

	edit(t, pp, func() { pp.Spec.Env[0].Value = "2" })
	edited := time.Now()
	// Both are restarted for generation 2, minInterval apart.
	var at []time.Time
	eventually(t, 90*time.Second, func() error {
		at = at[:0]
		for _, d := range []*appsv1.Deployment{a, b} {
			if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(d), d); err != nil {
				return err
			}
			ann := d.Spec.Template.Annotations
			if ann[inventory.AnnotationRestartedFor] != "PodPreset/"+ns+"/api@2" {
				return fmt.Errorf("%s not restarted for generation 2 yet: %v", d.Name, ann)
			}
			ts, err := time.Parse(time.RFC3339, ann[inventory.AnnotationRestartedAt])
			if err != nil {
				return err
			}
			at = append(at, ts)
		}
		return nil
	})
	gap := at[1].Sub(at[0]).Abs()
	if gap < 10*time.Second {
		t.Errorf("the two Deployments were restarted %s apart, under the preset's minInterval of 10s", gap)
	}
	podsCount(t, pp, v1alpha1.PodCounts{Applied: 2}, 60*time.Second)
	t.Logf("preset edited at %s; restarts %s and %s after; all pods current %s after",
		edited.Format(time.TimeOnly), at[0].Sub(edited.Truncate(time.Second)), at[1].Sub(edited.Truncate(time.Second)), time.Since(edited).Round(time.Second))
	for _, p := range podsOf(t, ns, labels) {
		if got := envOf(p.Spec.Containers[0])["VERSION"]; got != "2" {
			t.Errorf("pod %s has VERSION=%q after the rollout", p.Name, got)
		}
	}

	// spec.rollout is not content: the pods stay applied.
	edit(t, pp, func() { pp.Spec.Rollout.MinInterval = &metav1.Duration{Duration: 20 * time.Second} })
	eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pp), pp); err != nil {
			return err
		}
		if pp.Status.ObservedGeneration != 3 {
			return fmt.Errorf("observedGeneration %d, want 3", pp.Status.ObservedGeneration)
		}
		return nil
	})
	if pp.Status.ContentGeneration != 2 || pp.Status.Pods == nil || pp.Status.Pods.Stale != 0 || pp.Status.Pods.Applied != 2 {
		t.Errorf("after a change of spec.rollout: contentGeneration %d, pods %+v; want 2 and 2 applied", pp.Status.ContentGeneration, pp.Status.Pods)
	}
}

// TestStaleAndMissedWithoutRollout: with the default policy Never, an edit
// and a Consul value change make pods stale, and nothing is restarted.
func TestStaleAndMissedWithoutRollout(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "reports"}
	key := "apps/" + ns + "/reports/mode"
	putConsul(t, key, "full")
	withSource := podPreset("reports", ns, labels, consulEnv("MODE", key))
	createSourcesPreset(t, withSource)
	sourcesCondition(t, withSource, metav1.ConditionTrue, 20*time.Second)
	plain := podPreset("plain", ns, labels, env("A", "1"))
	createPreset(t, plain)
	waitForPreset(t, ns, labels, "PodPreset/plain@1")
	waitForPreset(t, ns, labels, "PodPreset/reports@1")
	d := deployment("reports", ns, labels, 1)
	create(t, d)
	podsCount(t, withSource, v1alpha1.PodCounts{Applied: 1}, 30*time.Second)
	podsCount(t, plain, v1alpha1.PodCounts{Applied: 1}, 10*time.Second)

	// A Consul value change: stale through podpreset.dev/sources-hash.
	putConsul(t, key, "summary")
	podsCount(t, withSource, v1alpha1.PodCounts{Stale: 1}, 30*time.Second)
	podsCount(t, plain, v1alpha1.PodCounts{Applied: 1}, 10*time.Second)
	if c := meta.FindStatusCondition(withSource.Status.Conditions, v1alpha1.ConditionPodsStale); c == nil || c.Status != "True" {
		t.Errorf("PodsStale is %+v", c)
	}
	// An edit: stale through the generation.
	edit(t, plain, func() { plain.Spec.Env[0].Value = "2" })
	podsCount(t, plain, v1alpha1.PodCounts{Stale: 1}, 30*time.Second)
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(d), d); err != nil {
		t.Fatal(err)
	}
	if a := d.Spec.Template.Annotations; a[inventory.AnnotationRestartedAt] != "" {
		t.Errorf("a preset with rollout Never restarted the Deployment: %v", a)
	}
	out := cli(t, "explain", "pod/"+podsOf(t, ns, labels)[0].Name, "-n", ns)
	if !strings.Contains(out, "stale: the pod has generation 1; what the preset injects changed at generation 2") ||
		!strings.Contains(out, "stale: the pod has generation 1, but older Consul or Vault values") {
		t.Errorf("explain does not say why each is stale:\n%s", out)
	}
}

// TestPresetAppliedWithItsPods applies a preset and 50 pods in one kubectl
// apply, ten times, and counts the pods that missed the preset: with
// --preset-wait=0 (the race as it was) and with the default, on one replica
// (the one that validates the preset is the one that admits the pods).
func TestPresetAppliedWithItsPods(t *testing.T) {
	const rounds, pods = 10, 50
	run := func(args ...string) (missed int) {
		if err := cp.StopWebhook(); err != nil {
			t.Fatal(err)
		}
		if err := cp.StartWebhook(context.Background(), webhookBin, &webhookLog, append(slices.Clone(webhookArgs), args...)...); err != nil {
			t.Fatal(err)
		}
		for range rounds {
			ns := namespace(t, nil)
			var doc strings.Builder
			fmt.Fprintf(&doc, "apiVersion: podpreset.dev/v1alpha1\nkind: PodPreset\nmetadata: {name: together, namespace: %s}\nspec:\n  selector: {matchLabels: {app: together}}\n  env: [{name: TOGETHER, value: \"yes\"}]\n", ns)
			for i := range pods {
				fmt.Fprintf(&doc, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p%02d, namespace: %s, labels: {app: together}}\nspec: {containers: [{name: app, image: registry.example/app:1}]}\n", i, ns)
			}
			if out, errOut, err := cp.Kubectl(t.Context(), strings.NewReader(doc.String()), "apply", "-f", "-"); err != nil {
				t.Fatalf("kubectl apply: %v\n%s%s", err, out, errOut)
			}
			for _, p := range podsOf(t, ns, map[string]string{"app": "together"}) {
				if envOf(p.Spec.Containers[0])["TOGETHER"] != "yes" {
					missed++
				}
			}
		}
		return missed
	}
	t.Cleanup(func() {
		_ = cp.StopWebhook()
		_ = cp.StartWebhook(context.Background(), webhookBin, &webhookLog, webhookArgs...)
	})
	without := run("--preset-wait=0")
	with := run()
	t.Logf("pods that missed a preset applied in the same kubectl apply: %d of %d without waiting, %d of %d with --preset-wait=1s",
		without, rounds*pods, with, rounds*pods)
	if with != 0 {
		t.Errorf("%d pods missed a preset this replica had validated", with)
	}
}

// regexpMatch says whether a regular expression matches s.
func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
