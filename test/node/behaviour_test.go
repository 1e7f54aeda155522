package node

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
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
	loadDuring(t, "rolling update", func() error {
		if out, _, err := cp.Kubectl(t.Context(), nil, "rollout", "restart", "-n", installNS, "deployment/"+webhookDeploy); err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
		return rolledOut(t)
	})
}

// TestLeaderStoppedLosesNoPod deletes the leader's pod (as kubectl
// delete pod or a node's shutdown does) while pods are created in a loop
// with failurePolicy Fail: every creation succeeds with its preset, another
// replica takes the lease, and it does the leader's work: it repairs a
// caBundle someone broke.
func TestLeaderStoppedLosesNoPod(t *testing.T) {
	var leader string
	loadDuring(t, "leader stopped", func() error {
		// The test before may have just replaced the replicas: a leader
		// that stopped released the lease (holder ""), and a running
		// replica takes it within a retry period. Wait for that.
		var err error
		deadline := time.Now().Add(60 * time.Second)
		for leader, err = runningLeader(t); err != nil; leader, err = runningLeader(t) {
			if time.Now().After(deadline) {
				return fmt.Errorf("after 60s no running replica holds the lease: %w", err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err := k8s.Delete(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: installNS, Name: leader}}); err != nil {
			return fmt.Errorf("deleting the leader %s: %w", leader, err)
		}
		return goneAndReplaced(t, leader)
	})
	var next string
	eventually(t, 60*time.Second, func() error {
		h, err := leaseHolder(t)
		if err != nil || h == leader {
			return fmt.Errorf("the lease is still %s's (%v)", h, err)
		}
		next = h
		return nil
	})
	// The new leader rotates: a broken caBundle (of the presets' webhook,
	// which fails open) is written back.
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := k8s.Get(t.Context(), client.ObjectKey{Name: "podpreset-webhook"}, &vwc); err != nil {
		t.Fatal(err)
	}
	good := vwc.Webhooks[0].ClientConfig.CABundle
	vwc.Webhooks[0].ClientConfig.CABundle = []byte("not a certificate")
	if err := k8s.Update(t.Context(), &vwc); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKey{Name: "podpreset-webhook"}, &vwc); err != nil {
			return err
		}
		if !bytes.Equal(vwc.Webhooks[0].ClientConfig.CABundle, good) {
			return fmt.Errorf("the new leader %s has not repaired the caBundle", next)
		}
		return nil
	})
}

// TestEvictionLosesNoPod evicts one replica, as kubectl drain does, while
// pods are created in a loop with failurePolicy Fail: every creation
// succeeds with its preset; and until its replacement is Ready, the
// PodDisruptionBudget refuses to evict the other.
func TestEvictionLosesNoPod(t *testing.T) {
	loadDuring(t, "eviction", func() error {
		pods, err := webhookReplicas(t)
		if err != nil {
			return err
		}
		if err := evict(t, pods[0]); err != nil {
			return fmt.Errorf("evicting %s: %w", pods[0], err)
		}
		// At once, the other: the budget (minAvailable 1) says no.
		if err := evict(t, pods[1]); !apierrors.IsTooManyRequests(err) {
			return fmt.Errorf("evicting the second replica %s right after the first gave %v, want the disruption budget's 429", pods[1], err)
		}
		return goneAndReplaced(t, pods[0])
	})
}

// loadDuring creates pods (not run: nothing schedules them) in a bounded
// loop with the pod webhook's failurePolicy Fail, at least 20 before
// disrupt starts and 20 after it returns; then every creation must have
// succeeded and every pod must have the preset.
func loadDuring(t *testing.T, what string, disrupt func() error) {
	t.Helper()
	ns := namespace(t, nil)
	labels := map[string]string{"app": "during"}
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "during", Namespace: ns}, Spec: v1alpha1.PodPresetSpec{
		Selector: metav1.LabelSelector{MatchLabels: labels}, Env: []v1alpha1.EnvVar{{Name: "INJECTED", Value: "1"}}}}
	if err := k8s.Create(t.Context(), pp); err != nil {
		t.Fatal(err)
	}
	waitForPreset(t, ns, labels, "PodPreset/during@1")
	setFailurePolicy(t, "Fail")
	t.Cleanup(func() { setFailurePolicy(t, "Ignore") })
	// The pods go at once when the test ends, not in the background of
	// the next one (a namespace's deletion of a thousand pods loads the
	// API server and the endpoints controller that the next disruption
	// relies on).
	t.Cleanup(func() {
		ctx := context.Background()
		_ = k8s.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0))
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			var left corev1.PodList
			if err := k8s.List(ctx, &left, client.InNamespace(ns)); err == nil && len(left.Items) == 0 {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	newPod := func(i int) *corev1.Pod {
		p := reportPod(fmt.Sprintf("p-%04d", i), ns, labels)
		p.Spec.SchedulerName = "not-scheduled"
		return p
	}
	// At most 50 a second, bounded in count and time.
	const maxPods, maxTime, pace = 6000, 3 * time.Minute, 20 * time.Millisecond
	stop := make(chan struct{})
	var mu sync.Mutex
	var failed []string
	created := 0
	var start time.Time // when disrupt started
	var wg sync.WaitGroup
	wg.Go(func() {
		deadline := time.Now().Add(maxTime)
		for i := 0; i < maxPods && time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			case <-time.After(pace):
			}
			err := k8s.Create(context.Background(), newPod(i))
			mu.Lock()
			created++
			if err != nil {
				at := "before"
				if !start.IsZero() {
					at = fmt.Sprintf("%s after", time.Since(start).Round(time.Millisecond))
				}
				failed = append(failed, fmt.Sprintf("%s it started: %v", at, err))
			}
			mu.Unlock()
		}
	})
	createdAtLeast := func(n int) error {
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			c := created
			mu.Unlock()
			if c >= n {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d pods created in 30s, want %d", c, n)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	// The webhook's logs, from now on, for a failure to show.
	logCtx, stopLogs := context.WithCancel(context.Background())
	var logsWG sync.WaitGroup
	replicaLogs := map[string]*string{}
	if replicas, err := webhookReplicas(t); err == nil {
		for _, r := range replicas {
			out := new(string)
			replicaLogs[r] = out
			logsWG.Go(func() {
				*out, _, _ = cp.Kubectl(logCtx, nil, "logs", "-f", "--timestamps", "-n", installNS, r, "-c", "webhook")
			})
		}
	}
	err := createdAtLeast(20)
	mu.Lock()
	start = time.Now()
	mu.Unlock()
	var took time.Duration
	if err == nil {
		err = disrupt()
		took = time.Since(start)
	}
	if err == nil {
		mu.Lock()
		after := created
		mu.Unlock()
		err = createdAtLeast(after + 20)
	}
	close(stop)
	wg.Wait()
	stopLogs()
	logsWG.Wait()
	if err != nil || len(failed) > 0 {
		for r, out := range replicaLogs {
			t.Logf("the log of %s from before %s:\n%s", r, what, tail(*out, 60))
		}
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var pods corev1.PodList
	if err := k8s.List(t.Context(), &pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		t.Fatal(err)
	}
	var bare []string
	for _, p := range pods.Items {
		if !strings.Contains(p.Annotations["podpreset.dev/applied"], "PodPreset/during@1") {
			bare = append(bare, p.Name)
		}
	}
	t.Logf("%s in %s: %d pods created, %d creations failed, %d pods without the preset", what, took.Round(time.Millisecond), created, len(failed), len(bare))
	if len(failed) > 0 {
		// Each kind of failure once, with its count: the first and the
		// last say when it began and ended.
		kinds := map[string][]string{}
		var order []string
		for _, f := range failed {
			_, kind, _ := strings.Cut(f, ": ")
			if i := strings.LastIndex(kind, ": "); i >= 0 {
				kind = kind[i+2:]
			}
			if kinds[kind] == nil {
				order = append(order, kind)
			}
			kinds[kind] = append(kinds[kind], f)
		}
		var b strings.Builder
		for _, k := range order {
			fmt.Fprintf(&b, "\n  %d× %q, first %s, last %s", len(kinds[k]), k, kinds[k][0], kinds[k][len(kinds[k])-1])
		}
		t.Errorf("%d creations failed:%s", len(failed), b.String())
	}
	if len(bare) > 0 {
		t.Errorf("%d pods without the preset: %v", len(bare), bare)
	}
}

// rolledOut waits until the webhook Deployment is rolled out: every
// replica updated and Ready.
func rolledOut(t *testing.T) error {
	out, _, err := cp.Kubectl(t.Context(), nil, "rollout", "status", "-n", installNS, "deployment/"+webhookDeploy, "--timeout=150s")
	if err != nil {
		return fmt.Errorf("the rollout did not complete: %w\n%s", err, out)
	}
	return nil
}

// goneAndReplaced waits until a webhook pod told to stop has stopped (its
// preStop pause and its shutdown are the moments that count) and the
// Deployment has its replicas Ready again.
func goneAndReplaced(t *testing.T, pod string) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := k8s.Get(t.Context(), client.ObjectKey{Namespace: installNS, Name: pod}, &corev1.Pod{})
		if apierrors.IsNotFound(err) {
			return rolledOut(t)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pod %s still there after 90s (%v)", pod, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// leaseHolder is the pod that holds the webhook's lease (its identity
// starts with the pod's name, the hostname).
func leaseHolder(t *testing.T) (string, error) {
	var l coordinationv1.Lease
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: installNS, Name: "podpreset-webhook.podpreset.dev"}, &l); err != nil {
		return "", err
	}
	id := ptr.Deref(l.Spec.HolderIdentity, "")
	if pod, _, ok := strings.Cut(id, "_"); ok {
		return pod, nil
	}
	return "", fmt.Errorf("the lease is held by %q, not a pod", id)
}

// runningLeader is the running webhook replica that holds the lease.
func runningLeader(t *testing.T) (string, error) {
	leader, err := leaseHolder(t)
	if err != nil {
		return "", err
	}
	pods, err := webhookReplicas(t)
	if err != nil {
		return "", err
	}
	if !slices.Contains(pods, leader) {
		return "", fmt.Errorf("the lease is held by %s, not one of the running replicas %v", leader, pods)
	}
	return leader, nil
}

// webhookReplicas lists the webhook's running pods.
func webhookReplicas(t *testing.T) ([]string, error) {
	var pods corev1.PodList
	if err := k8s.List(t.Context(), &pods, client.InNamespace(installNS), client.MatchingLabels{"app.kubernetes.io/component": "webhook"}); err != nil {
		return nil, err
	}
	var names []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			names = append(names, p.Name)
		}
	}
	if len(names) != 2 {
		return nil, fmt.Errorf("%d running webhook pods, want 2: %v", len(names), names)
	}
	return names, nil
}

// evict asks the API server to evict a webhook pod, as kubectl drain does.
func evict(t *testing.T, pod string) error {
	return k8s.SubResource("eviction").Create(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: installNS, Name: pod}},
		&policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: installNS, Name: pod}})
}

// setFailurePolicy sets the pod webhook's failurePolicy.
func setFailurePolicy(t *testing.T, policy string) {
	t.Helper()
	patch := fmt.Sprintf(`[{"op":"replace","path":"/webhooks/0/failurePolicy","value":%q}]`, policy)
	if out, _, err := cp.Kubectl(context.Background(), nil, "patch", "mutatingwebhookconfiguration", "podpreset-webhook", "--type=json", "-p", patch); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
