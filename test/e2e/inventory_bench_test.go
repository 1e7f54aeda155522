package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// BenchmarkInventory10kPods puts 10,000 pods in the webhook's inventory and
// reports the webhook process's memory before and after (the baseline is
// the same process, measured in the same run, before the pods), per pod,
// and the time from a preset edit to its 10,000 pods counted stale. Each
// pod looks like a Deployment's: four labels, the webhook's annotations,
// an owner reference.
func BenchmarkInventory10kPods(b *testing.B) {
	const n = 10000
	ctx := b.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "inventory-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		b.Fatal(err)
	}
	labels := map[string]string{"app": "bulk", "tier": "backend", "team": "payments", "pod-template-hash": "7d9f8c6b5"}
	pp := podPreset("bulk", ns.Name, map[string]string{"app": "bulk"}, env("LOG_FORMAT", "json"))
	if err := k8s.Create(ctx, pp); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = k8s.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(ns.Name), client.GracePeriodSeconds(0))
		_ = k8s.Delete(context.Background(), ns)
	})
	// The pods' owner exists: the garbage collector deletes pods whose
	// owner does not.
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner", Namespace: ns.Name}}
	if err := k8s.Create(ctx, owner); err != nil {
		b.Fatal(err)
	}
	pp = waitCounts(b, pp, func(c v1alpha1.PodCounts) bool { return c == v1alpha1.PodCounts{} }, time.Minute)
	settle()
	heap0, rss0 := heapInuse(b), rssKiB(b, cp.ReplicaPID(0))

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				p := testPod(fmt.Sprintf("bulk-%05d", i), ns.Name, labels)
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "owner", UID: owner.UID}}
				if err := k8s.Create(ctx, p); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	created := time.Since(start)
	pp = waitCounts(b, pp, func(c v1alpha1.PodCounts) bool { return c.Applied == n }, 2*time.Minute)
	settle()
	heap1, rss1 := heapInuse(b), rssKiB(b, cp.ReplicaPID(0))

	// A preset edit: every pod is stale.
	edit(b, pp, func() { pp.Spec.Env[0].Value = "text" })
	edited := time.Now()
	waitCounts(b, pp, func(c v1alpha1.PodCounts) bool { return c.Stale == n }, 2*time.Minute)
	toStale := time.Since(edited)
	for b.Loop() {
	}
	b.Logf("%d pods created in %s; heap in use %.1f -> %.1f MiB, RSS %.1f -> %.1f MiB; edit to %d stale: %s",
		n, created.Round(time.Second), mib(heap0), mib(heap1), float64(rss0)/1024, float64(rss1)/1024, n, toStale.Round(time.Millisecond))
	b.ReportMetric(mib(heap1), "heap-MiB")
	b.ReportMetric(float64(rss1)/1024, "rss-MiB")
	b.ReportMetric((heap1-heap0)/n, "heap-B/pod")
	b.ReportMetric(float64(rss1-rss0)*1024/n, "rss-B/pod")
	b.ReportMetric(toStale.Seconds(), "edit-to-stale-s")
}

// waitCounts waits until a preset's status.pods meets ok.
func waitCounts(b *testing.B, pp *v1alpha1.PodPreset, ok func(v1alpha1.PodCounts) bool, timeout time.Duration) *v1alpha1.PodPreset {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if err := k8s.Get(b.Context(), client.ObjectKeyFromObject(pp), pp); err != nil {
			b.Fatal(err)
		}
		if pp.Status.Pods != nil && ok(*pp.Status.Pods) {
			return pp
		}
		if time.Now().After(deadline) {
			b.Fatalf("after %s, status.pods of %s is %+v", timeout, pp.Name, pp.Status.Pods)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settle lets the webhook finish what the last changes started before its
// memory is read. The heap in use includes garbage not yet collected: the
// figures are upper bounds.
func settle() { time.Sleep(5 * time.Second) }

// heapInuse reads go_memstats_heap_inuse_bytes from the webhook's metrics.
func heapInuse(b *testing.B) float64 {
	b.Helper()
	m, err := cp.Metrics()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			return f
		}
	}
	b.Fatal("no go_memstats_heap_inuse_bytes in the webhook's metrics")
	return 0
}

func mib(bytes float64) float64 { return bytes / (1 << 20) }
