package webhook

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// TestStatusWritesLeaveTheIndexAlone: the status controller's writes of
// pod counts and conditions (as often as pods are created) do not load
// the preset again nor rebuild the index of every preset; a change of what
// the preset compiles from (its spec, a source version the sources
// controller reports) does.
func TestStatusWritesLeaveTheIndexAlone(t *testing.T) {
	ctx := t.Context()
	fi := &informertest.FakeInformers{Scheme: testScheme(t)}
	s := NewStore()
	if err := s.Watch(ctx, fi); err != nil {
		t.Fatal(err)
	}
	inf, err := fi.FakeInformerFor(ctx, &v1alpha1.PodPreset{})
	if err != nil {
		t.Fatal(err)
	}
	key := Key{Kind: v1alpha1.KindPodPreset, NamespacedName: types.NamespacedName{Namespace: "shop", Name: "db"}}
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db", UID: "u1", Generation: 1, ResourceVersion: "1"},
		Spec: v1alpha1.PodPresetSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "cart"}},
			Env: []v1alpha1.EnvVar{{Name: "DB_HOST", Value: "db"}}}}
	inf.Add(pp)
	first := s.Get(key)
	if first == nil {
		t.Fatal("the preset was not loaded")
	}
	update := func(change func(*v1alpha1.PodPreset)) *v1alpha1.PodPreset {
		next := pp.DeepCopy()
		change(next)
		inf.Update(pp, next)
		pp = next
		return next
	}
	update(func(p *v1alpha1.PodPreset) {
		p.ResourceVersion = "2"
		p.Status.ObservedGeneration, p.Status.ContentGeneration = 1, 0
		p.Status.Pods = &v1alpha1.PodCounts{Applied: 12}
		p.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAccepted}}
	})
	if got := s.Get(key); got != first {
		t.Errorf("a write of pod counts and conditions loaded the preset again")
	}
	for name, change := range map[string]func(*v1alpha1.PodPreset){
		"spec": func(p *v1alpha1.PodPreset) { p.Generation++; p.Spec.Env[0].Value = "db2" },
		"a source version": func(p *v1alpha1.PodPreset) {
			p.Status.Sources = []v1alpha1.SourceStatus{{Source: "consul:app/db", Version: "7"}}
		},
		"a foreign object": func(p *v1alpha1.PodPreset) {
			p.Status.ForeignObjects = []v1alpha1.ObjectReference{{Kind: "ConfigMap", Name: "x"}}
		},
		"content generation": func(p *v1alpha1.PodPreset) { p.Status.ContentGeneration = 1 },
		"recreated":          func(p *v1alpha1.PodPreset) { p.UID = "u2" },
	} {
		before := s.Get(key)
		update(change)
		if s.Get(key) == before {
			t.Errorf("a change of %s did not load the preset again", name)
		}
	}
}
