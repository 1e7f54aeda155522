// Package presetstest holds the fixtures that the engine's and the
// handler's benchmarks share, fixed by the engine issue so that figures
// compare with other implementations.
package presetstest

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// BenchPod is a pod in namespace ns with 6 labels (app=web, tier=frontend,
// env=prod, team=payments, version=v1, track=stable), one init container
// and two containers with 5 env vars each, and 2 volumes.
func BenchPod(ns string) *corev1.Pod {
	c := func(name string) corev1.Container {
		c := corev1.Container{Name: name, Image: "registry.example/" + name + ":1"}
		for i := range 5 {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("%s_VAR_%d", name, i), Value: "value"})
		}
		c.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		return c
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: ns, Labels: map[string]string{
			"app": "web", "tier": "frontend", "env": "prod", "team": "payments", "version": "v1", "track": "stable",
		}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{c("init")},
			Containers:     []corev1.Container{c("web"), c("proxy")},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}},
			},
		},
	}
}

// BenchPresets returns n PodPresets in namespace ns, each with a 2-label
// selector, 4 env vars, 1 envFrom configMapRef, 1 configMap volume and 1
// mount. The 5 at indices 0, n/5, 2n/5, 3n/5 and 4n/5 select BenchPod
// ({app: web, tier: frontend}); the others select {app: app-<i>, tier:
// frontend}.
func BenchPresets(ns string, n int) []*v1alpha1.PodPreset {
	match := map[int]bool{}
	for k := range 5 {
		match[k*n/5] = true
	}
	out := make([]*v1alpha1.PodPreset, 0, n)
	for i := range n {
		app := fmt.Sprintf("app-%d", i)
		if match[i] {
			app = "web"
		}
		pp := benchPreset(ns, i)
		pp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": app, "tier": "frontend"}}
		out = append(out, pp)
	}
	return out
}

// LabelMatching is the pod label BenchPresetsMatching's presets select by.
const LabelMatching = "bench.podpreset.dev/matching"

// BenchPresetsMatching returns n PodPresets like BenchPresets' for a scale
// curve: a pod labelled LabelMatching=k (k = 1, 5 or 10) matches k of them,
// those at indices 0, n/10, 2n/10, …; every other preset selects an app no
// pod has. n is at least 10.
func BenchPresetsMatching(ns string, n int) []*v1alpha1.PodPreset {
	groups := map[int][]string{}
	for j := range 10 {
		i := j * n / 10
		switch {
		case j == 0:
			groups[i] = []string{"1", "5", "10"}
		case j < 5:
			groups[i] = []string{"5", "10"}
		default:
			groups[i] = []string{"10"}
		}
	}
	out := make([]*v1alpha1.PodPreset, 0, n)
	for i := range n {
		pp := benchPreset(ns, i)
		if values, ok := groups[i]; ok {
			pp.Spec.Selector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: LabelMatching, Operator: metav1.LabelSelectorOpIn, Values: values}}}
		} else {
			pp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", i), "tier": "frontend"}}
		}
		out = append(out, pp)
	}
	return out
}

// benchPreset is preset i's content: 4 env vars, 1 envFrom configMapRef, 1
// configMap volume and 1 mount, all named after i.
func benchPreset(ns string, i int) *v1alpha1.PodPreset {
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("preset-%05d", i), Namespace: ns, Generation: 1}}
	for j := range 4 {
		pp.Spec.Env = append(pp.Spec.Env, v1alpha1.EnvVar{Name: fmt.Sprintf("P%d_VAR_%d", i, j), Value: "v"})
	}
	cm := fmt.Sprintf("preset-%d-config", i)
	ref := corev1.LocalObjectReference{Name: cm}
	pp.Spec.EnvFrom = []v1alpha1.EnvFromSource{{EnvFromSource: corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref}}}}
	pp.Spec.Volumes = []v1alpha1.Volume{{Volume: corev1.Volume{Name: cm, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: ref}}}}}
	pp.Spec.VolumeMounts = []corev1.VolumeMount{{Name: cm, MountPath: "/etc/" + cm}}
	return pp
}
