package presets

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpreset/podpreset/presets/presetstest"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// The benchmark inputs (presetstest) are fixed by the engine issue so that
// figures compare with other implementations.

func benchPod() *corev1.Pod { return presetstest.BenchPod("bench") }

func benchPresets(n int) []*Preset {
	out := make([]*Preset, 0, n)
	for _, pp := range presetstest.BenchPresets("bench", n) {
		p, err := compileObject(pp)
		if err != nil {
			panic(err)
		}
		out = append(out, p)
	}
	return out
}

var benchSizes = []int{10, 1000, 10000}

// benchEngine runs body as a sub-benchmark per size in benchSizes, with
// the benchmark pod and that many presets, 5 of which match it.
func benchEngine(b *testing.B, body func(b *testing.B, set *Set, pod *corev1.Pod, ns Namespace)) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("presets=%d", n), func(b *testing.B) {
			body(b, NewSet(benchPresets(n)...), benchPod(), Namespace{Name: "bench"})
		})
	}
}

// BenchmarkApply is the whole per-request path, from a decoded pod to the
// mutated pod: copy, match, merge, annotate.
func BenchmarkApply(b *testing.B) {
	benchEngine(b, func(b *testing.B, set *Set, pod *corev1.Pod, ns Namespace) {
		if res := Apply(pod, ns, set); len(res.Applied) != 5 || len(res.Conflicts) != 0 {
			b.Fatalf("applied %d presets with %d conflicts, want 5 and 0", len(res.Applied), len(res.Conflicts))
		}
		b.ReportAllocs()
		for b.Loop() {
			Apply(pod, ns, set)
		}
	})
}

// BenchmarkApplyFloor is BenchmarkApply's baseline: building the pod that
// Apply returns, with Apply's allocations (the pod, its two container
// lists, one array per kind of list shared by every container, the volumes
// and the annotations) and the same entries copied into them, but no
// matching, no merging and no bookkeeping. What Apply costs above it is
// the engine's own work; the rest is the memory any merged pod costs.
func BenchmarkApplyFloor(b *testing.B) {
	benchEngine(b, func(b *testing.B, set *Set, pod *corev1.Pod, ns Namespace) {
		merged := Apply(pod, ns, set).Pod
		if got := buildLike(pod, merged); !equality.Semantic.DeepEqual(got, merged) {
			b.Fatal("the floor's pod is not the merged pod")
		}
		b.ReportAllocs()
		for b.Loop() {
			buildLike(pod, merged)
		}
	})
}

// buildLike builds a pod equal to merged from pod, allocating as Apply's
// finish does: containers that share a list in merged share one here.
func buildLike(pod, merged *corev1.Pod) *corev1.Pod {
	out := new(corev1.Pod)
	*out = *pod
	out.Spec.InitContainers = slices.Clone(pod.Spec.InitContainers)
	out.Spec.Containers = slices.Clone(pod.Spec.Containers)
	inits := len(pod.Spec.InitContainers)
	nCtrs := inits + len(pod.Spec.Containers)
	at := func(p *corev1.Pod, i int) *corev1.Container {
		if i < inits {
			return &p.Spec.InitContainers[i]
		}
		return &p.Spec.Containers[i-inits]
	}
	// sharedWith returns the earlier container whose list (by of) is
	// container i's in merged, or -1.
	sharedWith := func(i int, of func(*corev1.Container) unsafe.Pointer) int {
		if of(at(merged, i)) == nil {
			return -1
		}
		for j := range i {
			if of(at(merged, j)) == of(at(merged, i)) {
				return j
			}
		}
		return -1
	}
	var n struct{ env, envFrom, mounts int }
	for i := range nCtrs {
		c := at(merged, i)
		if sharedWith(i, envOfC) < 0 {
			n.env += len(c.Env)
		}
		if sharedWith(i, envFromOfC) < 0 {
			n.envFrom += len(c.EnvFrom)
		}
		if sharedWith(i, mountsOfC) < 0 {
			n.mounts += len(c.VolumeMounts)
		}
	}
	env := make([]corev1.EnvVar, 0, n.env)
	envFrom := make([]corev1.EnvFromSource, 0, n.envFrom)
	mounts := make([]corev1.VolumeMount, 0, n.mounts)
	for i := range nCtrs {
		c, from := at(out, i), at(merged, i)
		if j := sharedWith(i, envOfC); j >= 0 {
			c.Env = at(out, j).Env
		} else {
			c.Env, env = cut(env, from.Env)
		}
		if j := sharedWith(i, envFromOfC); j >= 0 {
			c.EnvFrom = at(out, j).EnvFrom
		} else {
			c.EnvFrom, envFrom = cut(envFrom, from.EnvFrom)
		}
		if j := sharedWith(i, mountsOfC); j >= 0 {
			c.VolumeMounts = at(out, j).VolumeMounts
		} else {
			c.VolumeMounts, mounts = cut(mounts, from.VolumeMounts)
		}
	}
	out.Spec.Volumes = slices.Clone(merged.Spec.Volumes)
	out.Annotations = maps.Clone(merged.Annotations)
	return out
}

// envOfC, envFromOfC and mountsOfC give a container's list's array, for
// telling which lists are one.
func envOfC(c *corev1.Container) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(c.Env)) }
func envFromOfC(c *corev1.Container) unsafe.Pointer {
	return unsafe.Pointer(unsafe.SliceData(c.EnvFrom))
}
func mountsOfC(c *corev1.Container) unsafe.Pointer {
	return unsafe.Pointer(unsafe.SliceData(c.VolumeMounts))
}

// cut appends entries to buf and returns them as a list of their own
// (capped) and buf with them.
func cut[T any](buf, entries []T) (list, grown []T) {
	start := len(buf)
	buf = append(buf, entries...)
	return buf[start:len(buf):len(buf)], buf
}

// BenchmarkMergePatch is the engine as the webhook runs it: Select on the
// pod's metadata, then AppendMergePatch writes the JSON patch (about 9 KB
// for this pod) straight from the merge into a reused buffer, without
// building the merged pod that Apply returns (the CLI's path).
func BenchmarkMergePatch(b *testing.B) {
	benchEngine(b, func(b *testing.B, set *Set, pod *corev1.Pod, ns Namespace) {
		buf := make([]byte, 0, 64<<10)
		b.ReportAllocs()
		for b.Loop() {
			matched, _ := Select(pod, ns, set)
			res, out, err := AppendMergePatch(buf, pod, ns, matched, nil)
			if err != nil || len(out) == 0 || len(res.Applied) != 5 {
				b.Fatalf("applied %d presets, a patch of %d bytes: %v", len(res.Applied), len(out), err)
			}
		}
	})
}

// BenchmarkNewSet is what the webhook pays when presets change: compiling
// every preset of the namespace and indexing them.
func BenchmarkNewSet(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("presets=%d", n), func(b *testing.B) {
			ps := benchPresets(n)
			b.ReportAllocs()
			for b.Loop() {
				NewSet(ps...)
			}
		})
	}
}

// BenchmarkCompile is the cost of compiling one preset.
func BenchmarkCompile(b *testing.B) {
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "bench"}}
	pp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "tier": "frontend"}}
	pp.Spec.Env = []v1alpha1.EnvVar{{Name: "A", Value: "a"}, {Name: "B", Value: "b"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := compileObject(pp); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBenchFixturesMatchWhatTheySay: the benchmark pod matches 5 of
// BenchPresets' presets, and a pod labelled for k of BenchPresetsMatching's
// matches k, whatever the number of presets.
func TestBenchFixturesMatchWhatTheySay(t *testing.T) {
	for _, n := range []int{10, 1000, 10000} {
		set := NewSet(benchPresets(n)...)
		if got := len(set.Match(Namespace{Name: "bench"}, benchPod().Labels)); got != 5 {
			t.Errorf("BenchPresets(%d): the pod matches %d, want 5", n, got)
		}
		var ps []*Preset
		for _, pp := range presetstest.BenchPresetsMatching("bench", n) {
			p, err := compileObject(pp)
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p)
		}
		set = NewSet(ps...)
		for _, k := range []int{0, 1, 5, 10} {
			pod := benchPod()
			pod.Labels[presetstest.LabelMatching] = fmt.Sprint(k)
			if got := len(set.Match(Namespace{Name: "bench"}, pod.Labels)); got != k {
				t.Errorf("BenchPresetsMatching(%d): a pod labelled %d matches %d", n, k, got)
			}
		}
	}
}
