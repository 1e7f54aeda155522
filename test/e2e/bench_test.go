package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podpreset/podpreset/presets"
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

// BenchmarkConsulChangeToConfigMap measures how long a Consul KV change
// takes to reach the materialised ConfigMap: one write, then reads of the
// ConfigMap every 5ms until it holds the new value (at most 10s).
func BenchmarkConsulChangeToConfigMap(b *testing.B) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "consul-latency-"}}
	if err := k8s.Create(b.Context(), ns); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	key := "apps/" + ns.Name + "/value"
	if _, err := consulKV.Put(&consulapi.KVPair{Key: key, Value: []byte("0")}, nil); err != nil {
		b.Fatal(err)
	}
	pp := podPreset("latency", ns.Name, map[string]string{"app": "latency"}, consulEnv("VALUE", key))
	if err := k8s.Create(b.Context(), pp); err != nil {
		b.Fatal(err)
	}
	name := types.NamespacedName{Namespace: ns.Name, Name: "podpreset-latency"}
	dataKey := presets.ConsulDataKey(key)
	wait := func(want string) time.Duration {
		start := time.Now()
		for {
			var cm corev1.ConfigMap
			if err := k8s.Get(b.Context(), name, &cm); err == nil && cm.Data[dataKey] == want {
				return time.Since(start)
			}
			if time.Since(start) > 10*time.Second {
				b.Fatalf("the ConfigMap did not get %q within 10s", want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait("0")
	var worst time.Duration
	i := 0
	for b.Loop() {
		i++
		v := strconv.Itoa(i)
		if _, err := consulKV.Put(&consulapi.KVPair{Key: key, Value: []byte(v)}, nil); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, wait(v))
	}
	b.ReportMetric(float64(worst.Milliseconds()), "max-ms")
}
