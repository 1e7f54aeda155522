package presets

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations and labels podpreset reads or writes.
const (
	// AnnotationExclude set to "true" on a pod opts it out.
	AnnotationExclude = "podpreset.dev/exclude"
	// AnnotationExcludeLegacy is the in-tree PodPreset's opt-out key, honoured too.
	AnnotationExcludeLegacy = "podpreset.admission.kubernetes.io/exclude"
	// AnnotationApplied lists the presets applied to a pod, in application
	// order, as Kind/name@generation, comma separated.
	AnnotationApplied = "podpreset.dev/applied"
	// AnnotationSourcesHash is written on pods that received values
	// materialised from Consul or Vault: a hash of the versions of those
	// values (Consul ModifyIndex, Vault version, certificate serial), never
	// of the values.
	AnnotationSourcesHash = "podpreset.dev/sources-hash"
	// LabelIgnore set to "true" on a namespace keeps its pods out.
	LabelIgnore = "podpreset.dev/ignore"
	// SystemNamespace is always left alone.
	SystemNamespace = metav1.NamespaceSystem
)

// SkipReason says why a pod is left alone; empty means it is not.
type SkipReason string

// Reasons to leave a pod alone.
const (
	SkipMirrorPod        SkipReason = "mirror pod"
	SkipExcluded         SkipReason = "pod annotated " + AnnotationExclude + "=true"
	SkipExcludedLegacy   SkipReason = "pod annotated " + AnnotationExcludeLegacy + "=true"
	SkipSystemNamespace  SkipReason = "namespace " + SystemNamespace + " is always left alone"
	SkipIgnoredNamespace SkipReason = "namespace labelled " + LabelIgnore + "=true"
)

// Skip says whether a pod must be left alone whatever presets match it:
// mirror pods (the API server's copies of static pods, which cannot be
// changed) and pods that opted out.
func Skip(pod *corev1.Pod) SkipReason {
	a := pod.Annotations
	switch {
	case a[corev1.MirrorPodAnnotationKey] != "":
		return SkipMirrorPod
	case a[AnnotationExclude] == "true":
		return SkipExcluded
	case a[AnnotationExcludeLegacy] == "true":
		return SkipExcludedLegacy
	}
	return ""
}

// SkipNamespace says whether every pod of a namespace must be left alone:
// kube-system, and namespaces labelled podpreset.dev/ignore=true. The webhook
// also leaves its own namespace alone; only it knows which that is.
func SkipNamespace(ns Namespace) SkipReason {
	switch {
	case ns.Name == SystemNamespace:
		return SkipSystemNamespace
	case ns.Labels[LabelIgnore] == "true":
		return SkipIgnoredNamespace
	}
	return ""
}
