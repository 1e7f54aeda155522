package webhook

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
)

// decodeCases are reviews as the API server sends them, and as a hostile
// or broken client might: what decode reads of each must be what the API
// server's own decoder (sigs.k8s.io/json) reads.
var decodeCases = map[string]string{
	"a name given twice: the last wins": `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","uid":"b","namespace":"shop",
		"object":{"metadata":{"labels":{"app":"x","app":"y"}},"spec":{"containers":[{"name":"c","env":[{"name":"A","value":"1"}]}]}}}}`,
	"names differ in case only": `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"UID":"a","uid":"b","Namespace":"x",
		"object":{"Metadata":{"labels":{"app":"x"}},"metadata":{"Labels":{"app":"y"}},"spec":{"Containers":[{"name":"c"}]}}}}`,
	"invalid UTF-8 in a value": "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"a\",\"object\":{\"metadata\":{\"labels\":{\"app\":\"\xff\xfe\"}},\"spec\":{\"containers\":[{\"name\":\"\xc3\"}]}}}}",
	"unknown fields": `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","extra":[1,{"b":null}],
		"object":{"metadata":{"labels":{"app":"x"},"managedFields":[{"manager":"m"}]},"spec":{"containers":[{"name":"c","unknown":{"deep":[true]}}]}}}}`,
	"nulls":                           `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","dryRun":null,"object":{"metadata":{"labels":null},"spec":{"containers":null,"volumes":[null]}}}}`,
	"escapes":                         `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"\u0061","object":{"metadata":{"labels":{"\u0061pp":"\ud83d\ude00"}},"spec":{"containers":[{"name":"c","env":[{"name":"A","value":"\"\\\/\n"}]}]}}}}`,
	"a string where a number goes":    `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","object":{"spec":{"containers":[{"name":"c","ports":[{"containerPort":"80"}]}]}}}}`,
	"a quantity and an int-or-string": `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","object":{"spec":{"containers":[{"name":"c","resources":{"limits":{"cpu":"500m"}},"livenessProbe":{"httpGet":{"port":"http"}}}]}}}}`,
	"not JSON":                        `{"apiVersion":"admission.k8s.io/v1",`,
	"trailing":                        `{"apiVersion":"admission.k8s.io/v1"} {}`,
	"not a spec":                      `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","object":{"spec":[1,2]}}}`,
}

// TestDecodeReadsWhatTheAPIServerReads: JSON v2, configured as decode
// does, reads each review, its pod's spec (whole, and as the merge reads
// it) exactly as sigs.k8s.io/json does, and fails where it fails.
func TestDecodeReadsWhatTheAPIServerReads(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "pod-create.json"))
	if err != nil {
		t.Fatal(err)
	}
	decodeCases["the API server's review"] = string(b)
	for name, in := range decodeCases {
		t.Run(name, func(t *testing.T) { sameAsAPIServer(t, []byte(in)) })
	}
}

func FuzzDecodeReadsWhatTheAPIServerReads(f *testing.F) {
	for _, in := range decodeCases {
		f.Add([]byte(in))
	}
	f.Fuzz(sameAsAPIServer)
}

func sameAsAPIServer(t *testing.T, in []byte) {
	var got, want review[PodObject]
	errGot, errWant := decode(in, &got), sigsjson.UnmarshalCaseSensitivePreserveInts(in, &want)
	if (errGot == nil) != (errWant == nil) {
		t.Fatalf("decode: %v; the API server's decoder: %v", errGot, errWant)
	}
	if errGot != nil {
		return
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(PodObject{}), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("the review decodes differently (-API server +decode):\n%s", diff)
	}
	if got.Request == nil || got.Request.Object == nil || len(got.Request.Object.Spec) == 0 {
		return
	}
	spec := got.Request.Object.Spec
	for _, whole := range []bool{false, true} {
		var g, w corev1.Pod
		var ws mergeSpec
		errGot := got.Request.Object.decodeSpec(&g, whole)
		var errWant error
		if whole {
			errWant = sigsjson.UnmarshalCaseSensitivePreserveInts(spec, &w.Spec)
		} else if errWant = sigsjson.UnmarshalCaseSensitivePreserveInts(spec, &ws); errWant == nil {
			w.Spec.InitContainers, w.Spec.Containers = containers(ws.InitContainers), containers(ws.Containers)
			w.Spec.Volumes, w.Spec.ImagePullSecrets = ws.Volumes, ws.ImagePullSecrets
		}
		if (errGot == nil) != (errWant == nil) {
			t.Fatalf("the spec (whole %t): decode: %v; the API server's decoder: %v", whole, errGot, errWant)
		}
		if diff := cmp.Diff(w, g, cmpopts.EquateEmpty()); errGot == nil && diff != "" {
			t.Fatalf("the spec (whole %t) decodes differently (-API server +decode):\n%s", whole, diff)
		}
	}
}
