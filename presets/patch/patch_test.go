package patch

import (
	"encoding/json"
	"strings"
	"testing"

	evanphx "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

func preset(spec v1alpha1.PodPresetSpec) *presets.Preset {
	p, errs := presets.Load(&v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Generation: 1}, Spec: spec})
	if len(errs) > 0 {
		panic(errs.ToAggregate())
	}
	return p
}

// TestPatchTurnsBeforeIntoAfter applies the patch to the JSON of the pod,
// with a field our types do not know inside an env entry, as the API server
// would, and compares with what the engine made.
func TestPatchTurnsBeforeIntoAfter(t *testing.T) {
	full := v1alpha1.PodPresetSpec{
		Env:              []v1alpha1.EnvVar{{Name: "A", Value: "a"}, {Name: "B", Value: "b"}},
		EnvFrom:          []v1alpha1.EnvFromSource{{EnvFromSource: corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}}},
		Volumes:          []v1alpha1.Volume{{Volume: corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}},
		VolumeMounts:     []corev1.VolumeMount{{Name: "v", MountPath: "/v"}},
		InitContainers:   []corev1.Container{{Name: "setup", Image: "busybox"}},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "reg"}},
		Annotations:      map[string]string{"example.com/a_b": "1", "plain": "2"},
	}
	cases := map[string]struct {
		pod  string // JSON
		spec v1alpha1.PodPresetSpec
	}{
		"a bare pod": {
			pod:  `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"app","image":"nginx"}]}}`,
			spec: full,
		},
		"a pod with lists, annotations and unknown fields": {
			pod: `{"metadata":{"name":"p","annotations":{"own":"x"}},"spec":{
				"initContainers":[{"name":"own-init","image":"busybox","env":[{"name":"I","value":"i","x-future":true}]}],
				"containers":[{"name":"app","image":"nginx","env":[{"name":"OWN","value":"1","x-future":{"k":"v"}}],
				  "envFrom":[{"secretRef":{"name":"s"}}],"volumeMounts":[{"name":"data","mountPath":"/data"}]},
				  {"name":"side","image":"envoy"}],
				"volumes":[{"name":"data","emptyDir":{}}],"imagePullSecrets":[{"name":"own-reg"}]}}`,
			spec: full,
		},
		"a re-application that only updates the applied annotation": {
			pod:  `{"metadata":{"name":"p","annotations":{"podpreset.dev/applied":"PodPreset/p@0"}},"spec":{"containers":[{"name":"app","image":"nginx","env":[{"name":"A","value":"a"}]}]}}`,
			spec: v1alpha1.PodPresetSpec{Env: []v1alpha1.EnvVar{{Name: "A", Value: "a"}}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var before corev1.Pod
			if err := json.Unmarshal([]byte(tc.pod), &before); err != nil {
				t.Fatal(err)
			}
			res := presets.Merge(&before, presets.Namespace{Name: "default"}, []*presets.Preset{preset(tc.spec)})
			if !res.Changed {
				t.Fatal("the engine changed nothing")
			}
			ops, err := Pod(&before, res.Pod, "")
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(ops)
			p, err := evanphx.DecodePatch(raw)
			if err != nil {
				t.Fatal(err)
			}
			patched, err := p.Apply([]byte(tc.pod))
			if err != nil {
				t.Fatalf("the patch does not apply: %v\n%s", err, raw)
			}
			var got corev1.Pod
			if err := json.Unmarshal(patched, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(res.Pod, &got); diff != "" {
				t.Errorf("patched pod (-engine +patched):\n%s\npatch: %s", diff, raw)
			}
			if strings.Contains(tc.pod, "x-future") && strings.Count(string(patched), "x-future") != strings.Count(tc.pod, "x-future") {
				t.Errorf("a field our types do not know was lost:\n%s", patched)
			}
		})
	}
}

func TestPatchRefusesWhatTheEngineDoesNotDo(t *testing.T) {
	before := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{{Name: "A", Value: "1"}}}}}}
	after := before.DeepCopy()
	after.Spec.Containers[0].Env[0].Value = "2"
	if _, err := Pod(before, after, ""); err == nil {
		t.Error("a changed env value was patched without complaint")
	}
}

func TestPatchPrefix(t *testing.T) {
	before := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	after := before.DeepCopy()
	after.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}}
	ops, err := Pod(before, after, "/spec/template")
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 1 || ops[0].Path != "/spec/template/spec/containers/0/env" {
		t.Errorf("ops %v", ops)
	}
}

// TestEscape checks the JSON pointer encoding of map keys (RFC 6901): ~
// first, then /, so that a key with both decodes back to itself.
func TestEscape(t *testing.T) {
	cases := map[string]string{"plain": "plain", "example.com/a": "example.com~1a", "a~b": "a~0b", "~/": "~0~1", "x~1": "x~01"}
	for in, want := range cases {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}
