package presets

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Fixture builders. Each option works on the object being built, never on
// an argument, so shared values cannot leak between cases.

type podOpt func(*corev1.Pod)

// testPod is a pod in namespace "default" labelled app=web with one
// container "app".
func testPod(opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func withLabels(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func withAnnotation(k, v string) podOpt {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[k] = v
	}
}

func withApplied(v string) podOpt { return withAnnotation(AnnotationApplied, v) }

func withContainer(name string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name, Image: "busybox"})
	}
}

func withInitContainer(c corev1.Container) podOpt {
	return func(p *corev1.Pod) { p.Spec.InitContainers = append(p.Spec.InitContainers, *c.DeepCopy()) }
}

// container finds a container or init container by name.
func container(p *corev1.Pod, name string) *corev1.Container {
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == name {
			return &p.Spec.InitContainers[i]
		}
	}
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == name {
			return &p.Spec.Containers[i]
		}
	}
	panic("no container " + name)
}

func withEnv(c string, env ...corev1.EnvVar) podOpt {
	return func(p *corev1.Pod) { container(p, c).Env = append(container(p, c).Env, env...) }
}

func withEnvFrom(c string, e ...corev1.EnvFromSource) podOpt {
	return func(p *corev1.Pod) { container(p, c).EnvFrom = append(container(p, c).EnvFrom, e...) }
}

func withMount(c string, m ...corev1.VolumeMount) podOpt {
	return func(p *corev1.Pod) { container(p, c).VolumeMounts = append(container(p, c).VolumeMounts, m...) }
}

func withVolume(v ...corev1.Volume) podOpt {
	return func(p *corev1.Pod) { p.Spec.Volumes = append(p.Spec.Volumes, v...) }
}

func withPullSecret(names ...string) podOpt {
	return func(p *corev1.Pod) {
		for _, n := range names {
			p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
	}
}

func env(name, value string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: value} }

func cmEnvFrom(name, prefix string) corev1.EnvFromSource {
	return corev1.EnvFromSource{Prefix: prefix, ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}
}

func mount(volume, path string) corev1.VolumeMount {
	return corev1.VolumeMount{Name: volume, MountPath: path}
}

func emptyDir(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

func cmVolume(name, configMap string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: configMap}}}}
}

func initC(name string, opts ...func(*corev1.Container)) corev1.Container {
	c := corev1.Container{Name: name, Image: "busybox", Command: []string{"sh", "-c", "true"}}
	for _, o := range opts {
		o(&c)
	}
	return c
}

type specOpt func(*v1alpha1.PodPresetSpec)

func selecting(kv ...string) specOpt {
	return func(s *v1alpha1.PodPresetSpec) {
		s.Selector = metav1.LabelSelector{MatchLabels: map[string]string{}}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Selector.MatchLabels[kv[i]] = kv[i+1]
		}
	}
}

func injectEnv(env ...corev1.EnvVar) specOpt {
	return func(s *v1alpha1.PodPresetSpec) {
		for _, e := range env {
			v := v1alpha1.EnvVar{Name: e.Name, Value: e.Value}
			if e.ValueFrom != nil {
				v.ValueFrom = &v1alpha1.EnvVarSource{EnvVarSource: *e.ValueFrom.DeepCopy()}
			}
			s.Env = append(s.Env, v)
		}
	}
}

func injectEnvFrom(e ...corev1.EnvFromSource) specOpt {
	return func(s *v1alpha1.PodPresetSpec) {
		for _, x := range e {
			s.EnvFrom = append(s.EnvFrom, v1alpha1.EnvFromSource{EnvFromSource: *x.DeepCopy()})
		}
	}
}

func injectVolume(v ...corev1.Volume) specOpt {
	return func(s *v1alpha1.PodPresetSpec) {
		for _, x := range v {
			s.Volumes = append(s.Volumes, v1alpha1.Volume{Volume: *x.DeepCopy()})
		}
	}
}

func injectMount(m ...corev1.VolumeMount) specOpt {
	return func(s *v1alpha1.PodPresetSpec) { s.VolumeMounts = append(s.VolumeMounts, m...) }
}

func injectInit(c ...corev1.Container) specOpt {
	return func(s *v1alpha1.PodPresetSpec) {
		for _, x := range c {
			s.InitContainers = append(s.InitContainers, *x.DeepCopy())
		}
	}
}

func injectPullSecret(names ...string) specOpt {
	return func(s *v1alpha1.PodPresetSpec) {
		for _, n := range names {
			s.ImagePullSecrets = append(s.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
	}
}

func injectAnnotation(k, v string) specOpt {
	return func(s *v1alpha1.PodPresetSpec) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func targeting(names ...string) specOpt {
	return func(s *v1alpha1.PodPresetSpec) { s.Containers = append(s.Containers, names...) }
}

// testPP is a PodPreset in namespace "default" at generation 1 selecting
// app=web unless an option says otherwise.
func testPP(name string, opts ...specOpt) *v1alpha1.PodPreset {
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Generation: 1}}
	selecting("app", "web")(&pp.Spec)
	for _, o := range opts {
		o(&pp.Spec)
	}
	return pp
}

func inNamespace(ns string, pp *v1alpha1.PodPreset) *v1alpha1.PodPreset {
	pp.Namespace = ns
	return pp
}

// testCPP is a ClusterPodPreset at generation 1 selecting app=web in every
// namespace labelled with nsLabels.
func testCPP(name string, nsLabels map[string]string, opts ...specOpt) *v1alpha1.ClusterPodPreset {
	cpp := &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1}}
	cpp.Spec.NamespaceSelector = metav1.LabelSelector{MatchLabels: nsLabels}
	selecting("app", "web")(&cpp.Spec.PodPresetSpec)
	for _, o := range opts {
		o(&cpp.Spec.PodPresetSpec)
	}
	return cpp
}

// mustSet compiles PodPresets and ClusterPodPresets into a Set.
func mustSet(t interface{ Fatalf(string, ...any) }, objs ...any) *Set {
	var ps []*Preset
	for _, o := range objs {
		var p *Preset
		var err error
		switch o := o.(type) {
		case *v1alpha1.PodPreset:
			p, err = compileObject(o)
		case *v1alpha1.ClusterPodPreset:
			p, err = compileObject(o)
		default:
			t.Fatalf("mustSet: unexpected %T", o)
		}
		if err != nil {
			t.Fatalf("compiling: %v", err)
		}
		ps = append(ps, p)
	}
	return NewSet(ps...)
}

// compileObject compiles a preset without validating it or running any
// check: what Load does once validation passes, for tests that feed the
// engine presets Load would refuse (the fuzzer's, for one).
func compileObject(o v1alpha1.Object) (*Preset, error) {
	ref := Ref{Kind: o.PresetKind(), Namespace: o.GetNamespace(), Name: o.GetName(), Generation: o.GetGeneration()}
	return compile(ref, o.PresetSpec(), o.PresetNamespaceSelector(), o.PresetStatus())
}
