package presets

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Content is what a compiled preset selects and injects, for compilers of
// presets into other forms (presets/admissionpolicy). Its slices are the
// preset's own: read-only.
type Content struct {
	// Selector selects pods by label; NamespaceSelector (a
	// ClusterPodPreset's; nil for a PodPreset) selects their namespaces.
	Selector, NamespaceSelector labels.Selector
	// Containers lists the containers the preset targets; nil: every one.
	Containers       []string
	Env              []corev1.EnvVar
	EnvFrom          []corev1.EnvFromSource
	Volumes          []corev1.Volume
	VolumeMounts     []corev1.VolumeMount
	InitContainers   []corev1.Container
	ImagePullSecrets []corev1.LocalObjectReference
	// Annotations are the annotations the preset adds, sorted by key.
	Annotations [][2]string
	// Sourced says whether the preset takes values from Consul or Vault
	// (materialised into objects the webhook checks at admission).
	Sourced bool
	// Foreign says whether the preset's status names objects under its
	// materialised names that are someone else's.
	Foreign bool
}

// Content returns what the preset selects and injects.
func (p *Preset) Content() Content {
	c := Content{
		Selector: p.selector.labels(), NamespaceSelector: p.nsSelector, Containers: p.containers,
		Env: p.env, EnvFrom: p.envFrom, Volumes: p.volumes, VolumeMounts: p.mounts,
		InitContainers: p.inits, ImagePullSecrets: p.pullSecrets,
		Sourced: p.sourced, Foreign: len(p.foreign) > 0,
	}
	for _, a := range p.annotations {
		c.Annotations = append(c.Annotations, [2]string{a.key, a.value})
	}
	return c
}
