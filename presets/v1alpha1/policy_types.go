package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KindPodPresetPolicy is the kind of the preset policy.
const KindPodPresetPolicy = "PodPresetPolicy"

// PodPresetPolicySpec bounds what the PodPresets of the namespaces it
// selects may inject. Every field has a safe default: a policy written as
// `spec: {}` is the policy that holds when there is none.
type PodPresetPolicySpec struct {
	// namespaceSelector selects the namespaces whose PodPresets this policy
	// governs. Empty selects every namespace. A preset must satisfy every
	// policy that governs it; a namespace that no policy selects is governed
	// by the defaults (those of an empty spec).
	// +optional
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// clusterPodPresets makes the policy govern ClusterPodPresets too (all
	// of them, whatever their namespaceSelector). ClusterPodPresets are
	// written by cluster admins, so by default no policy governs them.
	// +optional
	ClusterPodPresets bool `json:"clusterPodPresets,omitempty"`

	// volumes says which volume sources presets may inject.
	// +optional
	Volumes VolumePolicy `json:"volumes,omitempty"`

	// initContainers says what init containers presets may inject.
	// +optional
	InitContainers InitContainerPolicy `json:"initContainers,omitempty"`

	// env says which environment variable names presets may inject (in env,
	// and in the env of injected init containers). envFrom entries bring
	// names the webhook cannot see (a ConfigMap's keys): see
	// docs/security.md.
	// +optional
	// +kubebuilder:default={}
	Env EnvPolicy `json:"env,omitempty"`

	// annotations says which pod annotation keys presets may inject.
	// +optional
	// +kubebuilder:default={}
	Annotations AnnotationPolicy `json:"annotations,omitempty"`
}

// VolumePolicy says which volume sources presets may inject.
type VolumePolicy struct {
	// allowHostPath lets presets inject hostPath volumes: a path on the
	// node, into pods that other people run.
	// +optional
	AllowHostPath bool `json:"allowHostPath,omitempty"`

	// allowServiceAccountTokens lets presets inject projected service
	// account tokens (projected.sources[].serviceAccountToken), which hand
	// the pod's identity to whoever the audience names.
	// +optional
	AllowServiceAccountTokens bool `json:"allowServiceAccountTokens,omitempty"`

	// allowedTypes, when set, lists the only volume sources presets may
	// inject, by their field name (emptyDir, configMap, secret, projected,
	// downwardAPI, csi, consulKV, vault, vaultPKI, ...). Empty allows every
	// source but hostPath and service account tokens, which need the flags
	// above.
	// +optional
	// +listType=set
	AllowedTypes []string `json:"allowedTypes,omitempty"`
}

// InitContainerPolicy says what init containers presets may inject.
type InitContainerPolicy struct {
	// allowedImages lists image prefixes (registry.example.com/platform/);
	// an injected init container's image must start with one of them. Empty
	// allows no init container at all; "*" allows every image.
	// +optional
	// +listType=set
	AllowedImages []string `json:"allowedImages,omitempty"`

	// allowPrivileged lets injected init containers run privileged, or with
	// allowPrivilegeEscalation: true.
	// +optional
	AllowPrivileged bool `json:"allowPrivileged,omitempty"`

	// allowedCapabilities lists the capabilities injected init containers
	// may add (securityContext.capabilities.add). Empty allows none.
	// +optional
	// +listType=set
	AllowedCapabilities []string `json:"allowedCapabilities,omitempty"`

	// allowHostPorts lets injected init containers declare a hostPort.
	// +optional
	AllowHostPorts bool `json:"allowHostPorts,omitempty"`
}

// EnvPolicy allows and denies environment variable names by pattern: a
// name in which * stands for any run of characters (LD_*, *_PROXY). A name
// is allowed when no denied pattern matches it and, if allowed is set, an
// allowed pattern does. Names are matched without regard to case
// (https_proxy is HTTPS_PROXY to most programs).
type EnvPolicy struct {
	// allowed, when set, lists the only names presets may inject.
	// +optional
	// +listType=set
	Allowed []string `json:"allowed,omitempty"`

	// denied lists names presets may never inject. Written out, it replaces
	// the default list; `denied: []` denies nothing.
	// +optional
	// +listType=set
	// +kubebuilder:default={"LD_PRELOAD","LD_LIBRARY_PATH","LD_AUDIT","*_PROXY"}
	Denied []string `json:"denied,omitempty"`
}

// AnnotationPolicy allows and denies pod annotation keys by pattern, as
// EnvPolicy does names, but matched exactly (with case).
type AnnotationPolicy struct {
	// allowed, when set, lists the only keys presets may inject.
	// +optional
	// +listType=set
	Allowed []string `json:"allowed,omitempty"`

	// denied lists keys presets may never inject: by default those that
	// steer Kubernetes, service meshes and secret injectors (a preset that
	// sets sidecar.istio.io/inject: "false" takes a pod out of the mesh).
	// Written out, it replaces the default list; `denied: []` denies
	// nothing.
	// +optional
	// +listType=set
	// +kubebuilder:default={"*kubernetes.io/*","*k8s.io/*","*istio.io/*","*linkerd.io/*","vault.hashicorp.com/*","*openshift.io/*"}
	Denied []string `json:"denied,omitempty"`
}

// PodPresetPolicy bounds what PodPresets may inject into the pods of the
// namespaces it selects: volume sources, init container images and
// securityContext, env var names and annotation keys. It is enforced when a
// preset is created or updated (the validating webhook refuses it, naming
// the field and the rule) and again when a pod is created (a preset that
// breaks it is skipped for that pod, with a warning). Cluster-scoped: only
// cluster admins write it.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ppp,categories=podpreset
// +kubebuilder:printcolumn:name="Namespaces",type=string,JSONPath=`.spec.namespaceSelector`,description="Namespaces whose PodPresets it governs (all when empty)"
// +kubebuilder:printcolumn:name="ClusterPodPresets",type=boolean,JSONPath=`.spec.clusterPodPresets`,description="Whether it governs ClusterPodPresets too"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PodPresetPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the object's metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the policy allows.
	// +optional
	Spec PodPresetPolicySpec `json:"spec,omitempty"`
}

// PodPresetPolicyList is a list of PodPresetPolicies.
// +kubebuilder:object:root=true
type PodPresetPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the list's metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the PodPresetPolicies.
	Items []PodPresetPolicy `json:"items"`
}
