package presets

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	evanphx "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpreset/podpreset/presets/patch"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// gen turns fuzz bytes into choices. Names and values come from alphabets of
// two to four, so that keys collide and conflicts are common.
type gen struct {
	b []byte
	i int
}

func (g *gen) pick(n int) int {
	if g.i >= len(g.b) {
		return 0
	}
	x := g.b[g.i]
	g.i++
	return int(x) % n
}

func (g *gen) of(xs ...string) string { return xs[g.pick(len(xs))] }

func (g *gen) env() []corev1.EnvVar {
	var out []corev1.EnvVar
	for range g.pick(4) {
		e := corev1.EnvVar{Name: g.of("A", "B", "C", "D")}
		if g.pick(4) == 0 {
			e.ValueFrom = &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: g.of("x", "y")}, Key: "k"}}
		} else {
			e.Value = g.of("1", "2")
		}
		if !slices.ContainsFunc(out, func(x corev1.EnvVar) bool { return x.Name == e.Name }) {
			out = append(out, e)
		}
	}
	return out
}

func (g *gen) envFrom() []corev1.EnvFromSource {
	var out []corev1.EnvFromSource
	for range g.pick(3) {
		e := cmEnvFrom(g.of("x", "y"), g.of("", "P_"))
		if g.pick(3) == 0 {
			e.ConfigMapRef.Optional = new(true)
		}
		if !slices.ContainsFunc(out, func(x corev1.EnvFromSource) bool { return sameEnvFromKey(&x, &e) }) {
			out = append(out, e)
		}
	}
	return out
}

func (g *gen) mounts() []corev1.VolumeMount {
	var out []corev1.VolumeMount
	for range g.pick(3) {
		m := mount(g.of("v1", "v2"), g.of("/a", "/b", "/c"))
		if g.pick(3) == 0 {
			m.ReadOnly = true
		}
		if !slices.ContainsFunc(out, func(x corev1.VolumeMount) bool { return x.MountPath == m.MountPath }) {
			out = append(out, m)
		}
	}
	return out
}

func (g *gen) volumes() []corev1.Volume {
	var out []corev1.Volume
	for range g.pick(3) {
		name := g.of("v1", "v2", "v3")
		v := emptyDir(name)
		if g.pick(2) == 0 {
			v = cmVolume(name, g.of("x", "y"))
		}
		if !slices.ContainsFunc(out, func(x corev1.Volume) bool { return x.Name == v.Name }) {
			out = append(out, v)
		}
	}
	return out
}

func (g *gen) container(name string) corev1.Container {
	return corev1.Container{Name: name, Image: g.of("busybox", "nginx"), Env: g.env(), EnvFrom: g.envFrom(), VolumeMounts: g.mounts()}
}

func (g *gen) pod() *corev1.Pod {
	p := testPod(withLabels("app", g.of("web", "api")))
	p.Spec.Containers = []corev1.Container{g.container("app")}
	if g.pick(2) == 0 {
		p.Spec.Containers = append(p.Spec.Containers, g.container("side"))
	}
	if g.pick(2) == 0 {
		p.Spec.InitContainers = []corev1.Container{g.container(g.of("init", "setup"))}
	}
	p.Spec.Volumes = g.volumes()
	for range g.pick(3) {
		withAnnotation(g.of("k1", "k2", AnnotationApplied), g.of("1", "2"))(p)
	}
	for range g.pick(2) {
		withPullSecret(g.of("r1", "r2"))(p)
	}
	return p
}

func (g *gen) spec() v1alpha1.PodPresetSpec {
	var s v1alpha1.PodPresetSpec
	switch g.pick(3) {
	case 0:
	case 1:
		selecting("app", "web")(&s)
	case 2:
		selecting("app", "api")(&s)
	}
	if g.pick(3) == 0 {
		targeting(g.of("app", "side", "setup", "init"))(&s)
	}
	injectEnv(g.env()...)(&s)
	injectEnvFrom(g.envFrom()...)(&s)
	injectVolume(g.volumes()...)(&s)
	injectMount(g.mounts()...)(&s)
	for range g.pick(2) {
		c := g.container(g.of("setup", "init2", "app"))
		if !slices.ContainsFunc(s.InitContainers, func(x corev1.Container) bool { return x.Name == c.Name }) {
			injectInit(c)(&s)
		}
	}
	for range g.pick(2) {
		injectPullSecret(g.of("r1", "r3"))(&s)
	}
	for range g.pick(2) {
		injectAnnotation(g.of("k1", "k3"), g.of("1", "2"))(&s)
	}
	return s
}

func (g *gen) set() *Set {
	var ps []*Preset
	seen := map[string]bool{}
	for range 1 + g.pick(3) {
		name := g.of("a", "b", "c")
		if g.pick(2) == 0 {
			if seen["pp/"+name] {
				continue
			}
			seen["pp/"+name] = true
			pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Generation: 1}, Spec: g.spec()}
			p, err := compileObject(pp)
			if err != nil {
				panic(err)
			}
			ps = append(ps, p)
		} else {
			if seen["cpp/"+name] {
				continue
			}
			seen["cpp/"+name] = true
			cpp := &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1}}
			cpp.Spec.PodPresetSpec = g.spec()
			p, err := compileObject(cpp)
			if err != nil {
				panic(err)
			}
			ps = append(ps, p)
		}
	}
	return NewSet(ps...)
}

func FuzzApply(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20},
		[]byte("the quick brown fox jumps over the lazy dog, twice over the lazy dog"),
		{255, 254, 253, 0, 0, 1, 1, 2, 2, 3, 3, 200, 100, 50, 25, 12, 6, 3, 1, 0, 7, 7, 7, 7},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &gen{b: data}
		pod := g.pod()
		set := g.set()
		checkApplyInvariants(t, pod, set, true)
	})
}

// checkApplyInvariants asserts what must hold for every pod and every set of
// presets; replaceShape adds the patch written with the pod's own lists.
func checkApplyInvariants(t *testing.T, pod *corev1.Pod, set *Set, replaceShape bool) {
	t.Helper()
	checkPatch(t, pod, defaultNS, set, replaceShape)
	before := pod.DeepCopy()
	res := Apply(pod, defaultNS, set)
	if diff := cmp.Diff(before, pod); diff != "" {
		t.Fatalf("Apply modified its input:\n%s", diff)
	}

	// Idempotent: the same presets change nothing the second time.
	again := Apply(res.Pod, defaultNS, set)
	if again.Changed {
		t.Fatalf("second Apply changed the pod (-first +second):\n%s", cmp.Diff(res.Pod, again.Pod))
	}

	// The JSON patch the webhook sends turns the pod's JSON into the result.
	if res.Changed {
		ops, err := patch.Pod(before, res.Pod, "")
		if err != nil {
			t.Fatalf("no patch for the result: %v", err)
		}
		raw, _ := json.Marshal(ops)
		p, err := evanphx.DecodePatch(raw)
		if err != nil {
			t.Fatal(err)
		}
		podJSON, _ := json.Marshal(before)
		patched, err := p.Apply(podJSON)
		if err != nil {
			t.Fatalf("the patch does not apply: %v\n%s", err, raw)
		}
		var got corev1.Pod
		if err := json.Unmarshal(patched, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(res.Pod, &got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("the patched pod is not the result (-result +patched):\n%s", diff)
		}
	}

	// Unique keys.
	out := res.Pod
	checkUnique(t, "container name", out.Spec.InitContainers, out.Spec.Containers, func(c corev1.Container) string { return c.Name })
	checkUnique(t, "volume name", out.Spec.Volumes, nil, func(v corev1.Volume) string { return v.Name })
	for _, c := range slices.Concat(out.Spec.InitContainers, out.Spec.Containers) {
		checkUnique(t, "env name in "+c.Name, c.Env, nil, func(e corev1.EnvVar) string { return e.Name })
		checkUnique(t, "mount path in "+c.Name, c.VolumeMounts, nil, func(m corev1.VolumeMount) string { return m.MountPath })
		checkUnique(t, "envFrom key in "+c.Name, c.EnvFrom, nil, func(e corev1.EnvFromSource) string { return envFromKey(&e) })
	}

	// Nothing the pod had is removed or changed: keep only the entries the
	// pod had, and the result must be the pod.
	kept := out.DeepCopy()
	var inits []corev1.Container
	for _, c := range kept.Spec.InitContainers {
		if slices.ContainsFunc(before.Spec.InitContainers, func(x corev1.Container) bool { return x.Name == c.Name }) {
			inits = append(inits, c)
		}
	}
	kept.Spec.InitContainers = inits
	for _, pair := range [][2][]corev1.Container{{before.Spec.InitContainers, kept.Spec.InitContainers}, {before.Spec.Containers, kept.Spec.Containers}} {
		for i := range pair[1] {
			if i >= len(pair[0]) {
				break
			}
			orig, c := &pair[0][i], &pair[1][i]
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool {
				return !slices.ContainsFunc(orig.Env, func(x corev1.EnvVar) bool { return x.Name == e.Name })
			})
			c.EnvFrom = slices.DeleteFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool {
				return !slices.ContainsFunc(orig.EnvFrom, func(x corev1.EnvFromSource) bool { return sameEnvFromKey(&x, &e) })
			})
			c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
				return !slices.ContainsFunc(orig.VolumeMounts, func(x corev1.VolumeMount) bool { return x.MountPath == m.MountPath })
			})
		}
	}
	kept.Spec.Volumes = slices.DeleteFunc(kept.Spec.Volumes, func(v corev1.Volume) bool {
		return !slices.ContainsFunc(before.Spec.Volumes, func(x corev1.Volume) bool { return x.Name == v.Name })
	})
	kept.Spec.ImagePullSecrets = slices.DeleteFunc(kept.Spec.ImagePullSecrets, func(s corev1.LocalObjectReference) bool {
		return !slices.Contains(before.Spec.ImagePullSecrets, s)
	})
	for k := range kept.Annotations {
		if _, had := before.Annotations[k]; !had {
			delete(kept.Annotations, k)
		}
	}
	wantKept := before.DeepCopy()
	if res.Changed && len(res.Applied) > 0 {
		// The one value podpreset owns: it may rewrite its own record.
		delete(kept.Annotations, AnnotationApplied)
		delete(wantKept.Annotations, AnnotationApplied)
	}
	if diff := cmp.Diff(wantKept, kept, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("Apply removed or changed what the pod had (-before +after, injected entries removed):\n%s", diff)
	}
}

func checkUnique[T any](t *testing.T, what string, a, b []T, key func(T) string) {
	t.Helper()
	seen := map[string]bool{}
	for _, x := range slices.Concat(a, b) {
		k := key(x)
		if seen[k] {
			t.Fatalf("duplicate %s %q", what, k)
		}
		seen[k] = true
	}
}

// TestApplyInvariantsOnGeneratedInputs runs the fuzz invariants over a fixed
// spread of generated inputs on every `go test`, not only under -fuzz.
func TestApplyInvariantsOnGeneratedInputs(t *testing.T) {
	for i := range 2000 {
		data := []byte(fmt.Sprintf("%08x-%d-%x", i*2654435761, i, i*i*40503))
		g := &gen{b: data}
		pod, set := g.pod(), g.set()
		// The replace-shaped patch (JSON round trips of every list) on
		// every fourth input: 500 of them, at a quarter of the cost.
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkApplyInvariants(t, pod, set, i%4 == 0) })
	}
}
