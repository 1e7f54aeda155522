package presets

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// The benchmark inputs are fixed by the engine issue so that figures compare
// with other implementations: a pod with 6 labels, one init container and two
// containers with 5 env vars each and 2 volumes; N presets in the namespace,
// each with a 2-label selector, 4 env vars, 1 envFrom, 1 volume and 1 mount;
// 5 of them select the pod, at indices 0, N/5, 2N/5, 3N/5 and 4N/5.

func benchPod() *corev1.Pod {
	c := func(name string) corev1.Container {
		c := corev1.Container{Name: name, Image: "registry.example/" + name + ":1"}
		for i := range 5 {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("%s_VAR_%d", name, i), Value: "value"})
		}
		c.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		return c
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "bench", Labels: map[string]string{
			"app": "web", "tier": "frontend", "env": "prod", "team": "payments", "version": "v1", "track": "stable",
		}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{c("init")},
			Containers:     []corev1.Container{c("web"), c("proxy")},
			Volumes:        []corev1.Volume{emptyDir("data"), cmVolume("config", "web-config")},
		},
	}
}

func benchPresets(n int) []*Preset {
	match := map[int]bool{}
	for k := range 5 {
		match[k*n/5] = true
	}
	out := make([]*Preset, 0, n)
	for i := range n {
		app := fmt.Sprintf("app-%d", i)
		if match[i] {
			app = "web"
		}
		pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("preset-%05d", i), Namespace: "bench", Generation: 1}}
		pp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": app, "tier": "frontend"}}
		for j := range 4 {
			pp.Spec.Env = append(pp.Spec.Env, v1alpha1.EnvVar{Name: fmt.Sprintf("P%d_VAR_%d", i, j), Value: "v"})
		}
		cm := fmt.Sprintf("preset-%d-config", i)
		pp.Spec.EnvFrom = []v1alpha1.EnvFromSource{{EnvFromSource: cmEnvFrom(cm, "")}}
		pp.Spec.Volumes = []v1alpha1.Volume{{Volume: cmVolume(cm, cm)}}
		pp.Spec.VolumeMounts = []corev1.VolumeMount{{Name: cm, MountPath: "/etc/" + cm}}
		p, err := CompilePodPreset(pp)
		if err != nil {
			panic(err)
		}
		out = append(out, p)
	}
	return out
}

var benchSizes = []int{10, 1000, 10000}

// BenchmarkApply is the whole per-request path, from a decoded pod to the
// mutated pod: copy, match, merge, annotate.
func BenchmarkApply(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("presets=%d", n), func(b *testing.B) {
			set := NewSet(benchPresets(n)...)
			pod := benchPod()
			ns := Namespace{Name: "bench"}
			if res := Apply(pod, ns, set); len(res.Applied) != 5 || len(res.Conflicts) != 0 {
				b.Fatalf("applied %d presets with %d conflicts, want 5 and 0", len(res.Applied), len(res.Conflicts))
			}
			b.ReportAllocs()
			for b.Loop() {
				Apply(pod, ns, set)
			}
		})
	}
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
		if _, err := CompilePodPreset(pp); err != nil {
			b.Fatal(err)
		}
	}
}
