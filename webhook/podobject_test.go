package webhook

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	evanphx "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/podpreset/podpreset/presets/presetstest"
	"github.com/podpreset/podpreset/presets/v1alpha1"
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
	w, p := obj.meta("shop"), obj.meta("shop")
	whole, part := &w, &p
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

// TestPatchKeepsUnknownFields: a pod whose spec, containers and own env,
// envFrom, volumeMounts and volumes entries carry fields our Go types do
// not know (a newer Kubernetes') gets its presets in one replace of /spec
// beside the annotations, and every one of those fields survives the
// patch as the API server applies it; nothing the pod had is lost or
// reordered.
func TestPatchKeepsUnknownFields(t *testing.T) {
	const unknown = `"x-newer":{"kept":true}`
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"shop","labels":{"app":"web","tier":"frontend"}},
"spec":{` + unknown + `,"initContainers":[{"name":"init","image":"busybox","env":[{"name":"OWN_INIT","value":"1",` + unknown + `}]}],
"containers":[{"name":"web",` + unknown + `,"image":"nginx","env":[{"name":"OWN","value":"1",` + unknown + `}],
"envFrom":[{"configMapRef":{"name":"own"},` + unknown + `}],"volumeMounts":[{"name":"data","mountPath":"/data",` + unknown + `}]},{"name":"sidecar","image":"envoy",` + unknown + `}],
"volumes":[{"name":"data","emptyDir":{},` + unknown + `}]}}`
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},
"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"shop","operation":"CREATE","object":` + pod + `}}`
	var objs []v1alpha1.Object
	for _, pp := range presetstest.BenchPresets("shop", 10) {
		objs = append(objs, pp)
	}
	resp := reviewOf(t, serve(t, testMutator(t, objs...), []byte(review), "application/json"))
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("allowed %v, patch %s", resp.Allowed, resp.Patch)
	}
	var ops []struct{ Op, Path string }
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	if want := []struct{ Op, Path string }{{"add", "/metadata/annotations"}, {"replace", "/spec"}}; !slices.Equal(ops, want) {
		t.Errorf("the patch's operations are %v, want %v", ops, want)
	}
	p, err := evanphx.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatal(err)
	}
	mutated, err := p.Apply([]byte(pod))
	if err != nil {
		t.Fatalf("the patch does not apply: %v", err)
	}
	if got := strings.Count(string(mutated), unknown); got != 8 {
		t.Errorf("%d of the 8 unknown fields survived:\n%s", got, mutated)
	}
	var got corev1.Pod
	if err := json.Unmarshal(mutated, &got); err != nil {
		t.Fatal(err)
	}
	web, sidecar := got.Spec.Containers[0], got.Spec.Containers[1]
	if len(sidecar.Env) != 20 || sidecar.Image != "envoy" || len(got.Spec.InitContainers[0].Env) != 21 {
		t.Errorf("the sidecar has %d env vars (want 20), image %q; the init container %d (want 21)", len(sidecar.Env), sidecar.Image, len(got.Spec.InitContainers[0].Env))
	}
	if n := len(web.Env); n != 21 || web.Env[20].Name != "OWN" || len(web.EnvFrom) != 6 || web.EnvFrom[5].ConfigMapRef.Name != "own" ||
		len(web.VolumeMounts) != 6 || web.VolumeMounts[0].Name != "data" || len(got.Spec.Volumes) != 6 || got.Spec.Volumes[0].Name != "data" {
		t.Errorf("the pod's own entries moved or went: env %d, envFrom %d, mounts %d, volumes %d\n%s", n, len(web.EnvFrom), len(web.VolumeMounts), len(got.Spec.Volumes), mutated)
	}
}
