package admissionpolicy

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/cel/library"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// In auto mode a policy must leave to the webhook every pod the webhook
// would warn about (Options.HandOff): else the policy merges it, the
// webhook sees the presets applied and says nothing. So handOff must be
// true wherever the engine reports a conflict, for random presets and pods
// whose keys collide (env names, envFrom sources, mount paths, volumes,
// init containers, annotations, targets). It may be true where the engine
// reports nothing (the values were equal): the webhook merges those pods
// to the same result. The real API server's half of the proof, that such
// a pod comes out of the policy untouched, is in the e2e differential
// test.
func TestHandOffCoversEveryConflict(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 3))
	env, err := cel.NewEnv(ext.Lists(), ext.Strings(), library.Lists(), cel.HomogeneousAggregateLiterals(),
		cel.Variable("variables", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("object", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	eval := func(expr string, vars map[string]any) ref.Val {
		t.Helper()
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("compiling %s: %v", expr, iss.Err())
		}
		out, _, err := must(env.Program(ast)).Eval(vars)
		if err != nil {
			t.Fatalf("evaluating %s: %v", expr, err)
		}
		return out
	}
	conflicts, handedOff, quiet := 0, 0, 0
	fixed := oneConflictEach()
	for i := range len(fixed) + 400 {
		var ps []*presets.Preset
		var pod *corev1.Pod
		if i < len(fixed) {
			pod = fixed[i].pod
			for _, pp := range fixed[i].pps {
				ps = append(ps, loadPreset(t, pp))
			}
		} else {
			pod = randomPod(r)
			for k := range 1 + r.IntN(3) {
				ps = append(ps, loadPreset(t, randomPreset(r, k)))
			}
		}
		res := presets.Merge(pod, presets.Namespace{Name: "ns"}, ps)
		var matched []any
		for _, p := range ps {
			d, err := presetData(p)
			if err != nil {
				t.Fatal(err)
			}
			matched = append(matched, eval(unbind(d), nil))
		}
		var object map[string]any
		if err := json.Unmarshal(must(json.Marshal(pod)), &object); err != nil {
			t.Fatal(err)
		}
		ann := map[string]string{}
		for k, v := range pod.Annotations {
			ann[k] = v
		}
		got := eval(unbind(handOffExpr), map[string]any{
			"object":    object,
			"variables": map[string]any{"matched": matched, "ann": ann},
		}).Value().(bool)
		if i < len(fixed) && len(res.Conflicts) == 0 {
			t.Fatalf("fixed case %d: the engine reports no conflict", i)
		}
		if len(res.Conflicts) > 0 {
			conflicts++
			if !got {
				t.Fatalf("case %d: the engine reports %v, and the policy would not hand the pod off\npod: %s\npresets: %s", i, res.Conflicts, must(json.Marshal(pod)), describe(ps))
			}
		}
		switch {
		case got:
			handedOff++
		default:
			quiet++
		}
	}
	t.Logf("%d fixed cases and 400 random: %d with conflicts, %d handed off, %d merged by the policy", len(fixed), conflicts, handedOff, quiet)
	if conflicts < 100 || quiet < 50 {
		t.Fatalf("%d cases with conflicts and %d the policy merges: the cases no longer exercise both", conflicts, quiet)
	}
}

// oneConflictEach are pods with presets that conflict in one place only,
// one of each kind: the random cases seldom have a single conflict.
func oneConflictEach() []struct {
	pod *corev1.Pod
	pps []*v1alpha1.PodPreset
} {
	pod := func(mod func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod", Namespace: "ns"}}
		p.Spec.Containers = []corev1.Container{{Name: "app", Image: "app"}}
		if mod != nil {
			mod(p)
		}
		return p
	}
	pp := func(name string, mod func(*v1alpha1.PodPresetSpec)) *v1alpha1.PodPreset {
		p := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
		mod(&p.Spec)
		return p
	}
	env := func(v string) func(*v1alpha1.PodPresetSpec) {
		return func(s *v1alpha1.PodPresetSpec) { s.Env = []v1alpha1.EnvVar{{Name: "A", Value: v}} }
	}
	initWithEnv := func(s *v1alpha1.PodPresetSpec) {
		s.InitContainers = []corev1.Container{{Name: "setup", Image: "setup", Env: []corev1.EnvVar{{Name: "A", Value: "i"}}}}
	}
	type c = struct {
		pod *corev1.Pod
		pps []*v1alpha1.PodPreset
	}
	return []c{
		{pod(func(p *corev1.Pod) { p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "own"}} }), []*v1alpha1.PodPreset{pp("p", env("1"))}},
		{pod(nil), []*v1alpha1.PodPreset{pp("p", env("1")), pp("q", env("2"))}},
		{pod(nil), []*v1alpha1.PodPreset{pp("p", initWithEnv), pp("q", env("2"))}},
		{pod(nil), []*v1alpha1.PodPreset{pp("p", func(s *v1alpha1.PodPresetSpec) { initWithEnv(s); env("2")(s) })}},
		{pod(func(p *corev1.Pod) { p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "own"}} }), []*v1alpha1.PodPreset{pp("p", initWithEnv)}},
		{pod(nil), []*v1alpha1.PodPreset{pp("p", func(s *v1alpha1.PodPresetSpec) { s.InitContainers = []corev1.Container{{Name: "app", Image: "init"}} })}},
		{pod(func(p *corev1.Pod) { p.Annotations = map[string]string{"x": "own"} }), []*v1alpha1.PodPreset{pp("p", func(s *v1alpha1.PodPresetSpec) { s.Annotations = map[string]string{"x": "1"} })}},
		{pod(func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}), []*v1alpha1.PodPreset{pp("p", func(s *v1alpha1.PodPresetSpec) {
			s.Volumes = []v1alpha1.Volume{{Volume: corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: "Memory"}}}}}
		})}},
		{pod(func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/a"}}
		}),
			[]*v1alpha1.PodPreset{pp("p", func(s *v1alpha1.PodPresetSpec) { s.VolumeMounts = []corev1.VolumeMount{{Name: "w", MountPath: "/a"}} })}},
		{pod(func(p *corev1.Pod) {
			p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}}
		}), []*v1alpha1.PodPreset{pp("p", func(s *v1alpha1.PodPresetSpec) {
			f := false
			s.EnvFrom = []v1alpha1.EnvFromSource{{EnvFromSource: corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Optional: &f}}}}
		})}},
	}
}

// randomPreset draws a preset that matches every pod, with keys from small
// alphabets so that they collide with the pod's and each other's.
func randomPreset(r *rand.Rand, k int) *v1alpha1.PodPreset {
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "p" + strconv.Itoa(k), Namespace: "ns"}}
	for _, n := range pickSome(r, "A", "B", "C", "D") {
		pp.Spec.Env = append(pp.Spec.Env, v1alpha1.EnvVar{Name: n, Value: strconv.Itoa(r.IntN(2))})
	}
	for _, n := range pickSome(r, "cm1", "cm2") {
		pp.Spec.EnvFrom = append(pp.Spec.EnvFrom, v1alpha1.EnvFromSource{EnvFromSource: corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: n}}, Prefix: []string{"", "X_"}[r.IntN(2)]}})
	}
	for _, n := range pickSome(r, "v1", "v2") {
		pp.Spec.Volumes = append(pp.Spec.Volumes, v1alpha1.Volume{Volume: corev1.Volume{Name: n, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: []corev1.StorageMedium{"", "Memory"}[r.IntN(2)]}}}})
	}
	for _, p := range pickSome(r, "/a", "/b") {
		pp.Spec.VolumeMounts = append(pp.Spec.VolumeMounts, corev1.VolumeMount{Name: "v1", MountPath: p, ReadOnly: r.IntN(2) == 0})
	}
	for _, n := range pickSome(r, "setup", "app") {
		c := corev1.Container{Name: n, Image: "registry.example/" + n + ":" + strconv.Itoa(r.IntN(2))}
		if r.IntN(2) == 0 {
			c.Env = []corev1.EnvVar{{Name: []string{"A", "E"}[r.IntN(2)], Value: "i"}}
		}
		pp.Spec.InitContainers = append(pp.Spec.InitContainers, c)
	}
	if r.IntN(3) == 0 {
		pp.Spec.Annotations = map[string]string{"x": strconv.Itoa(r.IntN(2))}
	}
	if r.IntN(4) == 0 {
		pp.Spec.Containers = pickSome(r, "app", "side")
	}
	if len(pp.Spec.Env)+len(pp.Spec.EnvFrom)+len(pp.Spec.Volumes)+len(pp.Spec.VolumeMounts)+len(pp.Spec.InitContainers)+len(pp.Spec.Annotations) == 0 {
		pp.Spec.Env = []v1alpha1.EnvVar{{Name: "A", Value: "1"}}
	}
	return pp
}

// randomPod draws a pod with one or two containers and maybe an init
// container, whose keys come from the presets' alphabets.
func randomPod(r *rand.Rand) *corev1.Pod {
	c := func(name string) corev1.Container {
		c := corev1.Container{Name: name, Image: "registry.example/" + name}
		for _, n := range pickSome(r, "A", "P", "Q") {
			c.Env = append(c.Env, corev1.EnvVar{Name: n, Value: strconv.Itoa(r.IntN(2))})
		}
		for _, n := range pickSome(r, "cm1", "own") {
			c.EnvFrom = append(c.EnvFrom, corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: n}}})
		}
		for _, p := range pickSome(r, "/a", "/own") {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "v1", MountPath: p})
		}
		return c
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod", Namespace: "ns"}}
	pod.Spec.Containers = []corev1.Container{c("app")}
	if r.IntN(2) == 0 {
		pod.Spec.Containers = append(pod.Spec.Containers, c("side"))
	}
	if r.IntN(3) == 0 {
		pod.Spec.InitContainers = []corev1.Container{c([]string{"setup", "prepare"}[r.IntN(2)])}
	}
	for _, n := range pickSome(r, "v1", "own") {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: n, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	if r.IntN(3) == 0 {
		pod.Annotations = map[string]string{"x": strconv.Itoa(r.IntN(2))}
	}
	return pod
}

// pickSome is each of xs with probability 1/3 (the presets' keys are
// sparse, so that many cases have no conflict at all).
func pickSome(r *rand.Rand, xs ...string) []string {
	var out []string
	for _, x := range xs {
		if r.IntN(3) == 0 {
			out = append(out, x)
		}
	}
	return out
}

func describe(ps []*presets.Preset) string {
	s := ""
	for _, p := range ps {
		s += fmt.Sprintf("\n  %s: %+v", p.Ref(), p.Content())
	}
	return s
}
