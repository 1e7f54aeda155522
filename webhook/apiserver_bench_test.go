package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/patch"
	"github.com/podpreset/podpreset/presets/presetstest"
)

// BenchmarkAPIServerAppliesPatch is what a kube-apiserver does with the
// pod webhook's answer for the benchmark's pod (5 of 1,000 presets), as an
// API server sends that pod (apiServerBenchPod), step for step as its
// mutating dispatcher (k8s.io/apiserver's mutating/dispatcher.go) does it:
// decode the AdmissionReview response, encode the pod it sent to JSON,
// apply the patch with the json-patch library it uses
// (gopkg.in/evanphx/json-patch.v4), decode the result into a pod, compare
// it with the pod sent (apiequality.Semantic.DeepEqual) and encode the
// patch for its audit annotation. patch-and-decode is every step but the
// first two, answer-to-pod all of them.
//
// Beside the webhook's patch (the annotations and one replace of /spec),
// the same steps for two other shapes of the same change: insert-only (one
// add per injected entry, what MergePatch writes without the spec's JSON)
// and whole-lists (one replace of each container list). And the baselines
// the end-to-end benchmark's "pre-merged" case pays instead: decoding the
// merged pod once (decode-merged) and the pod as sent (decode-sent).
func BenchmarkAPIServerAppliesPatch(b *testing.B) {
	sent := apiServerBenchPod()
	ser := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, kjson.SerializerOptions{})
	sentJS, err := runtime.Encode(ser, sent)
	if err != nil {
		b.Fatal(err)
	}
	review, m := reviewOfPod(b, sentJS)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/mutate-pods", bytes.NewReader(review))
	req.Header.Set("Content-Type", "application/json")
	Serve(m, NewLimiter(256, 24<<20), MaxPodReviewBytes).ServeHTTP(rec, req)
	answer := rec.Body.Bytes()
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(answer, &ar); err != nil || ar.Response == nil || len(ar.Response.Patch) == 0 {
		b.Fatalf("the webhook's answer has no patch (%v): %s", err, answer)
	}
	apply := func(patch, doc []byte) *corev1.Pod {
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			b.Fatal(err)
		}
		out, err := p.Apply(doc)
		if err != nil {
			b.Fatal(err)
		}
		var pod corev1.Pod
		if _, _, err := ser.Decode(out, nil, &pod); err != nil {
			b.Fatal(err)
		}
		if equality.Semantic.DeepEqual(sent, &pod) {
			b.Fatal("the patch changed nothing")
		}
		annotation, err := utiljson.Marshal(struct {
			Configuration, Webhook string
			Patch                  any
			PatchType              string
		}{"podpreset", "pods.podpreset.dev", p, "JSONPatch"})
		if err != nil || len(annotation) < len(patch) {
			b.Fatalf("the patch's audit annotation (%v): %s", err, annotation)
		}
		return &pod
	}
	merged := apply(ar.Response.Patch, sentJS)
	mergedJS, err := runtime.Encode(ser, merged)
	if err != nil {
		b.Fatal(err)
	}
	// The other shapes of the same change, each checked to give the pod the
	// webhook's patch gives.
	res := presets.Apply(sent, presets.Namespace{Name: "shop", Labels: map[string]string{corev1.LabelMetadataName: "shop"}}, m.Presets.Set())
	ops, err := patch.Pod(sent, res.Pod, "")
	if err != nil {
		b.Fatal(err)
	}
	insertOnly, err := json.Marshal(ops)
	if err != nil {
		b.Fatal(err)
	}
	var doc struct {
		Metadata struct {
			Annotations json.RawMessage `json:"annotations"`
		} `json:"metadata"`
		Spec map[string]json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(mergedJS, &doc); err != nil {
		b.Fatal(err)
	}
	type op struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	wholeLists, err := json.Marshal([]op{{"add", "/metadata/annotations", doc.Metadata.Annotations},
		{"replace", "/spec/initContainers", doc.Spec["initContainers"]},
		{"replace", "/spec/containers", doc.Spec["containers"]},
		{"replace", "/spec/volumes", doc.Spec["volumes"]}})
	if err != nil {
		b.Fatal(err)
	}
	for name, p := range map[string][]byte{"insert-only": insertOnly, "whole-lists": wholeLists} {
		if got := apply(p, sentJS); !equality.Semantic.DeepEqual(got, merged) {
			b.Fatalf("the %s patch does not give the pod the webhook's patch gives", name)
		}
	}
	decode := func(js []byte) {
		var pod corev1.Pod
		if _, _, err := ser.Decode(js, nil, &pod); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		run  func()
	}{
		{"decode-merged", func() { decode(mergedJS) }},
		{"decode-sent", func() { decode(sentJS) }},
		{"patch-and-decode", func() { apply(ar.Response.Patch, sentJS) }},
		{"answer-to-pod", func() {
			var r admissionv1.AdmissionReview
			if err := json.Unmarshal(answer, &r); err != nil {
				b.Fatal(err)
			}
			js, err := runtime.Encode(ser, sent)
			if err != nil {
				b.Fatal(err)
			}
			apply(r.Response.Patch, js)
		}},
		{"insert-only/patch-and-decode", func() { apply(insertOnly, sentJS) }},
		{"whole-lists/patch-and-decode", func() { apply(wholeLists, sentJS) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tc.run()
			}
		})
	}
}

// apiServerBenchPod is presetstest.BenchPod as an API server with the
// ServiceAccount admission plugin sends it to a webhook: the defaults of
// the pod and its containers, the service account token's projected volume
// mounted in every container, and the two not-ready and unreachable
// tolerations.
func apiServerBenchPod() *corev1.Pod {
	p := presetstest.BenchPod("shop")
	p.APIVersion, p.Kind = "v1", "Pod"
	const token = "kube-api-access-x7k2p"
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: token, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](420),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		}}}})
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			c.TerminationMessagePath, c.TerminationMessagePolicy, c.ImagePullPolicy = "/dev/termination-log", corev1.TerminationMessageReadFile, corev1.PullIfNotPresent
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: token, ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"})
		}
	}
	s := &p.Spec
	s.RestartPolicy, s.DNSPolicy, s.SchedulerName = corev1.RestartPolicyAlways, corev1.DNSClusterFirst, corev1.DefaultSchedulerName
	s.ServiceAccountName, s.DeprecatedServiceAccount = "default", "default"
	s.TerminationGracePeriodSeconds, s.SecurityContext = ptr.To[int64](30), &corev1.PodSecurityContext{}
	s.Priority, s.EnableServiceLinks, s.PreemptionPolicy = ptr.To[int32](0), ptr.To(true), ptr.To(corev1.PreemptLowerPriority)
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		s.Tolerations = append(s.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists,
			Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)})
	}
	return p
}
