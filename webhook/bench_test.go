package webhook

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podpreset/podpreset/presets/presetstest"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// benchReview is a pod creation review for the benchmarks: the engine
// benchmark's pod in namespace "shop", matched by 5 of 1,000 presets.
func benchReview(b *testing.B) ([]byte, *PodMutator) {
	b.Helper()
	raw, err := json.Marshal(presetstest.BenchPod("shop"))
	if err != nil {
		b.Fatal(err)
	}
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
	return review, testMutator(&testing.T{}, objs...)
}

// BenchmarkPodMutator is one review through the HTTP handler in process:
// decode the review, decode the pod, apply 5 of 1,000 presets, compute the
// patch, encode the answer.
func BenchmarkPodMutator(b *testing.B) {
	review, m := benchReview(b)
	h := Serve(m, NewLimiter(256, 24<<20), MaxPodReviewBytes)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/mutate-pods", bytes.NewReader(review))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"patch"`)) {
			b.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkPodMutatorHTTPS sends reviews to an HTTPS server on loopback
// from 8 concurrent keep-alive clients, as the API server does, and reports
// reviews per second and the 50th and 99th percentile latency. The loop is
// bounded by -benchtime.
func BenchmarkPodMutatorHTTPS(b *testing.B) {
	review, m := benchReview(b)
	srv := httptest.NewUnstartedServer(Serve(m, NewLimiter(256, 24<<20), MaxPodReviewBytes))
	srv.EnableHTTP2 = false
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
