package node

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// TestPresetChangeRollsOutToRunningPods: with rollout OnChange, an edit of
// a preset reaches the process of a running Deployment, through a restart
// podpreset makes (the webhook's leader, with the RBAC the install gives
// it), and the preset's status counts the pod as applied again.
func TestPresetChangeRollsOutToRunningPods(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "roll"}
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "mode", Namespace: ns}, Spec: v1alpha1.PodPresetSpec{
		Selector: metav1.LabelSelector{MatchLabels: labels},
		Env:      []v1alpha1.EnvVar{{Name: "MODE", Value: "one"}},
		Rollout:  &v1alpha1.Rollout{Policy: v1alpha1.RolloutOnChange, MinInterval: &metav1.Duration{Duration: 10 * time.Second}},
	}}
	if err := k8s.Create(t.Context(), pp); err != nil {
		t.Fatal(err)
	}
	waitForPreset(t, ns, labels, "PodPreset/mode@1")
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "roll", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: reportPod("", ns, nil).Spec},
	}}
	if err := k8s.Create(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	first := podOf(t, ns, labels)
	report(t, ns, first, "app", wantMode("one"))

	// The status controller writes the preset too: edit the latest.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pp), pp); err != nil {
			return err
		}
		pp.Spec.Env[0].Value = "two"
		return k8s.Update(t.Context(), pp)
	}); err != nil {
		t.Fatal(err)
	}
	edited := time.Now()
	var second string
	eventually(t, 120*time.Second, func() error {
		if second = podOf(t, ns, labels); second == first {
			return fmt.Errorf("pod %s not replaced yet", first)
		}
		return nil
	})
	report(t, ns, second, "app", wantMode("two"))
	t.Logf("from the edit to the new value inside the new container: %s", time.Since(edited).Round(100*time.Millisecond))
	eventually(t, 60*time.Second, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pp), pp); err != nil {
			return err
		}
		if p := pp.Status.Pods; p == nil || *p != (v1alpha1.PodCounts{Applied: 1}) {
			return fmt.Errorf("status.pods is %+v, want 1 applied", p)
		}
		return nil
	})
}

func wantMode(want string) func([]string) error {
	return func(lines []string) error {
		if got := envOf(lines)["MODE"]; got != want {
			return fmt.Errorf("MODE=%q inside the container, want %q", got, want)
		}
		return nil
	}
}
