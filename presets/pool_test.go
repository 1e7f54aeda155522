package presets

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// A merge reuses a pooled merger's scratch: what a large merge left in it
// must not reach the next merge, and a released merger must hold no
// pointer into a pod or a preset (it would keep an old Set alive).
func TestPooledMergersLeaveNothingBehind(t *testing.T) {
	small := testPod(withEnv("app", env("A", "mine")))
	smallSet := mustSet(t, testPP("p", injectEnv(env("A", "a"), env("B", "b"))))
	first := Apply(small, defaultNS, smallSet)

	big := benchPod()
	bigSet := NewSet(benchPresets(1000)...)
	for range 3 {
		if res := Apply(big, Namespace{Name: "bench"}, bigSet); len(res.Applied) != 5 {
			t.Fatalf("the large merge applied %d presets, want 5", len(res.Applied))
		}
		if _, _, err := MergePatch(big, Namespace{Name: "bench"}, bigSet.Match(Namespace{Name: "bench"}, big.Labels), nil); err != nil {
			t.Fatal(err)
		}
	}
	again := Apply(small, defaultNS, smallSet)
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("the small merge after large ones (-first +again):\n%s", diff)
	}

	m, res := merge(big, Namespace{Name: "bench"}, bigSet.Match(Namespace{Name: "bench"}, big.Labels), false)
	if !res.Changed {
		t.Fatal("the large merge changed nothing")
	}
	m.release()
	for name, v := range map[string]any{
		"targets": m.targets[:cap(m.targets)], "volumes": m.volumes[:cap(m.volumes)], "inits": m.inits[:cap(m.inits)],
		"initsBy": m.initsBy[:cap(m.initsBy)], "annotsBy": m.annotsBy[:cap(m.annotsBy)],
		"env slab": m.slabs.env.buf[:cap(m.slabs.env.buf)], "envFrom slab": m.slabs.envFrom.buf[:cap(m.slabs.envFrom.buf)],
		"mounts slab": m.slabs.mounts.buf[:cap(m.slabs.mounts.buf)],
	} {
		s := reflect.ValueOf(v)
		for i := range s.Len() {
			if !s.Index(i).IsZero() {
				t.Errorf("released merger: %s[%d] is %v, want zero", name, i, s.Index(i))
				break
			}
		}
	}
	if m.pod != nil || m.presets != nil {
		t.Errorf("released merger still points at the pod (%v) or the presets (%d)", m.pod != nil, len(m.presets))
	}
}

// The name filter never forgets a name it was given; most names it was
// not given it rules out.
func TestNameFilter(t *testing.T) {
	var f nameFilter
	for i := range 25 {
		f.add(keyOf(fmt.Sprintf("OWN_VAR_%d", i)))
	}
	for i := range 25 {
		if !f.mayHave(keyOf(fmt.Sprintf("OWN_VAR_%d", i))) {
			t.Fatalf("OWN_VAR_%d was added, but mayHave says no", i)
		}
	}
	falsePositives := 0
	for i := range 1000 {
		if f.mayHave(keyOf(fmt.Sprintf("OTHER_%d", i))) {
			falsePositives++
		}
	}
	// Two bits of 256 per name, 25 names: about 3.3% expected.
	if falsePositives > 100 {
		t.Errorf("%d of 1000 names never added may be there, want about 33", falsePositives)
	}
}

// With many variables, every injected name that the container or an
// earlier preset has is still found: kept and reported.
func TestEveryCollidingNameIsFound(t *testing.T) {
	var own, injected []corev1.EnvVar
	for i := range 60 {
		own = append(own, env(fmt.Sprintf("V%d", i), "mine"))
		injected = append(injected, env(fmt.Sprintf("V%d", i*2), "preset"))
	}
	res := Apply(testPod(withEnv("app", own...)), defaultNS, mustSet(t, testPP("p", injectEnv(injected...)), testPP("q", injectEnv(injected...))))
	// V0..V118 step 2: 30 of them are the pod's; p adds the other 30, q's
	// same values are no conflict.
	if got := len(res.Conflicts); got != 30+30 {
		t.Errorf("%d conflicts, want 60 (30 names the pod has, for each of the two presets)", got)
	}
	if got := len(res.Pod.Spec.Containers[0].Env); got != 90 {
		t.Errorf("the container has %d variables, want 90", got)
	}
}
