package inventory

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestBusyWorkloadsWait: a workload is restarted only when its own rollout
// is over, it is not paused, and a restart would replace its pods.
func TestBusyWorkloadsWait(t *testing.T) {
	gen := metav1.ObjectMeta{Generation: 4}
	deploy := func(f func(*appsv1.Deployment)) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: gen, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 4, Replicas: 3, UpdatedReplicas: 3}}
		f(d)
		return d
	}
	sts := func(f func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
		s := &appsv1.StatefulSet{ObjectMeta: gen, Status: appsv1.StatefulSetStatus{ObservedGeneration: 4, CurrentRevision: "a", UpdateRevision: "a"}}
		f(s)
		return s
	}
	ds := func(f func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
		d := &appsv1.DaemonSet{ObjectMeta: gen, Status: appsv1.DaemonSetStatus{ObservedGeneration: 4, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2}}
		f(d)
		return d
	}
	cases := map[string]struct {
		obj  client.Object
		busy bool
	}{
		"a settled Deployment":                      {deploy(func(*appsv1.Deployment) {}), false},
		"a Deployment whose spec is not seen yet":   {deploy(func(d *appsv1.Deployment) { d.Status.ObservedGeneration = 3 }), true},
		"a Deployment with old pods left":           {deploy(func(d *appsv1.Deployment) { d.Status.Replicas = 4 }), true},
		"a Deployment with new pods missing":        {deploy(func(d *appsv1.Deployment) { d.Status.UpdatedReplicas = 1 }), true},
		"a paused Deployment":                       {deploy(func(d *appsv1.Deployment) { d.Spec.Paused = true }), true},
		"a settled StatefulSet":                     {sts(func(*appsv1.StatefulSet) {}), false},
		"a StatefulSet between revisions":           {sts(func(s *appsv1.StatefulSet) { s.Status.UpdateRevision = "b" }), true},
		"a StatefulSet that updates only on delete": {sts(func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType }), true},
		"a settled DaemonSet":                       {ds(func(*appsv1.DaemonSet) {}), false},
		"a DaemonSet still updating":                {ds(func(d *appsv1.DaemonSet) { d.Status.UpdatedNumberScheduled = 1 }), true},
		"a DaemonSet that updates only on delete":   {ds(func(d *appsv1.DaemonSet) { d.Spec.UpdateStrategy.Type = appsv1.OnDeleteDaemonSetStrategyType }), true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if why := busy(tc.obj); (why != "") != tc.busy {
				t.Errorf("busy = %q, want busy %v", why, tc.busy)
			}
		})
	}
}
