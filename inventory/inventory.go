// Package inventory knows, at any time, what every pod has of the presets
// that select it: applied (the current version), stale (an older version,
// or older Consul or Vault values), missed (created after the preset, but
// without it: the webhook was down, or its cache did not hold the preset
// yet) or predating (created before the preset).
//
// It runs on the webhook's leader (the webhook binary, not a Deployment of
// its own): it classifies pods with the very index the webhook admits them
// with (webhook.Store), so the two never disagree on what a preset selects,
// and nothing is compiled twice. It watches pods as metadata only
// (PartialObjectMetadata: labels, annotations, owners), which keeps its
// memory flat per pod, and classifies a pod with presets.Classify, whose
// cost is what the pod's matches cost, whatever the number of presets. A
// preset change classifies again the pods of its namespace (every pod, for
// a ClusterPodPreset).
//
// The counts reach the presets' status through webhook.StatusController
// (Counts), at most once a second per preset; the totals are the gauge
// podpreset_pods{state}. Rollout (rollout.go) restarts the workloads of
// stale and missed pods for presets that ask for it.
package inventory

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/webhook"
)

var podsGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "podpreset_pods",
	Help: "Pods by what they have of the presets that select them (a pod counts once per preset): applied, stale, missed or predating.",
}, []string{"state"})

func init() {
	metrics.Registry.MustRegister(podsGauge)
	for _, s := range []presets.PodState{presets.StateApplied, presets.StateStale, presets.StateMissed, presets.StatePredating} {
		podsGauge.WithLabelValues(string(s))
	}
}

// maxNamed is how many stale or missed pods a preset's record names (for
// Events and rollouts); the counts have them all.
const maxNamed = 20

// record is what the inventory keeps of one pod.
type record struct {
	meta     presets.PodMeta
	owners   []metav1.OwnerReference
	verdicts []presets.Verdict
}

// Inventory classifies every pod against the presets that select it.
type Inventory struct {
	// Store is the webhook's index of presets.
	Store *webhook.Store
	// OwnNamespace is the webhook's namespace, whose pods are left alone.
	OwnNamespace string
	// Changed is called, at most once a second, with the presets whose
	// counts changed; it must not block.
	Changed func([]webhook.Key)
	// Log is for what goes wrong.
	Log logr.Logger

	// lmu guards pending, the namespaces to classify again; todo wakes
	// Start's loop for them.
	lmu     sync.Mutex
	pending map[string]bool
	todo    chan struct{}

	mu      sync.Mutex
	cache   cache.Cache
	pods    map[types.NamespacedName]*record
	tallies map[webhook.Key]*tally
	dirty   map[webhook.Key]bool
	synced  bool
}

// tally is a preset's counts with the pods behind its stale and missed.
type tally struct {
	counts        v1alpha1.PodCounts
	missed, stale map[types.NamespacedName]bool
}

func (t *tally) add(pod types.NamespacedName, s presets.PodState, d int32) {
	switch s {
	case presets.StateApplied:
		t.counts.Applied += d
	case presets.StateStale:
		t.counts.Stale += d
		mark(&t.stale, pod, d)
	case presets.StateMissed:
		t.counts.Missed += d
		mark(&t.missed, pod, d)
	case presets.StatePredating:
		t.counts.Predating += d
	}
}

func mark(m *map[types.NamespacedName]bool, pod types.NamespacedName, d int32) {
	if *m == nil {
		*m = map[types.NamespacedName]bool{}
	}
	if d > 0 {
		(*m)[pod] = true
	} else {
		delete(*m, pod)
	}
}

// keyOf is the store's key of a preset reference.
func keyOf(r presets.Ref) webhook.Key {
	return webhook.Key{Kind: r.Kind, NamespacedName: types.NamespacedName{Namespace: r.Namespace, Name: r.Name}}
}

var _ webhook.PodCounter = (*Inventory)(nil)

// Counts returns what the inventory says of a preset (naming at most 20
// of its stale and missed pods); ok is false until the inventory has seen
// every pod.
func (inv *Inventory) Counts(k webhook.Key) (webhook.PodTally, bool) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if !inv.synced {
		return webhook.PodTally{}, false
	}
	t := inv.tallies[k]
	if t == nil {
		return webhook.PodTally{}, true
	}
	return webhook.PodTally{Counts: t.counts, Missed: firstSorted(t.missed), Stale: firstSorted(t.stale)}, true
}

func firstSorted(m map[types.NamespacedName]bool) []types.NamespacedName {
	out := slices.SortedFunc(maps.Keys(m), func(a, b types.NamespacedName) int {
		if a.Namespace != b.Namespace {
			return strings.Compare(a.Namespace, b.Namespace)
		}
		return strings.Compare(a.Name, b.Name)
	})
	if len(out) > maxNamed {
		out = out[:maxNamed]
	}
	return out
}

// Synced says whether the inventory has seen every pod.
func (inv *Inventory) Synced() bool {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.synced
}

// NeedLeaderElection is true: the leader counts.
func (inv *Inventory) NeedLeaderElection() bool { return true }

// Start watches pods (as metadata) and namespaces, and the store's changes,
// until ctx ends. It counts once the store holds every preset.
func (inv *Inventory) Start(ctx context.Context) error {
	inv.mu.Lock()
	inv.pods = map[types.NamespacedName]*record{}
	inv.tallies = map[webhook.Key]*tally{}
	inv.dirty = map[webhook.Key]bool{}
	inv.mu.Unlock()
	inv.todo = make(chan struct{}, 1)
	select {
	case <-ctx.Done():
		return nil
	case <-inv.Store.WhenReady():
	}
	pods, err := inv.cache.GetInformer(ctx, podMetadata())
	if err != nil {
		return fmt.Errorf("watching pods: %w", err)
	}
	reg, err := pods.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { inv.podChanged(o, false) },
		UpdateFunc: func(_, o any) { inv.podChanged(o, false) },
		DeleteFunc: func(o any) { inv.podChanged(o, true) },
	})
	if err != nil {
		return err
	}
	// The informers outlive this inventory (a leader term ends, the
	// process and its cache go on): its handlers leave with it.
	defer func() { _ = pods.RemoveEventHandler(reg) }()
	nss, err := inv.cache.GetInformer(ctx, &corev1.Namespace{})
	if err != nil {
		return err
	}
	nsReg, err := nss.AddEventHandler(toolscache.ResourceEventHandlerFuncs{UpdateFunc: func(old, o any) {
		if a, b := old.(*corev1.Namespace), o.(*corev1.Namespace); a != nil && b != nil && !maps.Equal(a.Labels, b.Labels) {
			inv.later(b.Name)
		}
	}})
	if err != nil {
		return err
	}
	defer func() { _ = nss.RemoveEventHandler(nsReg) }()
	// The store calls this from its rebuild loop: the work is done here,
	// in Start's loop, not there.
	cancel := inv.Store.Subscribe(func(keys []webhook.Key) {
		for _, k := range keys {
			if k.Kind == v1alpha1.KindClusterPodPreset {
				inv.later("")
				return
			}
		}
		for _, k := range keys {
			inv.later(k.Namespace)
		}
	})
	defer cancel()
	if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return ctx.Err()
	}
	inv.reclassify("") // with every preset the store holds by now
	inv.mu.Lock()
	inv.synced = true
	for k := range inv.tallies {
		inv.dirty[k] = true
	}
	inv.mu.Unlock()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-inv.todo:
			for _, ns := range inv.takeLater() {
				inv.reclassify(ns)
			}
		case <-tick.C:
			inv.flush()
		}
	}
}

// later asks Start's loop to classify a namespace's pods again ("": every
// pod).
func (inv *Inventory) later(ns string) {
	inv.lmu.Lock()
	if inv.pending == nil {
		inv.pending = map[string]bool{}
	}
	inv.pending[ns] = true
	inv.lmu.Unlock()
	select {
	case inv.todo <- struct{}{}:
	default:
	}
}

// takeLater returns the namespaces to classify again: only "" when every
// pod is to be.
func (inv *Inventory) takeLater() []string {
	inv.lmu.Lock()
	defer inv.lmu.Unlock()
	p := inv.pending
	inv.pending = nil
	if p[""] {
		return []string{""}
	}
	return slices.Sorted(maps.Keys(p))
}

// InjectCache gives the inventory the manager's cache.
func (inv *Inventory) InjectCache(c cache.Cache) { inv.cache = c }

// podMetadata is the object the pod informer lists: metadata only.
func podMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	return m
}

// flush hands the presets whose counts changed to Changed, and sets the
// gauges.
func (inv *Inventory) flush() {
	inv.mu.Lock()
	keys := slices.Collect(maps.Keys(inv.dirty))
	clear(inv.dirty)
	var total v1alpha1.PodCounts
	for _, t := range inv.tallies {
		total.Applied += t.counts.Applied
		total.Stale += t.counts.Stale
		total.Missed += t.counts.Missed
		total.Predating += t.counts.Predating
	}
	inv.mu.Unlock()
	podsGauge.WithLabelValues(string(presets.StateApplied)).Set(float64(total.Applied))
	podsGauge.WithLabelValues(string(presets.StateStale)).Set(float64(total.Stale))
	podsGauge.WithLabelValues(string(presets.StateMissed)).Set(float64(total.Missed))
	podsGauge.WithLabelValues(string(presets.StatePredating)).Set(float64(total.Predating))
	if len(keys) > 0 && inv.Changed != nil {
		inv.Changed(keys)
	}
}

// podChanged classifies one pod again.
func (inv *Inventory) podChanged(o any, deleted bool) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o, deleted = d.Obj, true
	}
	m, ok := o.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	key := types.NamespacedName{Namespace: m.Namespace, Name: m.Name}
	if deleted {
		inv.mu.Lock()
		inv.set(key, nil)
		inv.mu.Unlock()
		return
	}
	rec := &record{meta: presets.PodMeta{Labels: m.Labels, Annotations: m.Annotations, Created: m.CreationTimestamp.Time}, owners: m.OwnerReferences}
	set := inv.Store.Set()
	rec.verdicts = inv.classify(m.Namespace, rec.meta, set)
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if now := inv.Store.Set(); now != set {
		// The index changed meanwhile, and a reclassification may have
		// run without this pod's new record: classify it with the new one.
		rec.verdicts = inv.classify(m.Namespace, rec.meta, now)
	}
	inv.set(key, rec)
}

// classify classifies a pod in a namespace.
func (inv *Inventory) classify(ns string, meta presets.PodMeta, set *presets.Set) []presets.Verdict {
	if ns == inv.OwnNamespace && ns != "" {
		return nil
	}
	return presets.Classify(meta, presets.Namespace{Name: ns, Labels: inv.namespaceLabels(ns)}, set)
}

// namespaceLabels reads a namespace's labels from the cache.
func (inv *Inventory) namespaceLabels(name string) map[string]string {
	var ns corev1.Namespace
	if err := inv.cache.Get(context.Background(), client.ObjectKey{Name: name}, &ns); err != nil {
		return map[string]string{corev1.LabelMetadataName: name}
	}
	return ns.Labels
}

// set replaces a pod's record (nil: the pod is gone) and moves the
// counts; inv.mu is held.
func (inv *Inventory) set(key types.NamespacedName, rec *record) {
	if old := inv.pods[key]; old != nil {
		for _, v := range old.verdicts {
			inv.tallyOf(keyOf(v.Preset)).add(key, v.State, -1)
		}
	}
	if rec == nil {
		delete(inv.pods, key)
		return
	}
	inv.pods[key] = rec
	for _, v := range rec.verdicts {
		inv.tallyOf(keyOf(v.Preset)).add(key, v.State, 1)
	}
}

// tallyOf returns a preset's tally, marking it changed; inv.mu is held.
func (inv *Inventory) tallyOf(k webhook.Key) *tally {
	t := inv.tallies[k]
	if t == nil {
		t = &tally{}
		inv.tallies[k] = t
	}
	inv.dirty[k] = true
	return t
}

// reclassify classifies again every pod of a namespace ("": every pod),
// after presets or a namespace's labels changed. Presets that are gone
// lose their tallies.
func (inv *Inventory) reclassify(ns string) {
	set := inv.Store.Set()
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.pods == nil {
		return
	}
	labels := map[string]map[string]string{}
	for key, rec := range inv.pods {
		if ns != "" && key.Namespace != ns {
			continue
		}
		l, ok := labels[key.Namespace]
		if !ok {
			l = inv.namespaceLabels(key.Namespace)
			labels[key.Namespace] = l
		}
		next := &record{meta: rec.meta, owners: rec.owners}
		if key.Namespace != inv.OwnNamespace || key.Namespace == "" {
			next.verdicts = presets.Classify(rec.meta, presets.Namespace{Name: key.Namespace, Labels: l}, set)
		}
		if !slices.Equal(next.verdicts, rec.verdicts) {
			inv.set(key, next)
		}
	}
	known := inv.Store.Presets()
	for k, t := range inv.tallies {
		if _, ok := known[k]; !ok && t.counts == (v1alpha1.PodCounts{}) {
			delete(inv.tallies, k)
		}
	}
}

// Behind is a pod that does not have a preset's current version.
type Behind struct {
	Pod    types.NamespacedName
	State  presets.PodState
	Owners []metav1.OwnerReference
}

// Behind returns every stale and missed pod of a preset, sorted by
// namespace and name.
func (inv *Inventory) Behind(k webhook.Key) []Behind {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	t := inv.tallies[k]
	if t == nil {
		return nil
	}
	out := make([]Behind, 0, len(t.stale)+len(t.missed))
	for state, pods := range map[presets.PodState]map[types.NamespacedName]bool{presets.StateStale: t.stale, presets.StateMissed: t.missed} {
		for p := range pods {
			var owners []metav1.OwnerReference
			if rec := inv.pods[p]; rec != nil {
				owners = rec.owners
			}
			out = append(out, Behind{Pod: p, State: state, Owners: owners})
		}
	}
	slices.SortFunc(out, func(a, b Behind) int {
		if c := strings.Compare(a.Pod.Namespace, b.Pod.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Pod.Name, b.Pod.Name)
	})
	return out
}
