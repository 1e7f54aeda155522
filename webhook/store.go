package webhook

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/admissionpolicy"
	"github.com/podpreset/podpreset/presets/policy"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Key names a preset in the store: its kind, namespace (empty for a
// ClusterPodPreset) and name.
type Key struct {
	Kind string
	types.NamespacedName
}

// String renders the key as Kind/namespace/name, or Kind/name for a
// ClusterPodPreset.
func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind + "/" + k.Name
	}
	return k.Kind + "/" + k.Namespace + "/" + k.Name
}

// Store holds the presets the pod mutator reads, each loaded with
// presets.Load: validated, compiled, and checked against the tenancy of
// its sources and the PodPresetPolicies. A preset that fails a check stays
// in the index, refused, so that the mutator can say why a pod did not get
// it; one that does not compile is dropped.
//
// Informer events load one preset each and mark the store dirty; one
// goroutine rebuilds the index from all loaded presets and publishes it
// atomically, so a burst of events (the initial list of thousands of
// presets) costs a few rebuilds, and admission reads the current index
// without a lock. A change of policy loads every preset again; a change of
// a namespace's labels, that namespace's PodPresets (policies select
// namespaces by label). The loop is a debounce, not a work queue: loading
// is pure and cannot fail for a reason that retrying would cure.
type Store struct {
	// Tenancy is the sources' tenancy check; nil checks none.
	Tenancy presets.Check
	// LiveNamespaces, when set, is read for the labels of a namespace the
	// cache has not seen yet: one created a moment before its presets
	// (kubectl apply of both at once) is judged by the PodPresetPolicies
	// its labels select, not by those that select a namespace without
	// labels.
	LiveNamespaces client.Reader
	// PolicyLayout, when set, has each rebuild arrange the presets as
	// compiled admission policies would serve them (Layout), leaving out
	// the namespaces listed (the webhook's own).
	PolicyLayout []string
	layout       atomic.Pointer[admissionpolicy.Layout]
	mu           sync.Mutex
	compiled     map[Key]*presets.Preset
	dirty        chan struct{}
	set          atomic.Pointer[presets.Set]
	policies     atomic.Pointer[policy.Set]
	ready        atomic.Bool
	readyCh      chan struct{}
	cache        client.Reader // the manager's cache, once Watch has it
	// pending are the presets loaded or dropped since the last rebuild.
	pending map[Key]bool

	lmu       sync.Mutex
	listeners map[int]func([]Key)
	nextID    int

	// published are the presets of the current index; expected the ones
	// validated and not in it yet (expect.go); rebuilt is closed at the
	// next rebuild. All three under mu.
	published map[Key]*presets.Preset
	expected  map[Key]expectation
	expecting atomic.Int32
	rebuilt   chan struct{}
}

// Subscribe calls f, after each rebuild of the index, with the presets
// loaded or dropped since the one before (the status controller reports
// the verdict, the inventory counts pods again); f must not block. cancel
// stops the calls.
func (s *Store) Subscribe(f func([]Key)) (cancel func()) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.listeners == nil {
		s.listeners = map[int]func([]Key){}
	}
	id := s.nextID
	s.nextID++
	s.listeners[id] = f
	return func() {
		s.lmu.Lock()
		defer s.lmu.Unlock()
		delete(s.listeners, id)
	}
}

// NewStore returns an empty store; Set returns an empty set until Run has
// built the first index.
func NewStore() *Store {
	s := &Store{compiled: map[Key]*presets.Preset{}, dirty: make(chan struct{}, 1), rebuilt: make(chan struct{}), readyCh: make(chan struct{})}
	s.set.Store(presets.NewSet())
	s.policies.Store(&policy.Set{})
	return s
}

// Set returns the current index.
func (s *Store) Set() *presets.Set { return s.set.Load() }

// Get returns the loaded preset, or nil.
func (s *Store) Get(k Key) *presets.Preset {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.compiled[k]
}

// Ready says whether the store holds every preset the informers had listed
// when it started.
func (s *Store) Ready() bool { return s.ready.Load() }

// WhenReady is closed once the store is Ready.
func (s *Store) WhenReady() <-chan struct{} { return s.readyCh }

// Checks returns what a preset must pass now: the tenancy, and the
// policies as the store holds them.
func (s *Store) Checks() []presets.Check {
	checks := []presets.Check{&policy.Checker{Policies: s.policies.Load(), Namespaces: s.namespaceLabels}}
	if s.Tenancy != nil {
		checks = append(checks, s.Tenancy)
	}
	return checks
}

// namespaceLabels reads a namespace's labels from the cache, or from the
// API server (LiveNamespaces) when the cache has not seen the namespace
// yet; nil when neither has it.
func (s *Store) namespaceLabels(name string) map[string]string {
	if s.cache == nil {
		return nil
	}
	var ns corev1.Namespace
	err := s.cache.Get(context.Background(), client.ObjectKey{Name: name}, &ns)
	if apierrors.IsNotFound(err) && s.LiveNamespaces != nil {
		namespaceReads.Inc()
		ctx, cancel := context.WithTimeout(context.Background(), DefaultLiveReadTimeout)
		defer cancel()
		err = s.LiveNamespaces.Get(ctx, client.ObjectKey{Name: name}, &ns)
	}
	if err != nil {
		return nil
	}
	return ns.Labels
}

// Load loads a preset into the store, or drops it when it does not compile.
func (s *Store) Load(obj v1alpha1.Object) (*presets.Preset, error) {
	k := Key{Kind: obj.PresetKind(), NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}}
	p, errs := presets.Load(obj, s.Checks()...)
	if p == nil {
		s.Delete(k)
		return nil, errs.ToAggregate()
	}
	s.mu.Lock()
	s.compiled[k] = p
	s.mu.Unlock()
	s.markDirty(k)
	return p, nil
}

// Delete removes a preset.
func (s *Store) Delete(k Key) {
	s.mu.Lock()
	delete(s.compiled, k)
	s.mu.Unlock()
	s.markDirty(k)
}

func (s *Store) markDirty(k Key) {
	s.mu.Lock()
	if s.pending == nil {
		s.pending = map[Key]bool{}
	}
	s.pending[k] = true
	s.mu.Unlock()
	select {
	case s.dirty <- struct{}{}:
	default: // a rebuild is already due
	}
}

// rebuild indexes every loaded preset and publishes the new index.
func (s *Store) rebuild() {
	s.mu.Lock()
	all := make([]*presets.Preset, 0, len(s.compiled))
	for _, p := range s.compiled {
		all = append(all, p)
	}
	changed := slices.Collect(maps.Keys(s.pending))
	s.pending = nil
	published := maps.Clone(s.compiled)
	s.mu.Unlock()
	s.set.Store(presets.NewSet(all...))
	if s.PolicyLayout != nil {
		s.layout.Store(admissionpolicy.NewLayout(all, s.PolicyLayout...))
	}
	s.mu.Lock()
	s.published = published
	s.settle(time.Now())
	close(s.rebuilt)
	s.rebuilt = make(chan struct{})
	s.mu.Unlock()
	presetsCached.Set(float64(len(all)))
	if len(changed) == 0 {
		return
	}
	s.lmu.Lock()
	fs := slices.Collect(maps.Values(s.listeners))
	s.lmu.Unlock()
	for _, f := range fs {
		f(changed)
	}
}

// Layout returns how compiled admission policies serve the presets of the
// current index; nil unless PolicyLayout is set.
func (s *Store) Layout() *admissionpolicy.Layout { return s.layout.Load() }

// Presets returns the presets of the current index by key, for the
// inventory; the map is shared and must not be changed.
func (s *Store) Presets() map[Key]*presets.Preset {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.published
}

// rebuildPace is how many times a rebuild's own duration Run waits before
// the next one: a rebuild costs in proportion to the presets held (about
// 10 ms at 10,000), and a burst of changes (thousands of presets applied at
// once) would otherwise have rebuilds run back to back, a whole core for
// the burst's length. Paced, rebuilds take at most a fifth of one, and a
// change waits at most four rebuilds' time longer to reach the index.
var rebuildPace = 4

// Run rebuilds the index whenever presets change, until ctx ends.
func (s *Store) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.dirty:
		}
		start := time.Now()
		s.rebuild()
		if pause := time.Duration(rebuildPace) * time.Since(start); pause >= time.Millisecond {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// Watch registers event handlers on the cache's PodPreset,
// ClusterPodPreset, PodPresetPolicy and Namespace informers, waits for them
// to sync, builds the first index and marks the store ready. Call Run too.
func (s *Store) Watch(ctx context.Context, c cache.Cache) error {
	s.cache = c
	log := logf.FromContext(ctx).WithName("presets")
	load := func(obj v1alpha1.Object) {
		if _, err := s.Load(obj); err != nil {
			log.Error(err, "preset does not compile; it is not applied", "kind", obj.PresetKind(), "preset", klog.KObj(obj))
		}
	}
	handle := func(obj any, deleted bool) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj, deleted = d.Obj, true
		}
		switch o := obj.(type) {
		case v1alpha1.Object:
			if deleted {
				s.Delete(Key{Kind: o.PresetKind(), NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}})
			} else {
				load(o)
			}
		case *v1alpha1.PodPresetPolicy:
			s.reloadPolicies(ctx, log)
		case *corev1.Namespace:
			s.reloadNamespace(ctx, o.Name, log)
		}
	}
	handlers := toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { handle(obj, false) },
		UpdateFunc: func(old, obj any) {
			// The status controller writes pod counts and conditions
			// as pods come and go: a preset whose compiled form they do
			// not change is not loaded again, nor the index rebuilt.
			if a, ok := old.(v1alpha1.Object); ok {
				if b, ok := obj.(v1alpha1.Object); ok && presets.SameInputs(a, b) {
					return
				}
			}
			handle(obj, false)
		},
		DeleteFunc: func(obj any) { handle(obj, true) },
	}
	nsHandlers := toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, obj any) {
			o, n := old.(*corev1.Namespace), obj.(*corev1.Namespace)
			if o != nil && n != nil && !maps.Equal(o.Labels, n.Labels) {
				handle(obj, false)
			}
		},
	}
	// Policies first: the presets listed next are loaded against them.
	for _, w := range []struct {
		obj client.Object
		h   toolscache.ResourceEventHandler
	}{{&v1alpha1.PodPresetPolicy{}, handlers}, {&corev1.Namespace{}, nsHandlers}, {&v1alpha1.PodPreset{}, handlers}, {&v1alpha1.ClusterPodPreset{}, handlers}} {
		inf, err := c.GetInformer(ctx, w.obj)
		if err != nil {
			return fmt.Errorf("getting the informer for %T: %w", w.obj, err)
		}
		reg, err := inf.AddEventHandler(w.h)
		if err != nil {
			return fmt.Errorf("watching %T: %w", w.obj, err)
		}
		if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
			return fmt.Errorf("waiting for the %T informer to sync: %w", w.obj, ctx.Err())
		}
	}
	// The policies may have changed while presets were listed.
	s.reloadPolicies(ctx, log)
	s.rebuild()
	s.ready.Store(true)
	close(s.readyCh)
	log.Info("preset index ready", "presets", s.Set().Len(), "policies", s.policies.Load().Len())
	return nil
}

// reloadPolicies compiles the policies the cache holds and loads every
// preset again against them.
func (s *Store) reloadPolicies(ctx context.Context, log logr.Logger) {
	var list v1alpha1.PodPresetPolicyList
	if err := s.cache.List(ctx, &list); err != nil {
		log.Error(err, "listing PodPresetPolicies; the previous ones stay in force")
		return
	}
	set, err := policy.NewSet(list.Items...)
	if err != nil {
		log.Error(err, "a PodPresetPolicy selects no namespace")
	}
	s.policies.Store(set)
	s.reload(ctx, log, "")
}

// reloadNamespace loads a namespace's PodPresets again.
func (s *Store) reloadNamespace(ctx context.Context, ns string, log logr.Logger) {
	s.reload(ctx, log, ns)
}

// reload loads the presets the cache holds again: the PodPresets of
// namespace ns, or when ns is empty, every preset.
func (s *Store) reload(ctx context.Context, log logr.Logger, ns string) {
	var pps v1alpha1.PodPresetList
	if err := s.cache.List(ctx, &pps, client.InNamespace(ns)); err != nil {
		log.Error(err, "listing PodPresets to check them again")
	}
	for i := range pps.Items {
		if _, err := s.Load(&pps.Items[i]); err != nil {
			log.Error(err, "preset does not compile; it is not applied", "kind", v1alpha1.KindPodPreset, "preset", klog.KObj(&pps.Items[i]))
		}
	}
	if ns != "" {
		return
	}
	var cpps v1alpha1.ClusterPodPresetList
	if err := s.cache.List(ctx, &cpps); err != nil {
		log.Error(err, "listing ClusterPodPresets to check them again")
	}
	for i := range cpps.Items {
		if _, err := s.Load(&cpps.Items[i]); err != nil {
			log.Error(err, "preset does not compile; it is not applied", "kind", v1alpha1.KindClusterPodPreset, "preset", klog.KObj(&cpps.Items[i]))
		}
	}
}
