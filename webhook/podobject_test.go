package webhook

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/podpreset/podpreset/presets/presetstest"
)

// TestDecodeSpecKeepsWhatTheMergeReads: the partial decode of a pod keeps,
// of every container, init container, volume and pull secret, what
// presets.MergePatch reads, equal to a whole decode; the whole decode is
// the pod itself.
func TestDecodeSpecKeepsWhatTheMergeReads(t *testing.T) {
	pod := presetstest.BenchPod("shop")
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
	pod.Spec.InitContainers[0].EnvFrom = []corev1.EnvFromSource{{Prefix: "P_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}}}}
	pod.Spec.Containers[0].Command = []string{"serve"}
	pod.Spec.NodeName = "node-a"
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	var obj PodObject
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	whole, part := obj.meta("shop"), obj.meta("shop")
	if err := obj.decodeSpec(whole, true); err != nil {
		t.Fatal(err)
	}
	if err := obj.decodeSpec(part, false); err != nil {
		t.Fatal(err)
	}
	want := pod.DeepCopy()
	want.TypeMeta = whole.TypeMeta
	if diff := cmp.Diff(want, whole); diff != "" {
		t.Errorf("whole decode (-pod +decoded):\n%s", diff)
	}
	trim := func(cs []corev1.Container) []corev1.Container {
		out := make([]corev1.Container, len(cs))
		for i, c := range cs {
			out[i] = corev1.Container{Name: c.Name, Env: c.Env, EnvFrom: c.EnvFrom, VolumeMounts: c.VolumeMounts}
		}
		return out
	}
	want.Spec = corev1.PodSpec{InitContainers: trim(pod.Spec.InitContainers), Containers: trim(pod.Spec.Containers),
		Volumes: pod.Spec.Volumes, ImagePullSecrets: pod.Spec.ImagePullSecrets}
	if diff := cmp.Diff(want, part); diff != "" {
		t.Errorf("partial decode (-what the merge reads +decoded):\n%s", diff)
	}
}
