package sources

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podpreset/podpreset/presets"
)

// Snapshot is what is known of a source: its last good values and its last
// error. Values are kept through errors: a source that goes down leaves the
// last good values in place.
type Snapshot struct {
	// Has says a read succeeded at least once since the process started.
	Has bool
	// Exists is false for a Consul key or a Vault secret that is not
	// there (a prefix always exists, perhaps empty).
	Exists bool
	// Data: for a Consul key, its value under ""; for a prefix, every key
	// relative to the prefix; for a Vault secret, its fields.
	Data    map[string][]byte
	Version string
	// SyncedAt is when the values were last read.
	SyncedAt time.Time
	// Err is the last read's error, failing since ErrSince.
	Err      error
	ErrSince time.Time
}

// Hub keeps the values of every Consul key and prefix and Vault secret that
// some preset reads: one blocking query loop per Consul source, one refresh
// loop per Vault secret, shared by every preset that reads it. It calls the
// notify function given to Start with the presets that read a source when
// its values or its error state change.
type Hub struct {
	Consul  Consul
	Vault   Vault
	Refresh time.Duration // how often a Vault secret is read again (1m when 0)
	// Backoff is the first delay after a failed read (500ms when 0); it
	// doubles up to MaxBackoff (10s when 0).
	Backoff, MaxBackoff time.Duration
	// Log receives a line per change (at V(1)): the source and its
	// version, never a value.
	Log logr.Logger

	mu      sync.Mutex
	ctx     context.Context
	notify  func(presets []types.NamespacedName)
	watches map[string]*watch
	wants   map[types.NamespacedName]sets.Set[string]
}

type watch struct {
	src    presets.Source
	cancel context.CancelFunc
	snap   Snapshot
	users  sets.Set[types.NamespacedName]
}

// Start gives the hub the context its loops run in (they stop with it) and
// the function it calls with the presets whose sources changed, which must
// not block (the controller adds them to its work queue).
func (h *Hub) Start(ctx context.Context, notify func(presets []types.NamespacedName)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ctx, h.notify = ctx, notify
	h.watches = map[string]*watch{}
	h.wants = map[types.NamespacedName]sets.Set[string]{}
}

// Want records that a preset reads these sources (and no others), starts
// loops for new ones, stops loops nobody reads any more, and returns the
// current snapshots by source ID. Before Start, it reads nothing and
// returns no snapshot.
func (h *Hub) Want(preset types.NamespacedName, srcs []presets.Source) map[string]Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx == nil {
		return map[string]Snapshot{}
	}
	defer h.countWatches()
	ids := sets.New[string]()
	out := make(map[string]Snapshot, len(srcs))
	for _, s := range srcs {
		id := s.ID()
		ids.Insert(id)
		w := h.watches[id]
		if w == nil {
			ctx, cancel := context.WithCancel(h.ctx)
			w = &watch{src: s, cancel: cancel, users: sets.New[types.NamespacedName]()}
			h.watches[id] = w
			go h.loop(ctx, w)
		}
		w.users.Insert(preset)
		out[id] = w.snap
	}
	for id := range h.wants[preset] {
		if ids.Has(id) {
			continue
		}
		if w := h.watches[id]; w != nil {
			w.users.Delete(preset)
			if w.users.Len() == 0 {
				w.cancel()
				delete(h.watches, id)
			}
		}
	}
	if ids.Len() == 0 {
		delete(h.wants, preset)
	} else {
		h.wants[preset] = ids
	}
	return out
}

// Watches is how many loops run, for tests.
func (h *Hub) Watches() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watches)
}

// countWatches sets the podpreset_source_watches gauge; h.mu is held.
func (h *Hub) countWatches() {
	n := map[string]int{"consul": 0, "vault": 0}
	for _, w := range h.watches {
		n[metricSource(w.src.Kind)]++
	}
	for k, v := range n {
		sourceWatches.WithLabelValues(k).Set(float64(v))
	}
}

// metricSource is the source label of a source's metrics.
func metricSource(k presets.SourceKind) string {
	if k == presets.SourceConsulKey || k == presets.SourceConsulPrefix {
		return "consul"
	}
	return "vault"
}

// update stores the outcome of a read and notifies the readers when the
// values or the error state changed.
func (h *Hub) update(w *watch, next Snapshot, err error) {
	h.mu.Lock()
	prev := w.snap
	now := time.Now()
	if err != nil {
		next = prev
		next.Err = err
		if prev.Err == nil {
			next.ErrSince = now
		}
	} else {
		next.Has, next.SyncedAt = true, now
	}
	w.snap = next
	changed := (prev.Err == nil) != (next.Err == nil) ||
		(prev.Err != nil && next.Err != nil && prev.Err.Error() != next.Err.Error()) ||
		(err == nil && (!prev.Has || prev.Version != next.Version || prev.Exists != next.Exists || !sameData(prev.Data, next.Data)))
	users := w.users.UnsortedList()
	notify := h.notify
	h.mu.Unlock()
	result := "unchanged"
	switch {
	case err != nil:
		result = "error"
	case changed:
		result = "changed"
	}
	sourceReads.WithLabelValues(metricSource(w.src.Kind), result).Inc()
	if changed && h.Log.GetSink() != nil {
		h.Log.V(1).Info("source changed", "source", w.src.ID(), "version", next.Version, "error", errString(next.Err), "presets", len(users))
	}
	if changed && notify != nil {
		notify(users)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func sameData(a, b map[string][]byte) bool {
	return maps.EqualFunc(a, b, func(x, y []byte) bool { return bytes.Equal(x, y) })
}

func (h *Hub) loop(ctx context.Context, w *watch) {
	first, most := h.Backoff, h.MaxBackoff
	if first <= 0 {
		first = 500 * time.Millisecond
	}
	if most < first {
		most = max(first, 10*time.Second)
	}
	newBackoff := func() wait.Backoff {
		return wait.Backoff{Duration: first, Factor: 2, Cap: most, Steps: 1 << 30}
	}
	backoff := newBackoff()
	sleep := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	if w.src.Kind == presets.SourceVaultPKI {
		return // certificates are the controller's own
	}
	var index uint64
	for ctx.Err() == nil {
		snap, next, err := h.read(ctx, w.src, index)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// The server may come back with a lower index (a restore, a
			// new cluster): the next query starts over without waiting.
			index = 0
			h.update(w, Snapshot{}, err)
			sleep(backoff.Step())
			continue
		}
		backoff = newBackoff()
		h.update(w, snap, nil)
		if w.src.Kind == presets.SourceVault {
			refresh := h.Refresh
			if refresh <= 0 {
				refresh = time.Minute
			}
			sleep(refresh) // no blocking queries in Vault
		} else {
			index = nextIndex(index, next)
		}
	}
}

// read reads a source once: a Consul key or prefix with a blocking query
// on index, or a Vault secret.
func (h *Hub) read(ctx context.Context, src presets.Source, index uint64) (Snapshot, uint64, error) {
	if err := validSourcePath(src); err != nil {
		return Snapshot{}, 0, err // the last line of defence: no request at all
	}
	consul := src.Kind == presets.SourceConsulKey || src.Kind == presets.SourceConsulPrefix
	if consul && h.Consul == nil || src.Kind == presets.SourceVault && h.Vault == nil {
		return Snapshot{}, 0, fmt.Errorf("%s: not configured in --sources-config", src.ID())
	}
	switch src.Kind {
	case presets.SourceConsulKey:
		kv, next, err := h.Consul.Key(ctx, src.Path, index)
		if err != nil || kv == nil {
			return Snapshot{Version: "absent"}, next, err
		}
		return Snapshot{Exists: true, Data: map[string][]byte{"": kv.Value}, Version: strconv.FormatUint(kv.ModifyIndex, 10)}, next, nil
	case presets.SourceConsulPrefix:
		kvs, next, err := h.Consul.Prefix(ctx, src.Path, index)
		if err != nil {
			return Snapshot{}, 0, err
		}
		snap := Snapshot{Exists: true, Data: make(map[string][]byte, len(kvs)), Version: strconv.FormatUint(next, 10)}
		for _, kv := range kvs {
			// A key outside the prefix is never taken, whatever the
			// server answered.
			if rel, ok := strings.CutPrefix(kv.Key, src.Path); ok && rel != "" && !strings.HasSuffix(rel, "/") {
				snap.Data[rel] = kv.Value
			}
		}
		return snap, next, nil
	case presets.SourceVault:
		s, err := h.Vault.Read(ctx, src.Path)
		if err != nil || s == nil {
			return Snapshot{Version: "absent"}, 0, err
		}
		return Snapshot{Exists: true, Data: s.Data, Version: s.Version}, 0, nil
	}
	return Snapshot{}, 0, fmt.Errorf("%s is not read by the hub", src.ID())
}

// nextIndex is the wait index for the next blocking query, as Consul asks
// clients to compute it: an index that goes backwards (a restored or
// restarted server) resets the wait to 0, so the next query returns at once
// with the new index; an index of 0 (which Consul never means to send)
// becomes 1, so the loop blocks instead of spinning.
func nextIndex(prev, next uint64) uint64 {
	switch {
	case next < prev:
		return 0
	case next == 0:
		return 1
	}
	return next
}
