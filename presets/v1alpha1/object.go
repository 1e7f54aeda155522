package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Object is a PodPreset or a ClusterPodPreset: what every caller that
// handles both (the webhook, the controllers, the CLI) needs of either.
// +kubebuilder:object:generate=false
type Object interface {
	metav1.Object
	runtime.Object
	// PresetKind is KindPodPreset or KindClusterPodPreset (TypeMeta may be
	// empty on a typed object).
	PresetKind() string
	// PresetSpec is what the preset injects.
	PresetSpec() *PodPresetSpec
	// PresetStatus is the preset's status.
	PresetStatus() *PodPresetStatus
	// PresetNamespaceSelector is a ClusterPodPreset's namespace selector;
	// nil for a PodPreset.
	PresetNamespaceSelector() *metav1.LabelSelector
}

var (
	_ Object = (*PodPreset)(nil)
	_ Object = (*ClusterPodPreset)(nil)
)

// PresetKind is KindPodPreset.
func (*PodPreset) PresetKind() string { return KindPodPreset }

// PresetSpec is the spec.
func (p *PodPreset) PresetSpec() *PodPresetSpec { return &p.Spec }

// PresetStatus is the status.
func (p *PodPreset) PresetStatus() *PodPresetStatus { return &p.Status }

// PresetNamespaceSelector is nil: a PodPreset serves its own namespace.
func (*PodPreset) PresetNamespaceSelector() *metav1.LabelSelector { return nil }

// PresetKind is KindClusterPodPreset.
func (*ClusterPodPreset) PresetKind() string { return KindClusterPodPreset }

// PresetSpec is the spec without the namespace selector.
func (p *ClusterPodPreset) PresetSpec() *PodPresetSpec { return &p.Spec.PodPresetSpec }

// PresetStatus is the status.
func (p *ClusterPodPreset) PresetStatus() *PodPresetStatus { return &p.Status }

// PresetNamespaceSelector is spec.namespaceSelector.
func (p *ClusterPodPreset) PresetNamespaceSelector() *metav1.LabelSelector {
	return &p.Spec.NamespaceSelector
}
