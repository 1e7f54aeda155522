package webhook

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// A preset and the pods it is for are often created together (one kubectl
// apply of a directory): the preset's create returns, and the first pod's
// admission can reach the webhook before the watch has brought it the
// preset. That pod would start without it. The replica that validated the
// preset knows it is coming: it expects it, and a pod admission in its
// namespace (any namespace, for a ClusterPodPreset) waits until the index
// holds it (or its new content, on an update), at most the mutator's Wait,
// and never once the expectation is older than expectTTL (the create may
// have failed after validation). A replica that did not validate the
// preset cannot know, so the pod is admitted at once; the inventory
// reports it as missed, and rollout OnChange restarts its workload.

// expectTTL is how long an expectation lives: a preset validated but not
// seen in the index by then was not stored (rejected by a later admission
// step, or a conflict).
const expectTTL = 2 * time.Second

var admissionWaits = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "podpreset_admission_waits_total",
	Help: "Pod admissions that waited for a preset validated a moment before to reach the index, by outcome: arrived, or timeout.",
}, []string{"outcome"})

func init() {
	metrics.Registry.MustRegister(admissionWaits)
	admissionWaits.WithLabelValues("arrived")
	admissionWaits.WithLabelValues("timeout")
}

// expectation is a preset validated and not yet in the index.
type expectation struct {
	hash  string
	until time.Time
}

// Expect notes that a preset with this content (presets.ContentHash) was
// just validated, so that pods admitted in its namespace wait for it.
func (s *Store) Expect(k Key, hash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.published[k]; p != nil && p.ContentHash() == hash {
		return // an update that changes nothing injected
	}
	if s.expected == nil {
		s.expected = map[Key]expectation{}
	}
	s.expected[k] = expectation{hash: hash, until: time.Now().Add(expectTTL)}
	s.expecting.Store(int32(len(s.expected)))
}

// settle drops the expectations the published index meets, and the
// expired ones; s.mu is held.
func (s *Store) settle(now time.Time) {
	for k, e := range s.expected {
		if p := s.published[k]; p != nil && p.ContentHash() == e.hash || now.After(e.until) {
			delete(s.expected, k)
		}
	}
	s.expecting.Store(int32(len(s.expected)))
}

// awaited says whether a preset expected in a pod's namespace is not in
// the index yet, and returns the channel closed at the next rebuild.
func (s *Store) awaited(ns string) (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.settle(now)
	for k := range s.expected {
		if k.Kind == v1alpha1.KindClusterPodPreset || k.Namespace == ns {
			return true, s.rebuilt
		}
	}
	return false, nil
}

// WaitFor waits, at most max, until no preset validated by this replica in
// the last moment for the pod's namespace is missing from the index. It
// costs one atomic load when nothing is expected.
func (s *Store) WaitFor(ctx context.Context, ns string, max time.Duration) {
	if max <= 0 || s.expecting.Load() == 0 {
		return
	}
	timer := time.NewTimer(max)
	defer timer.Stop()
	for {
		pending, rebuilt := s.awaited(ns)
		if !pending {
			admissionWaits.WithLabelValues("arrived").Inc()
			return
		}
		select {
		case <-rebuilt:
		case <-timer.C:
			admissionWaits.WithLabelValues("timeout").Inc()
			return
		case <-ctx.Done():
			return
		}
	}
}
