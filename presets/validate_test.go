package presets

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

func TestValidatePodPreset(t *testing.T) {
	cases := map[string]struct {
		pp   *v1alpha1.PodPreset
		want []string // "type field" of each error, in order
	}{
		"a valid preset": {
			pp: testPP("ok", injectEnv(env("A", "a")), injectVolume(emptyDir("v")), injectMount(mount("v", "/v")),
				injectInit(initC("setup")), injectPullSecret("reg"), injectAnnotation("team", "x")),
		},
		"nothing to inject": {
			pp:   testPP("empty"),
			want: []string{"FieldValueRequired spec"},
		},
		"a selector that does not parse": {
			pp: testPP("bad", injectEnv(env("A", "a")), func(s *v1alpha1.PodPresetSpec) {
				s.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near", Values: []string{"x"}}}
			}),
			want: []string{"FieldValueInvalid spec.selector.matchExpressions[0].operator"},
		},
		"duplicate env names": {
			pp:   testPP("dup", injectEnv(env("A", "1"), env("B", "2"), env("A", "3"))),
			want: []string{"FieldValueDuplicate spec.env[2].name"},
		},
		"an env name Kubernetes refuses": {
			pp:   testPP("bad", injectEnv(env("A=B", "1"))),
			want: []string{"FieldValueInvalid spec.env[0].name"},
		},
		"env with both value and valueFrom": {
			pp: testPP("bad", injectEnv(corev1.EnvVar{Name: "A", Value: "x", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}})),
			want: []string{"FieldValueInvalid spec.env[0].valueFrom"},
		},
		"duplicate volume names": {
			pp:   testPP("dup", injectVolume(emptyDir("v"), cmVolume("v", "cm"))),
			want: []string{"FieldValueDuplicate spec.volumes[1].name"},
		},
		"a volume with no source": {
			pp:   testPP("bad", injectVolume(corev1.Volume{Name: "v"})),
			want: []string{"FieldValueInvalid spec.volumes[0]"},
		},
		"duplicate mount paths": {
			pp:   testPP("dup", injectMount(mount("a", "/data"), mount("b", "/data"))),
			want: []string{"FieldValueDuplicate spec.volumeMounts[1].mountPath"},
		},
		"duplicate init container names": {
			pp:   testPP("dup", injectInit(initC("setup"), initC("setup"))),
			want: []string{"FieldValueDuplicate spec.initContainers[1].name"},
		},
		"an init container without an image": {
			pp:   testPP("bad", injectInit(initC("setup", func(c *corev1.Container) { c.Image = "" }))),
			want: []string{"FieldValueRequired spec.initContainers[0].image"},
		},
		"duplicate envFrom entries": {
			pp:   testPP("dup", injectEnvFrom(cmEnvFrom("cm", ""), cmEnvFrom("cm", ""))),
			want: []string{"FieldValueDuplicate spec.envFrom[1]"},
		},
		"envFrom with no source": {
			pp:   testPP("bad", injectEnvFrom(corev1.EnvFromSource{Prefix: "P_"})),
			want: []string{"FieldValueRequired spec.envFrom[0]"},
		},
		"an annotation podpreset owns": {
			pp:   testPP("bad", injectAnnotation(AnnotationApplied, "x")),
			want: []string{"FieldValueInvalid spec.annotations[podpreset.dev/applied]"},
		},
		"an empty container name": {
			pp:   testPP("bad", targeting(""), injectEnv(env("A", "a"))),
			want: []string{"FieldValueRequired spec.containers[0]"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, errorSummary(ValidatePodPreset(tc.pp))); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateClusterPodPresetChecksNamespaceSelector(t *testing.T) {
	cpp := testCPP("bad", map[string]string{"team": "a b"}, injectEnv(env("A", "a")))
	want := []string{"FieldValueInvalid spec.namespaceSelector.matchLabels"}
	if diff := cmp.Diff(want, errorSummary(ValidateClusterPodPreset(cpp))); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func errorSummary(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, string(e.Type)+" "+e.Field)
	}
	return out
}

func TestAdvise(t *testing.T) {
	cases := map[string]struct {
		pp   *v1alpha1.PodPreset
		want []string
	}{
		"nothing to say": {
			pp: testPP("ok", injectVolume(emptyDir("v")), injectMount(mount("v", "/v")), targeting("app")),
		},
		"containers with nothing per container": {
			pp:   testPP("p", targeting("app"), injectAnnotation("a", "b")),
			want: []string{"spec.containers: has no effect, as the preset injects no env, envFrom or volumeMounts"},
		},
		"a mount of a volume the preset does not define": {
			pp:   testPP("p", injectMount(mount("data", "/data"))),
			want: []string{`spec.volumeMounts[0].name: volume "data" is not in spec.volumes: pods must define it themselves, or they will be rejected`},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Advise(&tc.pp.Spec, field.NewPath("spec"))); diff != "" {
				t.Errorf("advice (-want +got):\n%s", diff)
			}
		})
	}
}
