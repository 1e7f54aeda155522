package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

// Statuses a request the handler cannot serve may get; anything else than
// these and 200 is a bug.
var errorStatuses = []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType,
	http.StatusTooManyRequests, http.StatusInternalServerError}

// seedReviews adds every review under testdata/ and a few adversarial
// shapes to a fuzz corpus.
func seedReviews(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, ".golden.json") {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `"x"`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","resource":{"version":"v1","resource":"pods"},"object":null}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","resource":{"version":"v1","resource":"pods"},"object":{"spec":{"containers":null,"initContainers":[{}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","resource":{"version":"v1","resource":"pods"},"namespace":"shop","object":{"metadata":{"labels":{"app":"cart"}},"spec":{"containers":[{"name":"cart","env":[{"name":"DB_HOST","valueFrom":{}}]}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"PodPreset"},"operation":"CREATE","object":{"spec":{"envFrom":[{"consulKV":{"prefix":"apps/shop/../bank/"}}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"ClusterPodPreset"},"operation":"UPDATE","object":{"spec":{"selector":{"matchExpressions":[{"key":"a","operator":"In"}]}}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","uid":"v"}}`,
	} {
		f.Add([]byte(s))
	}
}

// checkAnswer fails unless rec is a well-formed answer to body: an
// AdmissionReview with a response for the request's UID, or an error
// status with a message.
func checkAnswer(t *testing.T, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != http.StatusOK {
		if !slices.Contains(errorStatuses, rec.Code) || rec.Body.Len() == 0 {
			t.Fatalf("HTTP %d %q for %q", rec.Code, rec.Body, body)
		}
		return
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil || out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
		t.Fatalf("HTTP 200 with %q (%v) for %q", rec.Body, err, body)
	}
	var in admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &in); err == nil && in.Request != nil && in.Response != nil {
		return // both fields: nothing to compare
	}
	if err := json.Unmarshal(body, &in); err != nil || in.Request == nil || out.Response.UID != in.Request.UID || out.Response.UID == "" {
		t.Fatalf("the answer's UID %q is not the request's (%v)", out.Response.UID, err)
	}
	if out.Response.Allowed && len(out.Response.Patch) > 0 && (out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch) {
		t.Fatalf("a patch without its type: %q", rec.Body)
	}
}

func fuzzServe[T any](f *testing.F, h Handler[T]) {
	seedReviews(f)
	srv := Serve(h, NewLimiter(64, 64<<20), MaxPresetReviewBytes)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		srv.ServeHTTP(rec, req)
		checkAnswer(t, body, rec)
	})
}

// FuzzPodMutator sends malformed and adversarial reviews to the pod
// mutator: never a panic, always a well-formed answer.
func FuzzPodMutator(f *testing.F) {
	objs := cartPresets()
	fuzzServe(f, testMutator(&testing.T{}, objs...))
}

// FuzzPresetValidator does the same to the preset validator.
func FuzzPresetValidator(f *testing.F) {
	fuzzServe(f, &PresetValidator{Checks: NewStore().Checks})
}
