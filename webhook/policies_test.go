package webhook

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// The webhook defers to a compiled policy only for a pod that shows the
// policy applied every matching preset at its current generation: a
// policy not loaded yet, or compiled from an older preset, leaves the work
// to the webhook.
func TestAppliedAllWantsEveryPresetAtItsGeneration(t *testing.T) {
	load := func(name string, gen int64) *presets.Preset {
		pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Generation: gen}}
		pp.Spec.Env = []v1alpha1.EnvVar{{Name: "A", Value: "1"}}
		p, errs := presets.Load(pp)
		if len(errs) > 0 {
			t.Fatal(errs.ToAggregate())
		}
		return p
	}
	ps := []*presets.Preset{load("a", 2), load("b", 1)}
	for applied, want := range map[string]bool{
		"PodPreset/a@2,PodPreset/b@1":               true,
		"PodPreset/b@1, PodPreset/a@2":              true,
		"PodPreset/x@1,PodPreset/a@2,PodPreset/b@1": true,
		"":                                   false,
		"PodPreset/a@2":                      false, // b not applied: the policy did not run, or not all of it
		"PodPreset/a@1,PodPreset/b@1":        false, // a compiled from an older generation
		"PodPreset/a@20,PodPreset/b@1":       false,
		"ClusterPodPreset/a@2,PodPreset/b@1": false,
		"PodPreset/a@2PodPreset/b@1":         false,
		"podpreset/a@2,PodPreset/b@1":        false,
		"PodPreset/a@2,PodPreset/b@1,PodPreset/b@1,more": true,
	} {
		if got := appliedAll(applied, ps); got != want {
			t.Errorf("appliedAll(%q) = %v, want %v", applied, got, want)
		}
	}
}
