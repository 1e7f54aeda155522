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
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/podpreset/podpreset/presets/presetstest"
)

// BenchmarkAPIServerAppliesPatch is what a kube-apiserver does with the
// pod webhook's answer for the benchmark's pod (5 of 1,000 presets), step
// for step as its mutating dispatcher does it: decode the AdmissionReview
// response, encode the pod it sent to JSON, apply the patch with the
// json-patch library it uses (gopkg.in/evanphx/json-patch.v4) and decode
// the result into a pod (patch-and-decode, then answer-to-pod for all of
// it). Beside it, the baselines that the end-to-end benchmark's
// "pre-merged" case pays instead: decoding the merged pod once
// (decode-merged) and the pod as sent (decode-sent). whole-lists is a
// shape of patch podpreset does not write today, one replace of each
// container list whole, measured to size that step (README, Performance).
func BenchmarkAPIServerAppliesPatch(b *testing.B) {
	review, m := benchReview(b, true)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/mutate-pods", bytes.NewReader(review))
	req.Header.Set("Content-Type", "application/json")
	Serve(m, NewLimiter(256, 24<<20), MaxPodReviewBytes).ServeHTTP(rec, req)
	answer := rec.Body.Bytes()
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(answer, &ar); err != nil || ar.Response == nil || len(ar.Response.Patch) == 0 {
		b.Fatalf("the webhook's answer has no patch (%v): %s", err, answer)
	}
	ser := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, kjson.SerializerOptions{})
	sent := presetstest.BenchPod("shop")
	sent.APIVersion, sent.Kind = "v1", "Pod"
	sentJS, err := runtime.Encode(ser, sent)
	if err != nil {
		b.Fatal(err)
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
		return &pod
	}
	merged := apply(ar.Response.Patch, sentJS)
	mergedJS, err := runtime.Encode(ser, merged)
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
	whole, err := json.Marshal([]op{{"add", "/metadata/annotations", doc.Metadata.Annotations},
		{"replace", "/spec/initContainers", doc.Spec["initContainers"]},
		{"replace", "/spec/containers", doc.Spec["containers"]},
		{"replace", "/spec/volumes", doc.Spec["volumes"]}})
	if err != nil {
		b.Fatal(err)
	}
	if got := apply(whole, sentJS); !equality.Semantic.DeepEqual(got, merged) {
		b.Fatal("the whole-lists patch does not give the pod the webhook's patch gives")
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
		{"whole-lists/patch-and-decode", func() { apply(whole, sentJS) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tc.run()
			}
		})
	}
}
