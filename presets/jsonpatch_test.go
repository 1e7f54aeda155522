package presets

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/podpreset/podpreset/presets/patch"
)

// checkPatch asserts that Select and MergePatch answer what Apply does,
// and that the patch is, byte for byte, the one presets/patch computes from
// the pod and Apply's result (which the fuzz invariants prove turns the pod
// into it). Unless WholeContainers says otherwise, MergePatch is given the
// pod with nothing but the name, env, envFrom and volumeMounts of each
// container, as the webhook decodes it.
func checkPatch(t *testing.T, pod *corev1.Pod, ns Namespace, set *Set) {
	t.Helper()
	before := pod.DeepCopy()
	res := Apply(pod, ns, set)
	matched, skipped := Select(pod, ns, set)
	got := Result{Skipped: skipped}
	var raw []byte
	if skipped == "" {
		in := pod
		if !WholeContainers(matched) {
			in = trimContainers(pod)
		}
		var err error
		if got, raw, err = MergePatch(in, ns, matched); err != nil {
			t.Fatalf("MergePatch: %v", err)
		}
	}
	if diff := cmp.Diff(before, pod); diff != "" {
		t.Fatalf("Patch modified its input:\n%s", diff)
	}
	if got.Pod != nil {
		t.Errorf("MergePatch's Result.Pod is set; it is documented nil")
	}
	got.Pod = res.Pod
	if diff := cmp.Diff(res, got); diff != "" {
		t.Errorf("MergePatch's result is not Apply's (-Apply +MergePatch):\n%s", diff)
	}
	var want []byte
	if res.Changed {
		ops, err := patch.Pod(pod, res.Pod, "")
		if err != nil {
			t.Fatalf("patch.Pod: %v", err)
		}
		if len(ops) > 0 {
			if want, err = json.Marshal(ops); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !bytes.Equal(raw, want) {
		t.Errorf("MergePatch wrote\n%s\npatch.Pod computes\n%s", raw, want)
	}
}

// trimContainers keeps of each container what MergePatch reads when
// WholeContainers is false.
func trimContainers(pod *corev1.Pod) *corev1.Pod {
	out := pod.DeepCopy()
	for _, cs := range []*[]corev1.Container{&out.Spec.InitContainers, &out.Spec.Containers} {
		for i, c := range *cs {
			(*cs)[i] = corev1.Container{Name: c.Name, Env: c.Env, EnvFrom: c.EnvFrom, VolumeMounts: c.VolumeMounts}
		}
	}
	return out
}

func TestPatchOfEachInjectedKind(t *testing.T) {
	init := corev1.Container{Name: "setup", Image: "busybox", Env: []corev1.EnvVar{env("OWN", "1")}}
	cases := map[string]struct {
		pod     *corev1.Pod
		presets []any
	}{
		"a pod with none of the lists gets each whole": {
			pod: testPod(),
			presets: []any{testPP("p", injectEnv(env("A", "a<&>")), injectEnvFrom(cmEnvFrom("cm", "X_")), injectVolume(emptyDir("v")),
				injectMount(mount("v", "/v")), injectInit(init), injectPullSecret("pull"),
				injectAnnotation("example.com/a~b", "x\ny"), injectAnnotation("b", "\u2028"))},
		},
		"a pod with each list gets entries in front of or behind its own": {
			pod: testPod(withAnnotation("own", "1"), withEnv("app", env("OWN", "1")), withEnvFrom("app", cmEnvFrom("own", "")),
				withMount("app", mount("own", "/own")), withVolume(emptyDir("own")), withPullSecret("own"), withInitContainer(init)),
			presets: []any{testPP("p", injectEnv(env("A", "a"), env("B", "b")), injectEnvFrom(cmEnvFrom("cm", "X_")), injectVolume(emptyDir("v")),
				injectMount(mount("v", "/v")), injectInit(initC("second")), injectPullSecret("pull"), injectAnnotation("example.com/a", "x")),
				testPP("q", injectEnv(env("C", "c")))},
		},
		"a re-application only updates the applied annotation": {
			pod:     testPod(withApplied("PodPreset/p@1"), withEnv("app", env("A", "a"))),
			presets: []any{func() any { p := testPP("p", injectEnv(env("A", "a"))); p.Generation = 2; return p }()},
		},
		"nothing matches": {
			pod:     testPod(withLabels("app", "other")),
			presets: []any{testPP("p", injectEnv(env("A", "a")))},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) { checkPatch(t, tc.pod, defaultNS, mustSet(t, tc.presets...)) })
	}
}
