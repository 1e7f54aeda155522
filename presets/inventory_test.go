package presets

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

func TestClassify(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	preset := func(name string, gen int64, created time.Time, opts ...func(*v1alpha1.PodPreset)) *v1alpha1.PodPreset {
		pp := testPP(name, selecting("app", "web"), injectEnv(env("A", "1")))
		pp.Generation, pp.CreationTimestamp = gen, metav1.Time{Time: created}
		for _, o := range opts {
			o(pp)
		}
		return pp
	}
	contentGen := func(g int64) func(*v1alpha1.PodPreset) {
		return func(pp *v1alpha1.PodPreset) { pp.Status.ContentGeneration = g }
	}
	withVersions := func(versions ...string) func(*v1alpha1.PodPreset) {
		return func(pp *v1alpha1.PodPreset) {
			withSources(&pp.Spec)
			for i := 0; i+1 < len(versions); i += 2 {
				pp.Status.Sources = append(pp.Status.Sources, v1alpha1.SourceStatus{Source: versions[i], Version: versions[i+1]})
			}
		}
	}
	pod := func(created time.Time, annotations ...string) PodMeta {
		m := PodMeta{Labels: map[string]string{"app": "web"}, Annotations: map[string]string{}, Created: created}
		for i := 0; i+1 < len(annotations); i += 2 {
			m.Annotations[annotations[i]] = annotations[i+1]
		}
		return m
	}
	// hashOf is the sources hash a pod gets from a preset at admission.
	hashOf := func(pp *v1alpha1.PodPreset) string {
		res := Apply(testPod(), Namespace{Name: "default"}, mustSet(t, pp))
		return res.Pod.Annotations[AnnotationSourcesHash]
	}
	later := t0.Add(time.Hour)
	ref := func(name string, gen int64) Ref {
		return Ref{Kind: v1alpha1.KindPodPreset, Namespace: "default", Name: name, Generation: gen}
	}
	cases := map[string]struct {
		presets []*v1alpha1.PodPreset
		pod     PodMeta
		want    []Verdict
	}{
		"applied at the current generation": {
			presets: []*v1alpha1.PodPreset{preset("a", 3, t0)},
			pod:     pod(later, AnnotationApplied, "PodPreset/a@3"),
			want:    []Verdict{{Preset: ref("a", 3), State: StateApplied, Got: 3}},
		},
		"an older generation is stale": {
			presets: []*v1alpha1.PodPreset{preset("a", 3, t0)},
			pod:     pod(later, AnnotationApplied, "PodPreset/a@2"),
			want:    []Verdict{{Preset: ref("a", 3), State: StateStale, Got: 2}},
		},
		"an older generation with the same content is applied": {
			presets: []*v1alpha1.PodPreset{preset("a", 3, t0, contentGen(2))},
			pod:     pod(later, AnnotationApplied, "PodPreset/a@2"),
			want:    []Verdict{{Preset: ref("a", 3), State: StateApplied, Got: 2, Current: 2}},
		},
		"created after the preset without it: missed": {
			presets: []*v1alpha1.PodPreset{preset("a", 1, t0)},
			pod:     pod(later),
			want:    []Verdict{{Preset: ref("a", 1), State: StateMissed}},
		},
		"created in the same second as the preset: missed": {
			presets: []*v1alpha1.PodPreset{preset("a", 1, t0)},
			pod:     pod(t0),
			want:    []Verdict{{Preset: ref("a", 1), State: StateMissed}},
		},
		"created before the preset: predating": {
			presets: []*v1alpha1.PodPreset{preset("a", 1, later)},
			pod:     pod(t0),
			want:    []Verdict{{Preset: ref("a", 1), State: StatePredating}},
		},
		"several presets, one of each": {
			presets: []*v1alpha1.PodPreset{preset("a", 2, t0), preset("b", 5, t0), preset("c", 1, t0)},
			pod:     pod(later, AnnotationApplied, "PodPreset/a@2,PodPreset/b@4"),
			want: []Verdict{{Preset: ref("a", 2), State: StateApplied, Got: 2}, {Preset: ref("b", 5), State: StateStale, Got: 4},
				{Preset: ref("c", 1), State: StateMissed}},
		},
		"an opted-out pod counts for nothing": {
			presets: []*v1alpha1.PodPreset{preset("a", 1, t0)},
			pod:     pod(later, AnnotationExclude, "true"),
		},
		"the values it got are the current ones": {
			presets: []*v1alpha1.PodPreset{preset("s", 1, t0, withVersions("consul:apps/default/db/host", "7"))},
			pod: pod(later, AnnotationApplied, "PodPreset/s@1",
				AnnotationSourcesHash, hashOf(preset("s", 1, t0, withVersions("consul:apps/default/db/host", "7")))),
			want: []Verdict{{Preset: ref("s", 1), State: StateApplied, Got: 1}},
		},
		"older values are stale": {
			presets: []*v1alpha1.PodPreset{preset("s", 1, t0, withVersions("consul:apps/default/db/host", "8"))},
			pod: pod(later, AnnotationApplied, "PodPreset/s@1",
				AnnotationSourcesHash, hashOf(preset("s", 1, t0, withVersions("consul:apps/default/db/host", "7")))),
			want: []Verdict{{Preset: ref("s", 1), State: StateStale, Got: 1}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			set := NewSet(loadAll(t, tc.presets...)...)
			got := Classify(tc.pod, Namespace{Name: "default"}, set)
			// Without status.contentGeneration, what the preset injects
			// is taken to have changed at its generation.
			for i := range tc.want {
				if tc.want[i].Current == 0 {
					tc.want[i].Current = tc.want[i].Preset.Generation
				}
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("verdicts (-want +got):\n%s", d)
			}
		})
	}
	// A refused preset is no one's to count.
	refused := preset("r", 1, t0)
	refused.Spec.Env[0].Name = "1BAD"
	if got := Classify(pod(later), Namespace{Name: "default"}, NewSet(loadAll(t, refused)...)); len(got) != 0 {
		t.Errorf("a refused preset was classified: %+v", got)
	}
}

// loadAll loads presets as the webhook's index does.
func loadAll(t *testing.T, pps ...*v1alpha1.PodPreset) []*Preset {
	t.Helper()
	var out []*Preset
	for _, pp := range pps {
		p, _ := Load(pp)
		if p == nil {
			t.Fatalf("%s does not compile", pp.Name)
		}
		out = append(out, p)
	}
	return out
}

func TestContentHashIgnoresRollout(t *testing.T) {
	spec := testPP("a", injectEnv(env("A", "1"))).Spec
	h := ContentHash(&spec)
	spec.Rollout = &v1alpha1.Rollout{Policy: v1alpha1.RolloutOnChange}
	if ContentHash(&spec) != h {
		t.Error("a rollout policy changed the content hash")
	}
	spec.Env = append(spec.Env, v1alpha1.EnvVar{Name: "B", Value: "2"})
	if ContentHash(&spec) == h {
		t.Error("another env var left the content hash")
	}
}
