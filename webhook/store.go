package webhook

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Store holds the compiled presets the pod mutator reads. Informer events
// compile one preset each and mark the store dirty; one goroutine rebuilds
// the index from all compiled presets and publishes it atomically, so a
// burst of events (the initial list of thousands of presets) costs a few
// rebuilds, and admission reads the current index without a lock.
type Store struct {
	mu       sync.Mutex
	compiled map[string]*presets.Preset // kind/namespace/name
	dirty    chan struct{}
	set      atomic.Pointer[presets.Set]
	ready    atomic.Bool
}

// NewStore returns an empty store; Set returns an empty set until Run has
// built the first index.
func NewStore() *Store {
	s := &Store{compiled: map[string]*presets.Preset{}, dirty: make(chan struct{}, 1)}
	s.set.Store(presets.NewSet())
	return s
}

// Set returns the current index.
func (s *Store) Set() *presets.Set { return s.set.Load() }

// Ready says whether the store holds every preset the informers had listed
// when it started.
func (s *Store) Ready() bool { return s.ready.Load() }

func storeKey(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

// Put adds or replaces a compiled preset.
func (s *Store) Put(p *presets.Preset) {
	r := p.Ref()
	s.mu.Lock()
	s.compiled[storeKey(r.Kind, r.Namespace, r.Name)] = p
	s.mu.Unlock()
	s.markDirty()
}

// Delete removes a preset.
func (s *Store) Delete(kind, namespace, name string) {
	s.mu.Lock()
	delete(s.compiled, storeKey(kind, namespace, name))
	s.mu.Unlock()
	s.markDirty()
}

func (s *Store) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default: // a rebuild is already due
	}
}

// rebuild indexes every compiled preset and publishes the new index.
func (s *Store) rebuild() {
	s.mu.Lock()
	all := make([]*presets.Preset, 0, len(s.compiled))
	for _, p := range s.compiled {
		all = append(all, p)
	}
	s.mu.Unlock()
	s.set.Store(presets.NewSet(all...))
	presetsCached.Set(float64(len(all)))
}

// Run rebuilds the index whenever presets change, until ctx ends.
func (s *Store) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.dirty:
			s.rebuild()
		}
	}
}

// Watch registers event handlers on the cache's PodPreset and
// ClusterPodPreset informers, waits for them to sync, builds the first
// index and marks the store ready. Call Run too.
func (s *Store) Watch(ctx context.Context, c cache.Cache) error {
	log := logf.FromContext(ctx).WithName("presets")
	handle := func(obj any, deleted bool) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj, deleted = d.Obj, true
		}
		switch o := obj.(type) {
		case *v1alpha1.PodPreset:
			if deleted {
				s.Delete(v1alpha1.KindPodPreset, o.Namespace, o.Name)
				return
			}
			p, err := presets.CompilePodPreset(o)
			s.putOrDrop(log, p, err, v1alpha1.KindPodPreset, o)
		case *v1alpha1.ClusterPodPreset:
			if deleted {
				s.Delete(v1alpha1.KindClusterPodPreset, "", o.Name)
				return
			}
			p, err := presets.CompileClusterPodPreset(o)
			s.putOrDrop(log, p, err, v1alpha1.KindClusterPodPreset, o)
		}
	}
	handlers := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { handle(obj, false) },
		UpdateFunc: func(_, obj any) { handle(obj, false) },
		DeleteFunc: func(obj any) { handle(obj, true) },
	}
	var synced []toolscache.InformerSynced
	for _, obj := range []client.Object{&v1alpha1.PodPreset{}, &v1alpha1.ClusterPodPreset{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("getting the informer for %T: %w", obj, err)
		}
		reg, err := inf.AddEventHandler(handlers)
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		synced = append(synced, reg.HasSynced)
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("waiting for the preset informers to sync: %w", ctx.Err())
	}
	s.rebuild()
	s.ready.Store(true)
	log.Info("preset index ready", "presets", s.Set().Len())
	return nil
}

// putOrDrop stores a compiled preset, or drops a preset that does not
// compile (the validating webhook keeps such presets out; one created while
// it was down must not keep its old version in force).
func (s *Store) putOrDrop(log interface {
	Error(error, string, ...any)
}, p *presets.Preset, err error, kind string, obj client.Object) {
	if err != nil {
		log.Error(err, "preset does not compile; it is not applied", "kind", kind, "preset", klog.KObj(obj))
		s.Delete(kind, obj.GetNamespace(), obj.GetName())
		return
	}
	s.Put(p)
}
