package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodPresetSpec says which pods a preset selects and what it injects into them.
// The pod's own spec always wins a conflict; every lost value is reported.
// +kubebuilder:validation:XValidation:rule="(has(self.env) && size(self.env) > 0) || (has(self.envFrom) && size(self.envFrom) > 0) || (has(self.volumes) && size(self.volumes) > 0) || (has(self.volumeMounts) && size(self.volumeMounts) > 0) || (has(self.initContainers) && size(self.initContainers) > 0) || (has(self.imagePullSecrets) && size(self.imagePullSecrets) > 0) || (has(self.annotations) && size(self.annotations) > 0)",message="spec must inject something: set at least one of env, envFrom, volumes, volumeMounts, initContainers, imagePullSecrets or annotations"
type PodPresetSpec struct {
	// selector is a label query over the pods this preset applies to, in the
	// preset's own namespace (for a ClusterPodPreset, in every namespace that
	// namespaceSelector selects). An empty selector selects every pod.
	// +optional
	Selector metav1.LabelSelector `json:"selector,omitempty"`

	// containers names the containers and init containers that receive env,
	// envFrom and volumeMounts. Empty means every container and init container
	// of the pod, including init containers injected by presets. A name that
	// the pod does not have is ignored.
	// +optional
	// +listType=set
	Containers []string `json:"containers,omitempty"`

	// env lists environment variables to add to each target container. An
	// entry is added when the container has no variable of that name; injected
	// variables go before the container's own, so that $(VAR) references in
	// the pod can use them.
	// +optional
	// +listType=map
	// +listMapKey=name
	Env []EnvVar `json:"env,omitempty"`

	// envFrom lists ConfigMaps and Secrets whose keys become environment
	// variables of each target container. An entry is added when the container
	// has no entry with the same ConfigMap name, Secret name and prefix.
	// Injected entries go before the container's own: Kubernetes lets later
	// entries win, so the pod's own stay stronger.
	// +optional
	// +listType=atomic
	EnvFrom []EnvFromSource `json:"envFrom,omitempty"`

	// volumes lists pod volumes to add. A volume is added when the pod has no
	// volume of that name.
	// +optional
	// +listType=map
	// +listMapKey=name
	Volumes []Volume `json:"volumes,omitempty"`

	// volumeMounts lists mounts to add to each target container. A mount is
	// added when the container has no mount at that mountPath; one volume may
	// be mounted at several paths.
	// +optional
	// +listType=map
	// +listMapKey=mountPath
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`

	// initContainers lists init containers to add when the pod has no init
	// container of that name. They run before the pod's own init containers,
	// in preset order, and themselves receive env, envFrom and volumeMounts
	// like any other target container.
	// +optional
	// +listType=map
	// +listMapKey=name
	InitContainers []corev1.Container `json:"initContainers,omitempty"`

	// imagePullSecrets lists Secrets to add to the pod's imagePullSecrets when
	// the pod does not already name them.
	// +optional
	// +listType=atomic
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// annotations are added to the pod's metadata when the pod does not
	// already have the key.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// EnvVar is an environment variable to inject: a core EnvVar whose valueFrom
// can grow sources that Kubernetes does not know.
type EnvVar struct {
	// name of the environment variable. It must be a C_IDENTIFIER-like name
	// that Kubernetes accepts for env.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`

	// value of the variable. $(VAR_NAME) references to variables defined
	// earlier in the container are expanded by Kubernetes, as for a pod's
	// own env.
	// +optional
	Value string `json:"value,omitempty"`

	// valueFrom is the source of the variable's value. It cannot be used if
	// value is not empty.
	// +optional
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

// EnvVarSource is the source of an env var's value: every source of a core
// EnvVarSource (fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef,
// fileKeyRef).
type EnvVarSource struct {
	corev1.EnvVarSource `json:",inline"`
}

// EnvFromSource is a set of environment variables to inject: every source of a
// core EnvFromSource (configMapRef, secretRef, with an optional prefix).
type EnvFromSource struct {
	corev1.EnvFromSource `json:",inline"`
}

// Volume is a pod volume to inject: a name and any core volume source.
type Volume struct {
	corev1.Volume `json:",inline"`
}

// PodPresetStatus is what the controllers observed of a preset.
type PodPresetStatus struct {
	// observedGeneration is the generation of the spec the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions describe the preset's state.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// PodPreset injects env vars, envFrom sources, volumes, volume mounts, init
// containers, image pull secrets and annotations into the pods of its
// namespace that its selector matches, when they are created.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pp,categories=podpreset
// +kubebuilder:printcolumn:name="Selector",type=string,JSONPath=`.spec.selector.matchLabels`,description="Labels the pods must have"
// +kubebuilder:printcolumn:name="Containers",type=string,JSONPath=`.spec.containers`,priority=1,description="Target containers (all when empty)"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PodPreset struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the object's metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which pods the preset selects and what it injects.
	Spec PodPresetSpec `json:"spec"`

	// status is what the controllers observed.
	// +optional
	Status PodPresetStatus `json:"status,omitempty"`
}

// PodPresetList is a list of PodPresets.
// +kubebuilder:object:root=true
type PodPresetList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the list's metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the PodPresets.
	Items []PodPreset `json:"items"`
}

// ClusterPodPresetSpec is a PodPresetSpec that also selects namespaces.
type ClusterPodPresetSpec struct {
	// namespaceSelector is a label query over the namespaces whose pods this
	// preset applies to. An empty selector selects every namespace (except
	// kube-system and namespaces the webhook ignores).
	// +optional
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	PodPresetSpec `json:",inline"`
}

// ClusterPodPreset is a PodPreset for pods in every namespace its
// namespaceSelector matches. Where a PodPreset and a ClusterPodPreset both set
// the same value, the PodPreset (the more specific) wins.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cpp,categories=podpreset
// +kubebuilder:printcolumn:name="Namespaces",type=string,JSONPath=`.spec.namespaceSelector.matchLabels`,description="Labels the namespaces must have"
// +kubebuilder:printcolumn:name="Selector",type=string,JSONPath=`.spec.selector.matchLabels`,description="Labels the pods must have"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterPodPreset struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the object's metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which namespaces and pods the preset selects and what it
	// injects.
	Spec ClusterPodPresetSpec `json:"spec"`

	// status is what the controllers observed.
	// +optional
	Status PodPresetStatus `json:"status,omitempty"`
}

// ClusterPodPresetList is a list of ClusterPodPresets.
// +kubebuilder:object:root=true
type ClusterPodPresetList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the list's metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the ClusterPodPresets.
	Items []ClusterPodPreset `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PodPreset{}, &PodPresetList{}, &ClusterPodPreset{}, &ClusterPodPresetList{})
}
