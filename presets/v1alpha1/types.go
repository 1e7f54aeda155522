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

	// rollout says whether podpreset restarts the workloads whose pods do
	// not have this preset's current version (stale) or never got it
	// (missed). It is not part of what the preset injects: changing it
	// makes no pod stale.
	// +optional
	Rollout *Rollout `json:"rollout,omitempty"`
}

// RolloutPolicy says when podpreset restarts workloads.
// +kubebuilder:validation:Enum=Never;OnChange
type RolloutPolicy string

// Rollout policies.
const (
	// RolloutNever reports stale and missed pods and touches nothing.
	RolloutNever RolloutPolicy = "Never"
	// RolloutOnChange restarts the Deployments, StatefulSets and
	// DaemonSets whose pods are stale or missed, as `kubectl rollout
	// restart` does, one at a time per preset; never bare pods or Jobs.
	RolloutOnChange RolloutPolicy = "OnChange"
)

// Rollout is how a preset's changes reach running workloads.
type Rollout struct {
	// policy is Never (the default) or OnChange.
	// +optional
	Policy RolloutPolicy `json:"policy,omitempty"`

	// minInterval is the least time between two restarts for this preset
	// (30s when empty); a cluster-wide limit applies too
	// (podpreset-webhook --rollout-interval).
	// +optional
	MinInterval *metav1.Duration `json:"minInterval,omitempty"`
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
// fileKeyRef), or a Consul key or a Vault secret field. Exactly one must be
// set.
type EnvVarSource struct {
	corev1.EnvVarSource `json:",inline"`

	// consulKV reads the variable from one Consul KV key. The sources
	// controller copies the key into the ConfigMap podpreset-<preset>, and
	// the pod gets a configMapKeyRef to it: the value is never in the pod
	// spec.
	// +optional
	ConsulKV *ConsulKeySelector `json:"consulKV,omitempty"`

	// vault reads the variable from one field of a Vault KV secret. The
	// sources controller copies it into the Secret podpreset-<preset>, and
	// the pod gets a secretKeyRef to it.
	// +optional
	Vault *VaultKeySelector `json:"vault,omitempty"`
}

// ConsulKeySelector names one Consul KV key.
type ConsulKeySelector struct {
	// key is the full Consul KV key, such as apps/shop/db/host: no leading
	// or trailing /, no empty, . or .. segment, no %, ?, # or \ (the
	// validating webhook refuses such a key, and the sources controller
	// never reads it).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Key string `json:"key"`

	// optional lets the pod start when the key does not exist; the
	// variable is then unset.
	// +optional
	Optional *bool `json:"optional,omitempty"`

	// secret materialises the value into the Secret podpreset-<preset>
	// (the pod gets a secretKeyRef) instead of the ConfigMap of that name:
	// for values that the built-in view role must not read.
	// +optional
	Secret *bool `json:"secret,omitempty"`
}

// VaultKeySelector names one field of a Vault KV secret.
type VaultKeySelector struct {
	// path is the secret's API path: secret/data/shop/db for KV version 2
	// (secret/shop/db is read the same way), kv/shop/db for version 1.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Path string `json:"path"`

	// field is the field of the secret to read.
	// +kubebuilder:validation:MinLength=1
	Field string `json:"field"`

	// optional lets the pod start when the secret or the field does not
	// exist; the variable is then unset.
	// +optional
	Optional *bool `json:"optional,omitempty"`
}

// EnvFromSource is a set of environment variables to inject: every source of a
// core EnvFromSource (configMapRef, secretRef, with an optional prefix), or
// every key under a Consul prefix, or every field of a Vault secret. Exactly
// one of configMapRef, secretRef, consulKV and vault must be set.
type EnvFromSource struct {
	corev1.EnvFromSource `json:",inline"`

	// consulKV makes every key under a Consul prefix an environment
	// variable. The variable's name is the key without the prefix, with
	// every character that is not a letter, a digit or _ replaced by _
	// (so db/max-conns becomes db_max_conns); keys ending in / are folders
	// and skipped. The keys are copied into a ConfigMap of their own,
	// podpreset-<preset>-env-<hash>, which the pod loads with configMapRef.
	// +optional
	ConsulKV *ConsulPrefixSource `json:"consulKV,omitempty"`

	// vault makes every field of a Vault KV secret an environment
	// variable, named as for consulKV. The fields are copied into a Secret
	// of their own, podpreset-<preset>-env-<hash>, which the pod loads with
	// secretRef.
	// +optional
	Vault *VaultSecretSource `json:"vault,omitempty"`
}

// ConsulPrefixSource names every key under a Consul KV prefix.
type ConsulPrefixSource struct {
	// prefix is the key prefix, such as apps/shop/. Write the trailing /
	// to mean a folder: apps/shop also matches apps/shopping/x. No leading
	// /, no empty, . or .. segment, no %, ? or #.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Prefix string `json:"prefix"`

	// optional lets the pod start before the values are materialised.
	// +optional
	Optional *bool `json:"optional,omitempty"`

	// secret materialises the keys into a Secret (the pod gets secretRef,
	// or a secret volume) instead of a ConfigMap: for values that the
	// built-in view role must not read.
	// +optional
	Secret *bool `json:"secret,omitempty"`
}

// VaultSecretSource names a whole Vault KV secret.
type VaultSecretSource struct {
	// path is the secret's API path, as in VaultKeySelector.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Path string `json:"path"`

	// optional lets the pod start before the values are materialised.
	// +optional
	Optional *bool `json:"optional,omitempty"`
}

// Volume is a pod volume to inject: a name and any core volume source, or
// files from Consul or Vault, or a certificate that Vault PKI issues.
// Exactly one source must be set.
type Volume struct {
	corev1.Volume `json:",inline"`

	// consulKV makes every key under a Consul prefix a file. The file's
	// name is the key without the prefix, with / replaced by _ (Kubernetes
	// ConfigMap keys are flat); a key that is still not a valid file name
	// ([-._a-zA-Z0-9]+) is reported in the preset's status and left out.
	// The files live in the ConfigMap podpreset-<preset>-vol-<volume>.
	// +optional
	ConsulKV *ConsulPrefixSource `json:"consulKV,omitempty"`

	// vault makes every field of a Vault KV secret a file named after the
	// field, from the Secret podpreset-<preset>-vol-<volume>.
	// +optional
	Vault *VaultSecretSource `json:"vault,omitempty"`

	// vaultPKI mounts a certificate that Vault PKI issues: tls.crt,
	// tls.key and ca.crt, from the Secret podpreset-<preset>-vol-<volume>.
	// It is renewed when two thirds of its lifetime have passed; pods see
	// the new files without a restart (the kubelet updates Secret volumes),
	// unless they mount them with subPath.
	// +optional
	VaultPKI *VaultPKISource `json:"vaultPKI,omitempty"`
}

// VaultPKISource asks a Vault PKI secrets engine for a certificate.
type VaultPKISource struct {
	// mount is the PKI secrets engine's path, such as pki.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Mount string `json:"mount"`

	// role is the PKI role that issues the certificate
	// (<mount>/issue/<role>).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Role string `json:"role"`

	// commonName is the certificate's common name.
	// +kubebuilder:validation:MinLength=1
	CommonName string `json:"commonName"`

	// altNames are more DNS names (and IP addresses) for the certificate.
	// +optional
	// +listType=set
	AltNames []string `json:"altNames,omitempty"`

	// ttl is the certificate's requested lifetime; the role's default
	// when empty. Vault may cap it at the role's max_ttl.
	// +optional
	TTL *metav1.Duration `json:"ttl,omitempty"`
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

	// sources reports each Consul key or prefix and each Vault path the
	// preset reads: the version last materialised, when, and the last
	// error. The SourcesReady condition sums them up.
	// +optional
	// +listType=map
	// +listMapKey=source
	Sources []SourceStatus `json:"sources,omitempty"`

	// foreignObjects are ConfigMaps and Secrets that this preset's sources
	// need, under the names podpreset gives them, that exist without being
	// this preset's: the sources controller never writes them, and the
	// webhook leaves out every entry that would refer to them (with a
	// warning), so that pods never read an object someone else planted.
	// +optional
	// +listType=atomic
	ForeignObjects []ObjectReference `json:"foreignObjects,omitempty"`

	// contentGeneration is the generation at which what the preset injects
	// last changed (a change of spec.rollout alone leaves it): a pod that
	// got this generation or a later one has the current version.
	// +optional
	ContentGeneration int64 `json:"contentGeneration,omitempty"`

	// contentHash identifies what the preset injects at contentGeneration.
	// +optional
	ContentHash string `json:"contentHash,omitempty"`

	// pods counts the pods the preset selects now, by what they got.
	// +optional
	Pods *PodCounts `json:"pods,omitempty"`
}

// PodCounts counts a preset's pods by state.
type PodCounts struct {
	// applied pods have the preset's current version (and, for a preset
	// with Consul or Vault sources, the current values' versions).
	Applied int32 `json:"applied"`
	// stale pods have an older version of the preset, or older values.
	Stale int32 `json:"stale"`
	// missed pods were created after the preset but did not get it (the
	// webhook was down, or its cache did not hold the preset yet).
	Missed int32 `json:"missed"`
	// predating pods were created before the preset existed: neither
	// stale nor missed.
	Predating int32 `json:"predating"`
}

// ObjectReference names a ConfigMap or a Secret in a namespace.
type ObjectReference struct {
	// kind is ConfigMap or Secret.
	Kind string `json:"kind"`
	// namespace is the object's namespace.
	Namespace string `json:"namespace"`
	// name is the object's name.
	Name string `json:"name"`
}

// SourceStatus is the state of one source of a preset.
type SourceStatus struct {
	// source names it: consul:<key>, consul-prefix:<prefix>,
	// vault:<path> or vault-pki:<mount>/issue/<role>.
	Source string `json:"source"`

	// version is the version of the values last materialised: the Consul
	// ModifyIndex, the Vault KV v2 version, a keyed hash of a KV v1
	// secret's data, or the certificate's serial number. Never a value.
	// +optional
	Version string `json:"version,omitempty"`

	// lastSyncTime is when the values were last read and materialised.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`

	// lastError is the error of the last attempt, if it failed; the
	// materialised values are then the last good ones.
	// +optional
	LastError string `json:"lastError,omitempty"`

	// lastErrorTime is since when the source has been failing.
	// +optional
	LastErrorTime *metav1.Time `json:"lastErrorTime,omitempty"`
}

// Condition types of a preset's status.
const (
	// ConditionSourcesReady says whether every source of a preset is
	// materialised and up to date (the sources controller writes it).
	ConditionSourcesReady = "SourcesReady"
	// ConditionAccepted says whether the webhook applies the preset: False
	// when it is invalid, reads a Consul key or Vault path its namespace may
	// not read, or breaks a PodPresetPolicy (the webhook's leader writes it).
	ConditionAccepted = "Accepted"
	// ConditionReady says the preset is accepted and its pods have its
	// current version: none stale, none missed.
	ConditionReady = "Ready"
	// ConditionPodsStale says some pods have an older version.
	ConditionPodsStale = "PodsStale"
	// ConditionPodsMissed says some pods never got the preset.
	ConditionPodsMissed = "PodsMissed"
)

// Reasons of the Accepted condition.
const (
	ReasonAccepted        = "Accepted"
	ReasonInvalid         = "Invalid"
	ReasonPolicyViolation = "PolicyViolation"
)

// PodPreset injects env vars, envFrom sources, volumes, volume mounts, init
// containers, image pull secrets and annotations into the pods of its
// namespace that its selector matches, when they are created.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pp,categories=podpreset
// +kubebuilder:printcolumn:name="Selector",type=string,JSONPath=`.spec.selector.matchLabels`,description="Labels the pods must have"
// +kubebuilder:printcolumn:name="Containers",type=string,JSONPath=`.spec.containers`,priority=1,description="Target containers (all when empty)"
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].reason`,description="Whether the webhook applies the preset: Accepted, Invalid or PolicyViolation"
// +kubebuilder:printcolumn:name="Sources",type=string,JSONPath=`.status.conditions[?(@.type=="SourcesReady")].reason`,description="Consul and Vault sources: Materialised, SourceError or Pending"
// +kubebuilder:printcolumn:name="Applied",type=integer,JSONPath=`.status.pods.applied`,description="Pods with the current version"
// +kubebuilder:printcolumn:name="Stale",type=integer,JSONPath=`.status.pods.stale`,description="Pods with an older version"
// +kubebuilder:printcolumn:name="Missed",type=integer,JSONPath=`.status.pods.missed`,description="Pods created after the preset that did not get it"
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
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].reason`,description="Whether the webhook applies the preset: Accepted, Invalid or PolicyViolation"
// +kubebuilder:printcolumn:name="Sources",type=string,JSONPath=`.status.conditions[?(@.type=="SourcesReady")].reason`,description="Consul and Vault sources: Materialised, SourceError or Pending"
// +kubebuilder:printcolumn:name="Applied",type=integer,JSONPath=`.status.pods.applied`,description="Pods with the current version"
// +kubebuilder:printcolumn:name="Stale",type=integer,JSONPath=`.status.pods.stale`,description="Pods with an older version"
// +kubebuilder:printcolumn:name="Missed",type=integer,JSONPath=`.status.pods.missed`,description="Pods created after the preset that did not get it"
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
