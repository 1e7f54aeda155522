package presets

import (
	"bytes"
	"encoding/json"
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
// spec JSON known (ScanSpec) turns the pod's JSON into Apply's result, and
// keeps every field our types do not know: one in the spec, in every
// container and in every entry of every list the presets add to. It checks
// the spec written compact, indented, and with the lists the pod does not
// have written as null and as [].
func checkReplaceShape(t *testing.T, pod, in *corev1.Pod, ns Namespace, matched []*Preset, want *corev1.Pod, insertOnly []byte) {
	t.Helper()
	for _, form := range []specForm{compactSpec, indentedSpec, nullLists, emptyLists} {
		podJSON, specJSON := withUnknownFields(t, pod, form)
		spec := ScanSpec(specJSON)
		if spec == nil {
			t.Fatalf("%s: ScanSpec found nothing in %s", form, specJSON)
		}
		_, raw, err := MergePatch(in, ns, matched, spec)
		if err != nil {
			t.Fatalf("%s: MergePatch with the spec's JSON: %v", form, err)
		}
		// What is left besides the annotations is one replace of /spec.
		ops := regexp.MustCompile(`"path":"(/[^/"]*)`).FindAllSubmatch(raw, -1)
		specOps := 0
		for _, op := range ops {
			if string(op[1]) == "/spec" {
				specOps++
			} else if string(op[1]) != "/metadata" {
				t.Errorf("%s: the patch writes %s outside /spec and the annotations:\n%s", form, op[0], raw)
			}
		}
		if want := bytes.Contains(insertOnly, []byte(`"path":"/spec/`)); (specOps == 1) != want || specOps > 1 {
			t.Errorf("%s: %d replaces of /spec; the insert-only patch changes the spec: %v\n%s", form, specOps, want, raw)
		}
		p, err := evanphx.DecodePatch(raw)
		if err != nil {
			t.Fatalf("%s: the patch does not decode: %v\n%s", form, err, raw)
		}
		patched, err := p.Apply(podJSON)
		if err != nil {
			t.Fatalf("%s: the patch does not apply: %v\n%s", form, err, raw)
		}
		var got corev1.Pod
		if err := json.Unmarshal(patched, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, &got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: the patch makes another pod (-Apply +patched):\n%s\npatch %s", form, diff, raw)
		}
		if b, a := bytes.Count(podJSON, []byte(unknownField)), bytes.Count(patched, []byte(unknownField)); a != b {
			t.Errorf("%s: %d of the %d fields our types do not know survived the patch:\n%s", form, a, b, raw)
		}
	}
}

const unknownField = `"x-from-a-newer-kubernetes"`

// specForm is how withUnknownFields writes the spec.
type specForm string

const (
	compactSpec  specForm = "compact"
	indentedSpec specForm = "indented"
	nullLists    specForm = "lists the pod lacks as null"
	emptyLists   specForm = "lists the pod lacks as []"
)

// withUnknownFields returns the pod's JSON with a field our types do not
// know in its spec, in each container and in every entry of its env,
// envFrom, volumeMounts and volumes lists, and the JSON of that spec
// written in form.
func withUnknownFields(t *testing.T, pod *corev1.Pod, form specForm) (podJSON, specJSON []byte) {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	unknown := strings.Trim(unknownField, `"`)
	mark := func(obj map[string]any, key string) {
		list, ok := obj[key].([]any)
		if !ok || len(list) == 0 {
			switch form {
			case nullLists:
				obj[key] = nil
			case emptyLists:
				obj[key] = []any{}
			}
			return
		}
		for _, e := range list {
			e.(map[string]any)[unknown] = map[string]any{"kept": true}
		}
	}
	spec, _ := doc["spec"].(map[string]any)
	spec[unknown] = "spec"
	for _, field := range []string{"initContainers", "containers"} {
		cs, _ := spec[field].([]any)
		for _, c := range cs {
			c := c.(map[string]any)
			c[unknown] = field
			for _, f := range []string{"env", "envFrom", "volumeMounts"} {
				mark(c, f)
			}
		}
	}
	for _, f := range []string{"volumes", "imagePullSecrets", "initContainers"} {
		mark(spec, f)
	}
	if specJSON, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if podJSON, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if form == indentedSpec {
		var b bytes.Buffer
		if err := json.Indent(&b, specJSON, "\t", "  "); err != nil {
			t.Fatal(err)
		}
		specJSON = append(append([]byte("\n "), b.Bytes()...), " \n"...)
	}
	return podJSON, specJSON
}
