package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets/presetstest"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// benchReview is a pod creation review for the benchmarks: the engine
// benchmark's pod in namespace "shop", matched by 5 of 1,000 presets, or
// with match false, relabelled so that none matches.
func benchReview(b *testing.B, match bool) ([]byte, *PodMutator) {
	b.Helper()
	pod := presetstest.BenchPod("shop")
	if !match {
		pod.Labels["app"] = "matched-by-none"
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	return reviewOfPod(b, raw)
}

// apiServerReview is benchReview's review with the pod as an API server
// sends it (testdata/pod-create.json: defaulted fields, a service account
// volume, tolerations, managedFields, status), labelled as the benchmark's
// pod so that the same 5 presets match.
func apiServerReview(b *testing.B) ([]byte, *PodMutator) {
	b.Helper()
	var in struct {
		Request struct {
			Object map[string]any `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(fixture(&testing.T{}, "pod-create.json"), &in); err != nil {
		b.Fatal(err)
	}
	labels := map[string]any{}
	for k, v := range presetstest.BenchPod("shop").Labels {
		labels[k] = v
	}
	in.Request.Object["metadata"].(map[string]any)["labels"] = labels
	raw, err := json.Marshal(in.Request.Object)
	if err != nil {
		b.Fatal(err)
	}
	return reviewOfPod(b, raw)
}

// reviewOfPod wraps a pod's JSON in a creation review in namespace "shop",
// whose 1,000 presets are the benchmark's.
func reviewOfPod(b *testing.B, raw []byte) ([]byte, *PodMutator) {
	review, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("b7c1e3a4-0000-4000-8000-000000000001"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: podResource, Namespace: "shop", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	var objs []v1alpha1.Object
	for _, pp := range presetstest.BenchPresets("shop", 1000) {
		objs = append(objs, pp)
	}
	m := testMutator(&testing.T{}, objs...)
	m.Namespaces = lentNamespaces{"shop": {ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{corev1.LabelMetadataName: "shop"}}}}
	return review, m
}

// lentNamespaces reads namespaces as the webhook's cache does
// (UnsafeDisableDeepCopy, cmd/podpreset-webhook): a shallow copy of the
// cache's own object, no deep copy.
type lentNamespaces map[string]*corev1.Namespace

func (l lentNamespaces) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	ns, ok := l[key.Name]
	if !ok {
		return apierrors.NewNotFound(corev1.Resource("namespaces"), key.Name)
	}
	*obj.(*corev1.Namespace) = *ns
	return nil
}

func (l lentNamespaces) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("lentNamespaces: List is not used")
}

// BenchmarkPodMutator is one review through the HTTP handler in process:
// decode the review with its pod, apply 5 of 1,000 presets and write the
// patch (injected), or find that none applies (nothing-matches), encode
// the answer; and the same 5 injected into the pod as an API server sends
// it, with all its defaulted fields (api-server-pod-injected).
func BenchmarkPodMutator(b *testing.B) {
	for _, tc := range []struct {
		name      string
		match     bool
		apiServer bool
	}{{"injected", true, false}, {"nothing-matches", false, false}, {"api-server-pod-injected", true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			review, m := benchReview(b, tc.match)
			if tc.apiServer {
				review, m = apiServerReview(b)
			}
			h := Serve(m, NewLimiter(256, 24<<20), MaxPodReviewBytes)
			w := &discardWriter{header: http.Header{}}
			req := httptest.NewRequest(http.MethodPost, "/mutate-pods", nil)
			req.Header.Set("Content-Type", "application/json")
			body := &rewindReader{}
			req.Body = body
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(review)
				req.ContentLength = int64(len(review))
				w.code, w.n, w.patched = 0, 0, false
				h.ServeHTTP(w, req)
				if w.code != http.StatusOK || w.patched != tc.match {
					b.Fatalf("HTTP %d, patched %v", w.code, w.patched)
				}
			}
		})
	}
}

// discardWriter is a ResponseWriter that keeps only what the benchmark
// checks, so that the figures are the handler's, not a recorder's.
type discardWriter struct {
	header  http.Header
	code, n int
	patched bool
}

func (w *discardWriter) Header() http.Header  { return w.header }
func (w *discardWriter) WriteHeader(code int) { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(p)
	w.patched = w.patched || bytes.Contains(p, []byte(`"patch":`))
	return len(p), nil
}

// rewindReader is a request body read again on every iteration.
type rewindReader struct{ bytes.Reader }

func (r *rewindReader) Close() error { return nil }

// BenchmarkPodMutatorHTTPS sends reviews to an HTTPS server on loopback
// from 8 concurrent keep-alive clients, as the API server does, and reports
// reviews per second and the 50th and 99th percentile latency. The loop is
// bounded by -benchtime.
func BenchmarkPodMutatorHTTPS(b *testing.B) {
	review, m := benchReview(b, true)
	srv := httptest.NewUnstartedServer(Serve(m, NewLimiter(256, 24<<20), MaxPodReviewBytes))
	srv.EnableHTTP2 = false
	// Closing the server at the end of a short run (b.N 1 first) can cut
	// a client's handshake: that line is noise in the benchmark's output.
	// Every other server error is printed.
	srv.Config.ErrorLog = log.New(dropClosedConn{}, "", log.LstdFlags)
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 16
	client.Transport.(*http.Transport).TLSClientConfig.MinVersion = tls.VersionTLS12

	var mu sync.Mutex
	var latencies []time.Duration
	b.SetParallelism(4) // 4 x GOMAXPROCS(2) = 8 clients
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			resp, err := client.Post(srv.URL+"/mutate-pods", "application/json", bytes.NewReader(review))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("HTTP %d", resp.StatusCode)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		latencies = append(latencies, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(float64(len(latencies)-1)*p)].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "reviews/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// dropClosedConn writes a server's log lines to standard error, but for
// those about a connection the server itself closed.
type dropClosedConn struct{}

func (dropClosedConn) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "use of closed network connection") {
		return len(p), nil
	}
	return os.Stderr.Write(p)
}
