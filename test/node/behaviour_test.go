package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// TestEnvReferencesExpandInTheContainer: injected env vars come before the
// container's own, so the pod's $(VAR) references to them expand, and so do
// references between injected ones; an injected var cannot refer to the
// pod's own (Kubernetes expands only references to earlier variables).
func TestEnvReferencesExpandInTheContainer(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "refs"}
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "refs", Namespace: ns}, Spec: v1alpha1.PodPresetSpec{
		Selector: metav1.LabelSelector{MatchLabels: labels},
		Env:      []v1alpha1.EnvVar{{Name: "BASE", Value: "/opt/app"}, {Name: "BIN", Value: "$(BASE)/bin"}, {Name: "TOO_EARLY", Value: "$(OWN)"}},
	}}
	if err := k8s.Create(t.Context(), pp); err != nil {
		t.Fatal(err)
	}
	waitForPreset(t, ns, labels, "PodPreset/refs@1")
	pod := reportPod("refs", ns, labels)
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "OWN", Value: "own"}, {Name: "DATA", Value: "$(BASE)/data"}}
	if err := k8s.Create(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	report(t, ns, "refs", "app", wantEnv(map[string]string{
		"BIN": "/opt/app/bin", "DATA": "/opt/app/data", "OWN": "own", "TOO_EARLY": "$(OWN)"}))
}

// TestRollingUpdateLosesNoPod rolls the webhook Deployment (a new
// ReplicaSet) while pods are created in a loop with failurePolicy Fail:
// every creation succeeds, and every pod gets its preset. The
// PodDisruptionBudget, the readiness probe and the preStop pause make it
// so: a replica leaves the Service's endpoints before it stops serving.
func TestRollingUpdateLosesNoPod(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "during-rollout"}
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "rollout", Namespace: ns}, Spec: v1alpha1.PodPresetSpec{
		Selector: metav1.LabelSelector{MatchLabels: labels}, Env: []v1alpha1.EnvVar{{Name: "INJECTED", Value: "1"}}}}
	if err := k8s.Create(t.Context(), pp); err != nil {
		t.Fatal(err)
	}
	waitForPreset(t, ns, labels, "PodPreset/rollout@1")
	setFailurePolicy(t, "Fail")
	t.Cleanup(func() { setFailurePolicy(t, "Ignore") })

	// Pods that are created, not run: nothing schedules them.
	newPod := func(i int) *corev1.Pod {
		p := reportPod(fmt.Sprintf("p-%04d", i), ns, labels)
		p.Spec.SchedulerName = "not-scheduled"
		return p
	}
	const maxPods, maxTime = 2000, 3 * time.Minute
	stop := make(chan struct{})
	var mu sync.Mutex
	var failed []string
	created := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		deadline := time.Now().Add(maxTime)
		for i := 0; i < maxPods && time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			default:
			}
			err := k8s.Create(context.Background(), newPod(i))
			mu.Lock()
			created++
			if err != nil {
				failed = append(failed, err.Error())
			}
			mu.Unlock()
		}
	})
	// Some pods before the rollout starts, and some after it ends.
	createdAtLeast := func(n int) {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if created < n {
				return fmt.Errorf("%d pods created so far", created)
			}
			return nil
		})
	}
	createdAtLeast(20)
	start := time.Now()
	if out, _, err := cp.Kubectl(t.Context(), nil, "rollout", "restart", "-n", installNS, "deployment/"+webhookDeploy); err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("%v\n%s", err, out)
	}
	out, _, err := cp.Kubectl(t.Context(), nil, "rollout", "status", "-n", installNS, "deployment/"+webhookDeploy, "--timeout=150s")
	rolled := time.Since(start)
	if err == nil {
		mu.Lock()
		after := created
		mu.Unlock()
		createdAtLeast(after + 20)
	}
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("the rollout did not complete: %v\n%s", err, out)
	}
	var pods corev1.PodList
	if err := k8s.List(t.Context(), &pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		t.Fatal(err)
	}
	var bare []string
	for _, p := range pods.Items {
		if !strings.Contains(p.Annotations["podpreset.dev/applied"], "PodPreset/rollout@1") {
			bare = append(bare, p.Name)
		}
	}
	t.Logf("rolling update in %s: %d pods created, %d creations failed, %d pods without the preset", rolled.Round(time.Millisecond), created, len(failed), len(bare))
	if len(failed) > 0 {
		t.Errorf("%d creations failed, the first: %s", len(failed), failed[0])
	}
	if len(bare) > 0 {
		t.Errorf("%d pods without the preset: %v", len(bare), bare)
	}
	if created < 20 {
		t.Errorf("only %d pods were created during the rollout", created)
	}
}

// setFailurePolicy sets the pod webhook's failurePolicy.
func setFailurePolicy(t *testing.T, policy string) {
	t.Helper()
	patch := fmt.Sprintf(`[{"op":"replace","path":"/webhooks/0/failurePolicy","value":%q}]`, policy)
	if out, _, err := cp.Kubectl(context.Background(), nil, "patch", "mutatingwebhookconfiguration", "podpreset-webhook", "--type=json", "-p", patch); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
