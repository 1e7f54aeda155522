package presets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	evanphx "github.com/evanphx/json-patch/v5"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"

	"github.com/podpreset/podpreset/presets/patch"
)

// checkPatch asserts that Select and MergePatch answer what Apply does,
// and that the patch is, byte for byte, the one presets/patch computes from
// the pod and Apply's result (which the fuzz invariants prove turns the pod
// into it). Unless WholeContainers says otherwise, MergePatch is given the
// pod with nothing but the name, env, envFrom and volumeMounts of each
// container, as the webhook decodes it. With replaceShape, the patch
// written with the pod's own lists known is checked too (checkReplaceShape).
func checkPatch(t *testing.T, pod *corev1.Pod, ns Namespace, set *Set, replaceShape bool) {
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
		if got, raw, err = MergePatch(in, ns, matched, nil); err != nil {
			t.Fatalf("MergePatch: %v", err)
		}
		if got.Changed && replaceShape {
			checkReplaceShape(t, pod, in, ns, matched, res.Pod, raw)
		}
		// Into a reused buffer, dirty and large: the same patch, in its
		// array.
		dirty := bytes.Repeat([]byte(`"]}{`), len(raw)+16)
		_, into, err := AppendMergePatch(dirty[:7], in, ns, matched, nil)
		if err != nil || !bytes.Equal(into, raw) || len(into) > 0 && &into[0] != &dirty[0] {
			t.Fatalf("AppendMergePatch into a reused buffer (%v): %s\nwant MergePatch's %s", err, into, raw)
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
		t.Run(name, func(t *testing.T) { checkPatch(t, tc.pod, defaultNS, mustSet(t, tc.presets...), true) })
	}
}

// checkReplaceShape asserts that the patch MergePatch writes with the pod's
// own lists known turns the pod's JSON into Apply's result, and keeps every
// field our types do not know inside the entries of the lists it replaces:
// each own entry of every list carries one here.
func checkReplaceShape(t *testing.T, pod, in *corev1.Pod, ns Namespace, matched []*Preset, want *corev1.Pod, insertOnly []byte) {
	t.Helper()
	podJSON, own := withUnknownFields(t, pod)
	_, raw, err := MergePatch(in, ns, matched, own)
	if err != nil {
		t.Fatalf("MergePatch with own lists: %v", err)
	}
	// Every insertion into a list the pod has is now a replace of it.
	inserts := regexp.MustCompile(`"path":"[^"]*/(env/\d+|envFrom/\d+|volumeMounts/-|volumes/-)"`)
	if inserts.Match(raw) || inserts.Match(insertOnly) != bytes.Contains(raw, []byte(`"op":"replace"`)) {
		t.Errorf("with the own lists known, the patch still inserts into them, or replaces for nothing:\n%s\ninsert-only:\n%s", raw, insertOnly)
	}
	p, err := evanphx.DecodePatch(raw)
	if err != nil {
		t.Fatalf("the replace-shaped patch does not decode: %v\n%s", err, raw)
	}
	patched, err := p.Apply(podJSON)
	if err != nil {
		t.Fatalf("the replace-shaped patch does not apply: %v\n%s", err, raw)
	}
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, &got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("the replace-shaped patch makes another pod (-Apply +patched):\n%s\npatch %s", diff, raw)
	}
	if b, a := bytes.Count(podJSON, []byte(unknownField)), bytes.Count(patched, []byte(unknownField)); a != b {
		t.Errorf("%d of the %d fields our types do not know survived the patch:\n%s", a, b, raw)
	}
}

const unknownField = `"x-from-a-newer-kubernetes"`

// ownLists is OwnLists over a pod's JSON.
type ownLists map[string][]byte

func (o ownLists) Container(init bool, i int, field string) []byte {
	return o[fmt.Sprintf("%v/%d/%s", init, i, field)]
}
func (o ownLists) Volumes() []byte { return o["volumes"] }

// withUnknownFields returns the pod's JSON with a field our types do not
// know in every entry of its env, envFrom, volumeMounts and volumes lists,
// and those lists' JSON.
func withUnknownFields(t *testing.T, pod *corev1.Pod) ([]byte, ownLists) {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	own := ownLists{}
	mark := func(key string, list any) {
		entries, ok := list.([]any)
		if !ok || len(entries) == 0 {
			return
		}
		for _, e := range entries {
			e.(map[string]any)[strings.Trim(unknownField, `"`)] = map[string]any{"kept": true}
		}
		b, err := json.Marshal(entries)
		if err != nil {
			t.Fatal(err)
		}
		own[key] = b
	}
	spec, _ := doc["spec"].(map[string]any)
	for _, kind := range []struct {
		field string
		init  bool
	}{{"initContainers", true}, {"containers", false}} {
		cs, _ := spec[kind.field].([]any)
		for i, c := range cs {
			for _, f := range []string{"env", "envFrom", "volumeMounts"} {
				mark(fmt.Sprintf("%v/%d/%s", kind.init, i, f), c.(map[string]any)[f])
			}
		}
	}
	mark("volumes", spec["volumes"])
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out, own
}
