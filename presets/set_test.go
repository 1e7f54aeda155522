package presets

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// names lists the references of presets, for diffs.
func names(ps []*Preset) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Ref().String())
	}
	return out
}

// bruteForce is what Match must return: every preset tried against the pod.
func bruteForce(ps []*Preset, ns Namespace, podLabels map[string]string) []*Preset {
	var local, cluster []*Preset
	for _, p := range ps {
		if !p.selector.Matches(labels.Set(podLabels)) {
			continue
		}
		switch {
		case p.ref.Kind == v1alpha1.KindPodPreset && p.ref.Namespace == ns.Name:
			local = append(local, p)
		case p.ref.Kind == v1alpha1.KindClusterPodPreset && p.nsSelector.Matches(labels.Set(ns.Labels)):
			cluster = append(cluster, p)
		}
	}
	byName := func(a, b *Preset) int { return strings.Compare(a.ref.Name, b.ref.Name) }
	slices.SortFunc(local, byName)
	slices.SortFunc(cluster, byName)
	return append(local, cluster...)
}

func TestMatchSelectors(t *testing.T) {
	expr := func(key string, op metav1.LabelSelectorOperator, values ...string) specOpt {
		return func(s *v1alpha1.PodPresetSpec) {
			s.Selector.MatchExpressions = append(s.Selector.MatchExpressions, metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: values})
		}
	}
	objs := []any{
		testPP("labels", selecting("app", "web", "tier", "frontend"), injectEnv(env("A", "a"))),
		testPP("in", selecting(), expr("app", metav1.LabelSelectorOpIn, "api", "web"), injectEnv(env("A", "a"))),
		testPP("notin", selecting(), expr("app", metav1.LabelSelectorOpNotIn, "api"), injectEnv(env("A", "a"))),
		testPP("exists", selecting(), expr("tier", metav1.LabelSelectorOpExists), injectEnv(env("A", "a"))),
		testPP("absent", selecting(), expr("canary", metav1.LabelSelectorOpDoesNotExist), injectEnv(env("A", "a"))),
		testPP("mixed", selecting("tier", "frontend"), expr("app", metav1.LabelSelectorOpIn, "web"), injectEnv(env("A", "a"))),
		testPP("everything", selecting(), injectEnv(env("A", "a"))),
		testCPP("cluster-everywhere", nil, selecting(), injectEnv(env("A", "a"))),
		testCPP("cluster-team", map[string]string{"team": "x"}, injectEnv(env("A", "a"))),
	}
	set := mustSet(t, objs...)
	var all []*Preset
	for _, ix := range []*index{set.namespaced["default"], set.cluster} {
		ix.candidates(nil, func(ps []*Preset) { all = append(all, ps...) })
		for _, byValue := range ix.byLabel {
			for _, ps := range byValue {
				all = append(all, ps...)
			}
		}
	}
	if got := len(dedupe(all)); got != len(objs) {
		t.Fatalf("the set holds %d presets, want %d", got, len(objs))
	}
	pods := []map[string]string{
		{"app": "web", "tier": "frontend"},
		{"app": "api", "tier": "backend"},
		{"app": "web", "canary": "true"},
		{},
	}
	for _, podLabels := range pods {
		for _, ns := range []Namespace{{Name: "default"}, {Name: "default", Labels: map[string]string{"team": "x"}}} {
			t.Run(fmt.Sprintf("%v/%v", podLabels, ns.Labels), func(t *testing.T) {
				got := set.Match(ns, podLabels)
				want := bruteForce(dedupe(all), ns, podLabels)
				if diff := cmp.Diff(names(want), names(got)); diff != "" {
					t.Errorf("Match (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func dedupe(ps []*Preset) []*Preset {
	seen := map[*Preset]bool{}
	var out []*Preset
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// TestMatchAgreesWithSelectors checks the index against brute force on
// random selectors and pods drawn from a small alphabet, so that keys and
// values collide often.
func TestMatchAgreesWithSelectors(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys, values := []string{"app", "tier", "env"}, []string{"a", "b", "c", ""}
	ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
	randomLabels := func() map[string]string {
		l := map[string]string{}
		for _, k := range keys {
			if rng.IntN(3) > 0 {
				l[k] = values[rng.IntN(len(values))]
			}
		}
		return l
	}
	for round := range 50 {
		var ps []*Preset
		for i := range 40 {
			pp := testPP(fmt.Sprintf("p%02d", i), injectEnv(env("A", "a")))
			pp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{}}
			for _, k := range keys {
				if rng.IntN(3) == 0 {
					pp.Spec.Selector.MatchLabels[k] = values[rng.IntN(len(values))]
				}
			}
			if rng.IntN(2) == 0 {
				op := ops[rng.IntN(len(ops))]
				r := metav1.LabelSelectorRequirement{Key: keys[rng.IntN(len(keys))], Operator: op}
				if op == metav1.LabelSelectorOpIn || op == metav1.LabelSelectorOpNotIn {
					r.Values = []string{values[rng.IntN(3)], values[rng.IntN(3)]}
				}
				pp.Spec.Selector.MatchExpressions = append(pp.Spec.Selector.MatchExpressions, r)
			}
			p, err := compileObject(pp)
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p)
		}
		set := NewSet(ps...)
		for range 20 {
			podLabels := randomLabels()
			got, want := set.Match(defaultNS, podLabels), bruteForce(ps, defaultNS, podLabels)
			if diff := cmp.Diff(names(want), names(got)); diff != "" {
				t.Fatalf("round %d, pod labels %v: Match (-want +got):\n%s", round, podLabels, diff)
			}
		}
	}
}

// TestMatchLooksOnlyAtCandidates checks that a request costs what its matches
// cost: with thousands of presets that select other apps, only the presets
// indexed under the pod's labels are tried.
func TestMatchLooksOnlyAtCandidates(t *testing.T) {
	set := NewSet(benchPresets(10000)...)
	pod := benchPod()
	tried := 0
	set.namespaced["bench"].candidates(pod.Labels, func(ps []*Preset) { tried += len(ps) })
	if tried != 5 {
		t.Errorf("tried %d presets for a pod 5 presets select, want 5", tried)
	}
	if got := len(set.Match(Namespace{Name: "bench"}, pod.Labels)); got != 5 {
		t.Errorf("matched %d presets, want 5", got)
	}
}

func TestCompileRejectsBadSelector(t *testing.T) {
	pp := testPP("bad", injectEnv(env("A", "a")))
	pp.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near"}}
	_, err := compileObject(pp)
	if err == nil {
		t.Fatal("CompilePodPreset accepted operator Near")
	}
	if want := "compiling PodPreset/bad@1: spec.selector"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %q", err, want)
	}
}

// TestCompiledSelectorIsTheAPIServers: a compiled selector (inline pairs
// for matchLabels of up to two, a labels.Selector otherwise) selects
// exactly what metav1.LabelSelectorAsSelector's does, and shows as it.
func TestCompiledSelectorIsTheAPIServers(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	keys := []string{"app", "tier", "env", "team"}
	values := []string{"a", "b", "c", ""} // "" is a valid label value: app="" must not match a pod without app
	inline := 0
	for range 2000 {
		ls := metav1.LabelSelector{}
		for _, k := range keys {
			if rng.IntN(3) == 0 {
				if ls.MatchLabels == nil {
					ls.MatchLabels = map[string]string{}
				}
				ls.MatchLabels[k] = values[rng.IntN(len(values))]
			}
		}
		if rng.IntN(4) == 0 {
			ls.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: keys[rng.IntN(len(keys))], Operator: metav1.LabelSelectorOpExists}}
		}
		want, err := metav1.LabelSelectorAsSelector(&ls)
		if err != nil {
			t.Fatal(err)
		}
		got, err := compileSelector(&ls)
		if err != nil {
			t.Fatal(err)
		}
		if got.full == nil {
			inline++
		}
		if g, w := got.labels().String(), want.String(); g != w {
			t.Fatalf("%v: shows as %q, want %q", ls, g, w)
		}
		for range 10 {
			have := labels.Set{}
			for _, k := range keys {
				if rng.IntN(2) == 0 {
					have[k] = values[rng.IntN(len(values))]
				}
			}
			if g, w := got.Matches(have), want.Matches(have); g != w {
				t.Fatalf("%v on %v: Matches %v, want %v", ls, have, g, w)
			}
		}
	}
	if inline < 500 {
		t.Errorf("only %d of 2000 selectors were held inline: the test does not exercise them", inline)
	}
	if _, err := compileSelector(&metav1.LabelSelector{MatchLabels: map[string]string{"a": "b c"}}); err == nil {
		t.Error("compileSelector accepted the label value \"b c\"")
	}
}
