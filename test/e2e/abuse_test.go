package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podpreset/podpreset/test/cluster"
	"github.com/podpreset/podpreset/webhook"
)

// webhookMemoryLimit is the container memory limit in manifests/default.
const webhookMemoryLimit = 192 << 20

// rssOf reads a process's resident set size, in bytes.
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib << 10
		}
	}
	t.Fatalf("no VmRSS for process %d", pid)
	return 0
}

// podReview is a pod CREATE review of about size bytes: a pod with as many
// env vars as fit, the shape that costs the most memory to decode and merge.
func podReview(t *testing.T, ns string, labels map[string]string, size int) []byte {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
	entry := len(`{"name":"E0000000","value":"` + strings.Repeat("v", 64) + `"},`)
	for i := range (size - 1024) / entry {
		pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: fmt.Sprintf("E%07d", i), Value: strings.Repeat("v", 64)})
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: types.UID("abuse"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: ns, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAdmissionEndpointUnderAbuse plays a pod that can reach the webhook's
// port: a flood of maximum-size reviews from many connections at once.
// The webhook answers each at once (most with 429), stays under its memory
// limit, and serves pods normally afterwards.
func TestAdmissionEndpointUnderAbuse(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "abuse"}
	createPreset(t, podPreset("abuse", ns, labels, env("INJECTED", "1")))
	waitForPreset(t, ns, labels, "PodPreset/abuse@1")
	pid := cp.ReplicaPID(0)
	url := "https://" + cp.ReplicaAddr(0) + "/mutate-pods"
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 64}}
	post := func(body []byte) (int, string, error) {
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(b), nil
	}

	// Over the limit: refused before it is read.
	if code, msg, err := post(podReview(t, ns, labels, webhook.MaxPodReviewBytes+4096)); err != nil || code != http.StatusRequestEntityTooLarge {
		t.Errorf("a review over %d bytes: HTTP %d %q (%v), want 413", webhook.MaxPodReviewBytes, code, msg, err)
	}

	big := podReview(t, ns, labels, webhook.MaxPodReviewBytes-64<<10)
	rss0 := rssOf(t, pid)
	const clients, perClient = 32, 15
	var ok, throttled, other atomic.Int64
	var peak atomic.Int64
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			if r := rssOf(t, pid); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	errs := make(chan error, clients)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range perClient {
				code, msg, err := post(big)
				switch {
				case err != nil:
					errs <- err
					return
				case code == http.StatusOK:
					ok.Add(1)
				case code == http.StatusTooManyRequests:
					throttled.Add(1)
				default:
					other.Add(1)
					errs <- fmt.Errorf("HTTP %d: %s", code, msg)
					return
				}
			}
		})
	}
	// While the flood runs, the process still answers its probes, and
	// the API server still creates pods (with the preset when its call
	// got through, without it when it was throttled: failurePolicy
	// Ignore).
	probe := createPod(t, testPod("during-flood", ns, labels))
	wg.Wait()
	elapsed := time.Since(start)
	close(done)
	sampler.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a flood request failed: %v", err)
	}
	t.Logf("%d reviews of %d KiB from %d clients in %s: %d answered 200, %d answered 429; RSS %d MiB before, %d MiB at most (limit %d MiB, GOMEMLIMIT %s); a pod created during the flood got %q",
		clients*perClient, len(big)>>10, clients, elapsed.Round(time.Millisecond), ok.Load(), throttled.Load(), rss0>>20, peak.Load()>>20, webhookMemoryLimit>>20,
		cluster.WebhookMemoryLimit, probe.Annotations["podpreset.dev/applied"])
	if peak.Load() >= webhookMemoryLimit {
		t.Errorf("RSS reached %d MiB, over the container's %d MiB limit", peak.Load()>>20, webhookMemoryLimit>>20)
	}
	if ok.Load() == 0 || throttled.Load() == 0 {
		t.Errorf("%d answered, %d throttled: want some of each (the bound holds, and work still gets done)", ok.Load(), throttled.Load())
	}
	// Afterwards, pods get their presets as ever.
	pod := createPod(t, testPod("after-flood", ns, labels))
	if got := envOf(pod.Spec.Containers[0]); got["INJECTED"] != "1" {
		t.Errorf("a pod created after the flood got env %v", got)
	}
}
