package webhook

import (
	"fmt"

	"github.com/go-json-experiment/json/jsontext"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	Metadata podMetadata    `json:"metadata"`
	Spec     jsontext.Value `json:"spec"`
	// own is where the spec's lists are in Spec, once decodeSpec has
	// decoded the spec partly.
	own *ownJSON
}

var _ presets.OwnLists = (*PodObject)(nil)

// Container returns the JSON of a container's list, once decodeSpec has
// decoded the spec partly; else nil.
func (o *PodObject) Container(init bool, i int, field string) []byte {
	if o.own == nil {
		return nil
	}
	cs := o.own.containers
	if init {
		cs = o.own.initContainers
	}
	for f, name := range containerFields {
		if name == field && i >= 0 && i < len(cs) {
			return cs[i][f]
		}
	}
	return nil
}

// Volumes returns the JSON of spec.volumes, as Container does.
func (o *PodObject) Volumes() []byte {
	if o.own == nil {
		return nil
	}
	return o.own.volumes
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
	Volumes          []corev1.Volume               `json:"volumes,omitempty"`
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
}

type mergeContainer struct {
	Name         string                 `json:"name"`
	Env          []corev1.EnvVar        `json:"env,omitempty"`
	EnvFrom      []corev1.EnvFromSource `json:"envFrom,omitempty"`
	VolumeMounts []corev1.VolumeMount   `json:"volumeMounts,omitempty"`
}

// meta returns a pod with the object's metadata and no spec, in namespace
// ns (the request's: a pod's own metadata.namespace may be empty).
func (o *PodObject) meta(ns string) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{
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
		if err := decode(o.Spec, &pod.Spec); err != nil {
			return fmt.Errorf("decoding the Pod's spec: %w", err)
		}
		return nil
	}
	var s mergeSpec
	if err := decode(o.Spec, &s); err != nil {
		return fmt.Errorf("decoding the Pod's spec: %w", err)
	}
	pod.Spec.InitContainers = containers(s.InitContainers)
	pod.Spec.Containers = containers(s.Containers)
	pod.Spec.Volumes, pod.Spec.ImagePullSecrets = s.Volumes, s.ImagePullSecrets
	// Where the lists are, for a patch that replaces them whole; unless
	// the scan saw the same containers as the decoder, none.
	if own := scanOwnLists(o.Spec); own != nil && len(own.initContainers) == len(s.InitContainers) && len(own.containers) == len(s.Containers) {
		o.own = own
	}
	return nil
}

func containers(cs []mergeContainer) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Env: c.Env, EnvFrom: c.EnvFrom, VolumeMounts: c.VolumeMounts}
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
