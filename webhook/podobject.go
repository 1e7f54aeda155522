package webhook

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"

	"github.com/podpreset/podpreset/presets"
)

// PodObject is a pod as the pod mutator decodes it from a review, in the
// review's one pass: the metadata that matching reads, and the spec still
// encoded. A pod that no preset matches is never decoded further; one that
// a preset matches has its spec decoded once, and (unless a matching preset
// injects init containers, presets.WholeContainers) only the parts of its
// containers the merge reads, each list kept also as the JSON the API
// server sent (presets.OwnLists), so that the patch can replace a list in
// one operation and keep its entries' unknown fields.
type PodObject struct {
	Metadata podMetadata     `json:"metadata"`
	Spec     json.RawMessage `json:"spec"`
	// spec is the partly decoded spec, once decodeSpec has run.
	spec *mergeSpec
}

var _ presets.OwnLists = (*PodObject)(nil)

// Container returns the JSON of a container's list, once decodeSpec has
// decoded the spec partly; else nil.
func (o *PodObject) Container(init bool, i int, field string) []byte {
	if o.spec == nil {
		return nil
	}
	cs := o.spec.Containers
	if init {
		cs = o.spec.InitContainers
	}
	if i < 0 || i >= len(cs) {
		return nil
	}
	switch field {
	case "env":
		return cs[i].Env.raw
	case "envFrom":
		return cs[i].EnvFrom.raw
	case "volumeMounts":
		return cs[i].VolumeMounts.raw
	}
	return nil
}

// Volumes returns the JSON of spec.volumes, as Container does.
func (o *PodObject) Volumes() []byte {
	if o.spec == nil {
		return nil
	}
	return o.spec.Volumes.raw
}

// rawList is a JSON array decoded into items and kept as its JSON.
type rawList[T any] struct {
	items []T
	raw   []byte
}

// UnmarshalJSON decodes the array and keeps its bytes: a slice of the
// spec's JSON, which PodObject owns and nothing writes.
func (l *rawList[T]) UnmarshalJSON(b []byte) error {
	l.raw = b
	return sigsjson.UnmarshalCaseSensitivePreserveInts(b, &l.items)
}

type podMetadata struct {
	Name         string            `json:"name,omitempty"`
	GenerateName string            `json:"generateName,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// mergeSpec is what presets.MergePatch reads of a pod spec when no
// matching preset injects init containers.
type mergeSpec struct {
	InitContainers   []mergeContainer              `json:"initContainers,omitempty"`
	Containers       []mergeContainer              `json:"containers,omitempty"`
	Volumes          rawList[corev1.Volume]        `json:"volumes"`
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
}

type mergeContainer struct {
	Name         string                        `json:"name"`
	Env          rawList[corev1.EnvVar]        `json:"env"`
	EnvFrom      rawList[corev1.EnvFromSource] `json:"envFrom"`
	VolumeMounts rawList[corev1.VolumeMount]   `json:"volumeMounts"`
}

// meta returns a pod with the object's metadata and no spec, in namespace
// ns (the request's: a pod's own metadata.namespace may be empty).
func (o *PodObject) meta(ns string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: o.Metadata.Name, GenerateName: o.Metadata.GenerateName, Namespace: ns,
		Labels: o.Metadata.Labels, Annotations: o.Metadata.Annotations,
	}}
}

// decodeSpec decodes the spec into pod: whole, or only what the merge
// reads.
func (o *PodObject) decodeSpec(pod *corev1.Pod, whole bool) error {
	if len(o.Spec) == 0 {
		return nil
	}
	if whole {
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(o.Spec, &pod.Spec); err != nil {
			return fmt.Errorf("decoding the Pod's spec: %w", err)
		}
		return nil
	}
	s := &mergeSpec{}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(o.Spec, s); err != nil {
		return fmt.Errorf("decoding the Pod's spec: %w", err)
	}
	o.spec = s
	pod.Spec.InitContainers = containers(s.InitContainers)
	pod.Spec.Containers = containers(s.Containers)
	pod.Spec.Volumes, pod.Spec.ImagePullSecrets = s.Volumes.items, s.ImagePullSecrets
	return nil
}

func containers(cs []mergeContainer) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Env: c.Env.items, EnvFrom: c.EnvFrom.items, VolumeMounts: c.VolumeMounts.items}
	}
	return out
}

// podName names a pod for a log line: its name, or its generateName and *.
func (o *PodObject) podName() string {
	if o.Metadata.Name != "" {
		return o.Metadata.Name
	}
	return o.Metadata.GenerateName + "*"
}
