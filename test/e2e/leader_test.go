package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/test/cluster"
)

const (
	leaseLossLoopTime = 40 * time.Second
	leaseLossLoopPods = 1500
)

// TestLosingTheLeaseKeepsServing takes the leader's lease from under it
// (another holder writes itself into the Lease, as a replica that the API
// server answered while the leader's renewals timed out would): the leader
// stops its leader work, but neither replica exits, every pod created
// meanwhile with failurePolicy Fail is admitted with its preset, a replica
// is elected again once the other holder's lease runs out, and the new
// term's work is done (status.pods counts every pod, once).
func TestLosingTheLeaseKeepsServing(t *testing.T) {
	ctx := t.Context()
	var logs cluster.Buffer
	c, k := twoReplicasUnderLoad(t, "lease", &logs,
		"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms", "--log-format=json")
	ns, labels := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lease"}}, loadLabels
	leaseKey := client.ObjectKey{Namespace: cluster.WebhookNamespace, Name: "podpreset-webhook.podpreset.dev"}
	holder := func() (string, error) {
		var l coordinationv1.Lease
		if err := k.Get(ctx, leaseKey, &l); err != nil {
			return "", err
		}
		return ptr.Deref(l.Spec.HolderIdentity, ""), nil
	}
	var leader string
	eventually(t, 30*time.Second, func() error {
		var err error
		if leader, err = holder(); err != nil || leader == "" {
			return fmt.Errorf("no leader yet (%v)", err)
		}
		return nil
	})

	// Another holder, for 8 seconds: the leader's next renewal finds it.
	const thief = "someone-else"
	var l coordinationv1.Lease
	if err := k.Get(ctx, leaseKey, &l); err != nil {
		t.Fatal(err)
	}
	now := metav1.NewMicroTime(time.Now())
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds = ptr.To(thief), ptr.To[int32](8)
	l.Spec.AcquireTime, l.Spec.RenewTime = &now, &now
	l.Spec.LeaseTransitions = ptr.To(ptr.Deref(l.Spec.LeaseTransitions, 0) + 1)
	if err := k.Update(ctx, &l); err != nil {
		t.Fatal(err)
	}

	// Pods, in a bounded loop, until a replica leads again and a while
	// after.
	created, failed, withoutPreset := 0, 0, 0
	var firstErrors []string
	var relected time.Duration
	start := time.Now()
	for created+failed < leaseLossLoopPods && time.Since(start) < leaseLossLoopTime {
		pod := testPod(fmt.Sprintf("load-%04d", created+failed), ns.Name, labels)
		if err := k.Create(ctx, pod); err != nil {
			failed++
			if len(firstErrors) < 5 {
				firstErrors = append(firstErrors, err.Error())
			}
		} else {
			created++
			if envOf(pod.Spec.Containers[0])["INJECTED"] != "yes" {
				withoutPreset++
			}
		}
		if relected == 0 {
			if h, err := holder(); err == nil && h != thief && h != "" {
				relected = time.Since(start)
			}
		} else if time.Since(start) > relected+5*time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("lease taken: %d pods created, %d failed, %d without their preset, in %s; a replica led again after %s",
		created, failed, withoutPreset, time.Since(start).Round(time.Second), relected.Round(100*time.Millisecond))
	if failed > 0 || withoutPreset > 0 {
		t.Errorf("%d pod creations failed and %d pods lacked their preset while the lease changed hands; first errors: %v", failed, withoutPreset, firstErrors)
	}
	if relected == 0 {
		h, _ := holder()
		t.Fatalf("no replica led again within %s (holder %q)\n%s", leaseLossLoopTime, h, logs.String())
	}
	if !strings.Contains(logs.String(), "lost the leader lease") {
		t.Errorf("no replica says it lost the lease; the lease was %s's", leader)
	}
	for i := range 2 {
		if exited, err := c.ReplicaExited(i); exited {
			t.Errorf("replica %d exited (%v): losing the lease must not stop the webhook", i, err)
		}
	}
	// The new term counts every pod, once.
	eventually(t, 30*time.Second, func() error {
		var pp v1alpha1.PodPreset
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "load"}, &pp); err != nil {
			return err
		}
		if want := (v1alpha1.PodCounts{Applied: int32(created)}); pp.Status.Pods == nil || *pp.Status.Pods != want {
			return fmt.Errorf("status.pods %+v, want %+v", pp.Status.Pods, want)
		}
		return nil
	})
}
