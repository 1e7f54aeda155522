package webhook

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/podpreset/podpreset/presets/policy"
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

// TestPresetInANamespaceTheCacheHasNotSeen: a preset created a moment
// after its namespace (one kubectl apply of both), before the cache has
// the namespace, is judged by the PodPresetPolicies the namespace's labels
// select, read from the API server: allowed where its policy allows, still
// refused where the labels select no such policy, and, with no API server
// to ask, judged as a namespace without labels (the defaults).
func TestPresetInANamespaceTheCacheHasNotSeen(t *testing.T) {
	sch := runtime.NewScheme()
	if err := corev1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	pol := v1alpha1.PodPresetPolicy{ObjectMeta: metav1.ObjectMeta{Name: "platform"}, Spec: v1alpha1.PodPresetPolicySpec{
		NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"tier": "platform"}},
		InitContainers:    v1alpha1.InitContainerPolicy{AllowedImages: []string{"registry.example/platform/"}},
	}}
	set, err := policy.NewSet(pol)
	if err != nil {
		t.Fatal(err)
	}
	ns := func(name, tier string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"tier": tier}}}
	}
	withInit := func(ns string) *v1alpha1.PodPreset {
		pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "setup", Namespace: ns}}
		pp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
		pp.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "registry.example/platform/init:1"}}
		return pp
	}
	for name, tc := range map[string]struct {
		live    client.Reader
		ns      string
		refused bool
	}{
		"a platform namespace, read from the API server": {live: fake.NewClientBuilder().WithScheme(sch).WithObjects(ns("fresh", "platform")).Build(), ns: "fresh"},
		"a tenant namespace, read from the API server":   {live: fake.NewClientBuilder().WithScheme(sch).WithObjects(ns("fresh", "tenant")).Build(), ns: "fresh", refused: true},
		"no API server to ask":                           {ns: "fresh", refused: true},
	} {
		t.Run(name, func(t *testing.T) {
			s := NewStore()
			s.policies.Store(set)
			s.cache = fake.NewClientBuilder().WithScheme(sch).Build() // has not seen the namespace
			s.LiveNamespaces = tc.live
			var errs field.ErrorList
			for _, c := range s.Checks() {
				errs = append(errs, c.Check(withInit(tc.ns))...)
			}
			if refused := len(errs) > 0; refused != tc.refused {
				t.Errorf("refused %v (%v), want %v", refused, errs.ToAggregate(), tc.refused)
			}
		})
	}
}
