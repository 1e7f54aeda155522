// Package v1alpha1 is the podpreset.dev/v1alpha1 API: PodPreset (namespaced) and
// ClusterPodPreset (cluster-scoped).
//
// The spec is a superset of the removed settings.k8s.io/v1alpha1 PodPreset spec
// (selector, env, envFrom, volumes, volumeMounts), so an old manifest works after
// changing only its apiVersion (`kubectl podpreset migrate` does that).
//
// EnvVar, EnvVarSource, EnvFromSource and Volume are our own types that inline the
// core ones rather than the core types themselves. Every core field is there with
// its usual JSON name, next to the value sources that Kubernetes does not know:
// consulKV, vault and vaultPKI. The sources controller materialises those into
// ConfigMaps and Secrets, and the webhook rewrites them into the native
// references (package presets, SourcePlan).
//
// Uniqueness of env names, volume names, mount paths and init container names is
// declared with +listType=map: the API server rejects a duplicate with a
// "Duplicate value" error at the exact index (spec.env[2]), costs no CEL budget,
// and server-side apply merges those lists by key. CEL rules cover what a list
// type cannot say (a preset that injects nothing).
//
// +kubebuilder:object:generate=true
// +groupName=podpreset.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "podpreset.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this API with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this API to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers every kind of the API and its list.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&PodPreset{}, &PodPresetList{}, &ClusterPodPreset{}, &ClusterPodPresetList{},
		&PodPresetPolicy{}, &PodPresetPolicyList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// Kind names, as they appear in the podpreset.dev/applied annotation.
const (
	KindPodPreset        = "PodPreset"
	KindClusterPodPreset = "ClusterPodPreset"
)
