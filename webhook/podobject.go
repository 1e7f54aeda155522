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
// containers the merge reads. The spec's JSON is kept too, with where its
// lists are (presets.ScanSpec), so that the patch is the API server's own
// spec with the injected entries written into it: one operation, and every
// field our types do not know kept.
type PodObject struct {
	Metadata podMetadata    `json:"metadata"`
	Spec     jsontext.Value `json:"spec"`
	// specJSON is Spec scanned, once decodeSpec has decoded it; nil when
	// the scan found what it does not expect (the patch then inserts
	// entry by entry).
	specJSON *presets.SpecJSON
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
		o.scan(len(pod.Spec.InitContainers), len(pod.Spec.Containers))
		return nil
	}
	var s mergeSpec
	if err := decode(o.Spec, &s); err != nil {
		return fmt.Errorf("decoding the Pod's spec: %w", err)
	}
	pod.Spec.InitContainers = containers(s.InitContainers)
	pod.Spec.Containers = containers(s.Containers)
	pod.Spec.Volumes, pod.Spec.ImagePullSecrets = s.Volumes, s.ImagePullSecrets
	o.scan(len(s.InitContainers), len(s.Containers))
	return nil
}

// scan finds where the spec's lists are, for the patch; unless the scan saw
// as many containers as the decoder did, the patch inserts entry by entry.
func (o *PodObject) scan(inits, containers int) {
	if spec := presets.ScanSpec(o.Spec); spec != nil && len(spec.InitContainers) == inits && len(spec.Containers) == containers {
		o.specJSON = spec
	}
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
