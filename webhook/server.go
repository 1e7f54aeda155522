package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"

	"golang.org/x/sync/semaphore"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Request is an admission request whose object is decoded into T in the
// same pass as the review itself: no second decoding of raw bytes.
type Request[T any] struct {
	UID         types.UID                   `json:"uid"`
	Kind        metav1.GroupVersionKind     `json:"kind"`
	Resource    metav1.GroupVersionResource `json:"resource"`
	SubResource string                      `json:"subResource,omitempty"`
	Name        string                      `json:"name,omitempty"`
	Namespace   string                      `json:"namespace,omitempty"`
	Operation   admissionv1.Operation       `json:"operation"`
	// Object is nil when the request carries none.
	Object *T    `json:"object,omitempty"`
	DryRun *bool `json:"dryRun,omitempty"`
}

type review[T any] struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Request    *Request[T] `json:"request"`
}

// Handler answers one admission request. It never sees a request without
// a UID, and its answer is sent with the request's UID. An error means the
// request could not be served (not that it is refused): it is answered with
// HTTP 500, and the API server applies the webhook's failure policy.
type Handler[T any] interface {
	Handle(ctx context.Context, req *Request[T]) (*admissionv1.AdmissionResponse, error)
}

// doner is a Handler that takes its answer back once Serve has written it
// (PodMutator reuses the patch's buffer).
type doner interface {
	Done(resp *admissionv1.AdmissionResponse)
}

// Request body limits, by endpoint. The API server accepts request bodies
// of up to 3 MiB; it sends the pod of a CREATE as JSON inside a review, so a
// pod review stays under 3 MiB plus the review's own fields and the growth
// from YAML or protobuf to JSON: 4 MiB holds it. A preset UPDATE carries the
// object and its old version: 7 MiB, controller-runtime's limit.
const (
	MaxPodReviewBytes    = 4 << 20
	MaxPresetReviewBytes = 7 << 20
)

// Limiter bounds the admission requests one process serves at once, in
// number and in request bytes, so that a flood of large reviews cannot
// take the process over its memory limit: beyond either bound a request is
// answered 429 at once (the API server then applies the failure policy).
type Limiter struct {
	requests, bytes *semaphore.Weighted
	maxBytes        int64
}

// NewLimiter allows requests at once, holding at most bytes of request
// bodies between them.
func NewLimiter(requests, bytes int64) *Limiter {
	return &Limiter{requests: semaphore.NewWeighted(requests), bytes: semaphore.NewWeighted(bytes), maxBytes: bytes}
}

// acquire reserves room for a request of n bytes; release gives it back.
func (l *Limiter) acquire(n int64) (release func(), ok bool) {
	if l == nil {
		return func() {}, true
	}
	n = min(n, l.maxBytes)
	if !l.requests.TryAcquire(1) {
		return nil, false
	}
	if !l.bytes.TryAcquire(n) {
		l.requests.Release(1)
		return nil, false
	}
	return func() { l.bytes.Release(n); l.requests.Release(1) }, true
}

// Serve answers AdmissionReviews with h. A request it cannot read as a
// review (not a POST, not JSON, over maxBody bytes, not
// admission.k8s.io/v1, no request or no UID) is answered with an HTTP error
// status and the message as text, not with 200 and an error inside a review;
// a request beyond the limiter's bounds with 429 at once. The body is read
// once and decoded once.
func Serve[T any](h Handler[T], limiter *Limiter, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "invalid AdmissionReview: method "+r.Method+", want POST", http.StatusMethodNotAllowed)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" && !isJSON(ct) {
			http.Error(w, fmt.Sprintf("invalid AdmissionReview: contentType=%s, want application/json", r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
			return
		}
		size := maxBody
		if r.ContentLength > maxBody {
			http.Error(w, fmt.Sprintf("invalid AdmissionReview: the body is over %d bytes", maxBody), http.StatusRequestEntityTooLarge)
			return
		} else if r.ContentLength >= 0 {
			size = r.ContentLength
		}
		release, ok := limiter.acquire(size)
		if !ok {
			admissionThrottled.Inc()
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many admission requests in flight", http.StatusTooManyRequests)
			return
		}
		defer release()
		in := getBuffer()
		defer putBuffer(in)
		err := readBody(in, r.Body, size, maxBody)
		body := in.Bytes()
		switch {
		case errors.Is(err, errTooLarge):
			http.Error(w, fmt.Sprintf("invalid AdmissionReview: the body is over %d bytes", maxBody), http.StatusRequestEntityTooLarge)
			return
		case err != nil:
			http.Error(w, "invalid AdmissionReview: reading the body: "+err.Error(), http.StatusBadRequest)
			return
		case len(bytes.TrimSpace(body)) == 0:
			http.Error(w, "invalid AdmissionReview: request body is empty", http.StatusBadRequest)
			return
		}
		resp, status, msg := answer(r.Context(), h, body)
		if d, ok := h.(doner); ok && resp != nil {
			defer d.Done(resp)
		}
		switch {
		case status == http.StatusInternalServerError:
			http.Error(w, msg, status)
			return
		case status != http.StatusOK:
			http.Error(w, "invalid AdmissionReview: "+msg, status)
			return
		}
		out := getBuffer()
		defer putBuffer(out)
		if err := json.NewEncoder(out).Encode(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: admissionAPIVersion, Kind: "AdmissionReview"},
			Response: resp,
		}); err != nil {
			http.Error(w, "encoding the answer: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h["Content-Type"] = jsonContentType
		h["Content-Length"] = []string{strconv.Itoa(out.Len())}
		if _, err := w.Write(out.Bytes()); err != nil {
			logf.FromContext(r.Context()).V(1).Info("writing an admission answer", "error", err.Error())
		}
	})
}

// answer decodes a review and runs the handler; status is not 200 when the
// body is no review the handler can be given.
func answer[T any](ctx context.Context, h Handler[T], body []byte) (*admissionv1.AdmissionResponse, int, string) {
	var rv review[T]
	if err := decode(body, &rv); err != nil {
		// The review may be sound and only its object not a T (an
		// undecodable pod): answer it, as a denial that says so.
		var raw review[json.RawMessage]
		if decode(body, &raw) != nil || raw.Request == nil || raw.Request.UID == "" {
			return nil, http.StatusBadRequest, "not an AdmissionReview: " + err.Error()
		}
		return &admissionv1.AdmissionResponse{UID: raw.Request.UID, Result: &metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest,
			Message: fmt.Sprintf("decoding the %s: %v", raw.Request.Kind.Kind, err)}}, http.StatusOK, ""
	}
	switch {
	case rv.APIVersion != admissionAPIVersion || rv.Kind != "AdmissionReview":
		return nil, http.StatusBadRequest, fmt.Sprintf("apiVersion %q, kind %q: want admission.k8s.io/v1 AdmissionReview", rv.APIVersion, rv.Kind)
	case rv.Request == nil:
		return nil, http.StatusBadRequest, "the review has no request"
	case rv.Request.UID == "":
		return nil, http.StatusBadRequest, "the review has no request UID"
	}
	resp, err := h.Handle(ctx, rv.Request)
	if err != nil {
		return nil, http.StatusInternalServerError, err.Error()
	}
	resp.UID = rv.Request.UID
	return resp, http.StatusOK, ""
}

// admissionAPIVersion is admissionv1.SchemeGroupVersion.String(), which
// allocates on every call.
const admissionAPIVersion = "admission.k8s.io/v1"

// jsonContentType is the answer's Content-Type header value, shared by
// every answer (net/http only reads it).
var jsonContentType = []string{"application/json"}

// isJSON says whether a Content-Type is application/json, with parameters.
func isJSON(contentType string) bool {
	ct, _, err := mime.ParseMediaType(contentType)
	return err == nil && ct == "application/json"
}

var errTooLarge = errors.New("too large")

// readBody reads a body of about size bytes, at most max, into buf.
func readBody(buf *bytes.Buffer, r io.Reader, size, max int64) error {
	buf.Grow(int(min(size, max)) + 1)
	n, err := buf.ReadFrom(io.LimitReader(r, max+1))
	if err != nil {
		return err
	}
	if n > max {
		return errTooLarge
	}
	return nil
}

// buffers hold request bodies and answers while a request is served, and
// are reused by the next one: nothing decoded from a body refers to it (the
// decoder copies strings and raw values), and an answer is written before
// its buffer goes back. A buffer grown past maxPooled by a large review is
// left to the garbage collector, so that the pool does not keep it.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooled = 256 << 10

func getBuffer() *bytes.Buffer { return buffers.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooled {
		return
	}
	b.Reset()
	buffers.Put(b)
}

// allowed answers yes, with a message.
func allowed(msg string) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{Allowed: true}
	if msg != "" {
		resp.Result = &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusOK, Message: msg}
	}
	return resp
}
