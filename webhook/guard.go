package webhook

import (
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

// Guard says why the pod mutator must leave a request alone: not a pod,
// not a CREATE, or a subresource (pods/ephemeralcontainers, pods/binding,
// ...). Empty means the request is a pod creation. Pod-level reasons (mirror
// pods, opt-out annotations) and namespace-level ones are decided once the
// pod is decoded, by presets.Skip and presets.SkipNamespace.
func Guard(req *Request[PodObject]) string {
	switch {
	case req.Resource != podResource:
		return "not a pod: " + req.Resource.Resource
	case req.SubResource != "":
		return "pod subresource " + req.SubResource
	case req.Operation != admissionv1.Create:
		return "not a CREATE: " + string(req.Operation)
	case req.Object == nil:
		return "no object in the request"
	}
	return ""
}
