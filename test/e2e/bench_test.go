package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpreset/podpreset/presets/presetstest"
)

// BenchmarkWebhookRSS reports the webhook process's resident memory with
// 1,000 presets cached (the engine benchmark's presets), after a GC-friendly
// pause. It measures; the target (64 MiB) is checked by reading the figure.
func BenchmarkWebhookRSS(b *testing.B) {
	ns := benchNamespace(b, metav1.ObjectMeta{Name: "rss"})
	// Serve some traffic so that the handler's memory is counted too.
	for i := range 50 {
		p := presetstest.BenchPod(ns.Name)
		p.GenerateName, p.Name = "", fmt.Sprintf("rss-%d", i)
		if err := k8s.Create(b.Context(), p); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	for b.Loop() {
	}
	b.ReportMetric(float64(rssKiB(b, cp.ReplicaPID(0)))/1024, "rss-MiB")
}

func rssKiB(b *testing.B, pid int) int {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkPodCreate creates pods through the real API server in a
// namespace the webhook mutates (5 of 1,000 presets match), the same with
// pods no preset matches (the webhook is called, nothing is injected), and
// in one the webhook is never called for (podpreset.dev/ignore), so the
// figures compare: with the webhook registered and without.
func BenchmarkPodCreate(b *testing.B) {
	for _, tc := range []struct {
		name    string
		labels  map[string]string
		noMatch bool
	}{
		{name: "webhook"},
		{name: "webhook-no-match", noMatch: true},
		{name: "no-webhook", labels: map[string]string{"podpreset.dev/ignore": "true"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ns := benchNamespace(b, metav1.ObjectMeta{GenerateName: "create-", Labels: tc.labels})
			i := 0
			for b.Loop() {
				p := presetstest.BenchPod(ns.Name)
				p.GenerateName, p.Name = "", fmt.Sprintf("pod-%d", i)
				if tc.noMatch {
					p.Labels["app"] = "nothing-selects-this"
				}
				i++
				if err := k8s.Create(b.Context(), p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchNamespace creates a namespace holding the benchmark's 1,000
// presets, waits until the webhook has them all, and deletes it when the
// benchmark ends.
func benchNamespace(b *testing.B, meta metav1.ObjectMeta) *corev1.Namespace {
	b.Helper()
	ns := &corev1.Namespace{ObjectMeta: meta}
	if err := k8s.Create(b.Context(), ns); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	for _, pp := range presetstest.BenchPresets(ns.Name, 1000) {
		if err := k8s.Create(b.Context(), pp); err != nil {
			b.Fatal(err)
		}
	}
	if err := cp.WaitForPresets(b.Context()); err != nil {
		b.Fatal(err)
	}
	return ns
}
