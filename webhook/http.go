package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
)

// WithHTTPErrors wraps an admission webhook so that a request it could not
// read as an AdmissionReview (empty, not JSON, no request UID, wrong content
// type, too large) is answered with an HTTP error status and the message as
// text, rather than with HTTP 200 and the error inside a review. The answer
// to a readable review carries the request's non-empty UID; only an answer
// with an empty one is examined.
func WithHTTPErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
		switch {
		case err != nil:
			http.Error(w, "invalid AdmissionReview: reading the body: "+err.Error(), http.StatusBadRequest)
			return
		case len(in) > maxRequestBytes:
			http.Error(w, fmt.Sprintf("invalid AdmissionReview: the body is over %d bytes", maxRequestBytes), http.StatusRequestEntityTooLarge)
			return
		case len(bytes.TrimSpace(in)) == 0:
			http.Error(w, "invalid AdmissionReview: request body is empty", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(in))
		rec := &bufferedWriter{header: w.Header()}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		body := rec.body.Bytes()
		if rec.status == http.StatusOK && (bytes.Contains(body, []byte(`"uid":""`)) || !bytes.Contains(body, []byte(`"uid":`))) {
			status, msg := http.StatusBadRequest, "the review has no request UID"
			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(body, &review); err == nil && review.Response != nil &&
				review.Response.Result != nil && review.Response.Result.Code >= 400 {
				status, msg = int(review.Response.Result.Code), review.Response.Result.Message
			}
			http.Error(w, "invalid AdmissionReview: "+msg, status)
			return
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(body)
	})
}

// maxRequestBytes is controller-runtime's limit: a 3 MiB object and its old
// version, with room for the rest of the review.
const maxRequestBytes = 7 << 20

type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header         { return b.header }
func (b *bufferedWriter) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferedWriter) WriteHeader(status int)      { b.status = status }
