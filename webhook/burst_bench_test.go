//go:build unix

package webhook

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/podpreset/podpreset/presets/presetstest"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// BenchmarkStoreBurst: with 2,000 presets held, 500 of them change one
// every 2 ms (a GitOps sync applying them); reports the index rebuilds
// the burst caused and the process's CPU time over it, until the index
// holds the last change. "unpaced" rebuilds back to back (rebuildPace 0),
// the baseline for "paced".
func BenchmarkStoreBurst(b *testing.B) {
	all := presetstest.BenchPresets("shop", 2000)
	for _, tc := range []struct {
		name string
		pace int
	}{{"paced", rebuildPace}, {"unpaced", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			defer func(p int) { rebuildPace = p }(rebuildPace)
			rebuildPace = tc.pace
			var rebuilds int64
			var cpu time.Duration
			n := 0
			for b.Loop() {
				s := NewStore()
				for _, pp := range all {
					if _, err := s.Load(pp); err != nil {
						b.Fatal(err)
					}
				}
				s.rebuild()
				var count atomic.Int64
				s.Subscribe(func([]Key) { count.Add(1) })
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); s.Run(ctx) }()
				before := cpuTime(b)
				var last *v1alpha1.PodPreset
				for i, pp := range all[:500] {
					last = pp.DeepCopy()
					last.Generation++
					last.Spec.Env[0].Value = fmt.Sprint("changed-", i)
					if _, err := s.Load(last); err != nil {
						b.Fatal(err)
					}
					time.Sleep(2 * time.Millisecond)
				}
				key := Key{Kind: v1alpha1.KindPodPreset, NamespacedName: types.NamespacedName{Namespace: last.Namespace, Name: last.Name}}
				want := s.Get(key)
				for deadline := time.Now().Add(10 * time.Second); s.Presets()[key] != want; {
					if time.Now().After(deadline) {
						b.Fatal("the last change never reached the index")
					}
					time.Sleep(time.Millisecond)
				}
				cpu += cpuTime(b) - before
				rebuilds += count.Load()
				n++
				cancel()
				<-done
			}
			b.ReportMetric(float64(rebuilds)/float64(n), "rebuilds/burst")
			b.ReportMetric(float64(cpu.Milliseconds())/float64(n), "cpu-ms/burst")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
