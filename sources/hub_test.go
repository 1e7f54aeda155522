package sources

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/podpreset/podpreset/presets"
)

// fakeConsul is an in-memory Consul KV with blocking queries.
type fakeConsul struct {
	mu      sync.Mutex
	index   uint64
	kv      map[string]KV
	down    bool
	changed chan struct{} // closed and replaced on every change
}

func newFakeConsul() *fakeConsul {
	return &fakeConsul{index: 1, kv: map[string]KV{}, changed: make(chan struct{})}
}

func (f *fakeConsul) put(k, v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index++
	f.kv[k] = KV{Key: k, Value: []byte(v), ModifyIndex: f.index}
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeConsul) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
	close(f.changed)
	f.changed = make(chan struct{})
}

// wait blocks while the index is at most waitIndex, as Consul does.
func (f *fakeConsul) wait(ctx context.Context, waitIndex uint64) error {
	for {
		f.mu.Lock()
		down, idx, ch := f.down, f.index, f.changed
		f.mu.Unlock()
		if down {
			return errors.New("consul unreachable: connection refused")
		}
		if waitIndex == 0 || idx > waitIndex {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

func (f *fakeConsul) Key(ctx context.Context, key string, waitIndex uint64) (*KV, uint64, error) {
	if err := f.wait(ctx, waitIndex); err != nil {
		return nil, 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if kv, ok := f.kv[key]; ok {
		return &kv, f.index, nil
	}
	return nil, f.index, nil
}

func (f *fakeConsul) Prefix(ctx context.Context, prefix string, waitIndex uint64) ([]KV, uint64, error) {
	if err := f.wait(ctx, waitIndex); err != nil {
		return nil, 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []KV
	for k, kv := range f.kv {
		if strings.HasPrefix(k, prefix) {
			out = append(out, kv)
		}
	}
	return out, f.index, nil
}

// notifications collects the hub's notifications.
type notifications struct {
	ch chan types.NamespacedName
}

func (n *notifications) notify(keys []types.NamespacedName) {
	for _, k := range keys {
		n.ch <- k
	}
}

func (n *notifications) next(t *testing.T) types.NamespacedName {
	t.Helper()
	select {
	case k := <-n.ch:
		return k
	case <-time.After(5 * time.Second):
		t.Fatal("no notification within 5s")
		return types.NamespacedName{}
	}
}

func newTestHub(t *testing.T, c Consul) (*Hub, *notifications) {
	n := &notifications{ch: make(chan types.NamespacedName, 100)}
	h := &Hub{Consul: c, Refresh: 10 * time.Millisecond, Backoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h.Start(ctx, n.notify)
	return h, n
}

func TestHubFollowsConsulAndKeepsValuesThroughOutages(t *testing.T) {
	fc := newFakeConsul()
	fc.put("apps/shop/host", "db-1")
	h, n := newTestHub(t, fc)
	shop := types.NamespacedName{Namespace: "shop", Name: "db"}
	src := presets.Source{Kind: presets.SourceConsulKey, Path: "apps/shop/host"}

	if s := h.Want(shop, []presets.Source{src})[src.ID()]; s.Has {
		t.Fatalf("a snapshot before the first read: %+v", s)
	}
	if k := n.next(t); k != shop {
		t.Fatalf("notified %v", k)
	}
	s := h.Want(shop, []presets.Source{src})[src.ID()]
	if !s.Has || !s.Exists || string(s.Data[""]) != "db-1" || s.Version != "2" {
		t.Fatalf("after the first read: %+v", s)
	}

	// A change wakes the blocking query.
	fc.put("apps/shop/host", "db-2")
	n.next(t)
	if s := h.Want(shop, []presets.Source{src})[src.ID()]; string(s.Data[""]) != "db-2" || s.Version != "3" {
		t.Fatalf("after a change: %+v", s)
	}

	// Down: the error is reported once, the values stay, the error's
	// start stays put through the retries.
	fc.setDown(true)
	n.next(t)
	down := h.Want(shop, []presets.Source{src})[src.ID()]
	if down.Err == nil || string(down.Data[""]) != "db-2" || down.ErrSince.IsZero() {
		t.Fatalf("while Consul is down: %+v", down)
	}
	time.Sleep(50 * time.Millisecond) // several retries
	if again := h.Want(shop, []presets.Source{src})[src.ID()]; !again.ErrSince.Equal(down.ErrSince) {
		t.Errorf("the error's start moved from %s to %s", down.ErrSince, again.ErrSince)
	}
	select {
	case k := <-n.ch:
		t.Errorf("notified %v again for the same error", k)
	default:
	}

	// Up again: the error clears.
	fc.setDown(false)
	n.next(t)
	if s := h.Want(shop, []presets.Source{src})[src.ID()]; s.Err != nil || string(s.Data[""]) != "db-2" {
		t.Errorf("after Consul came back: %+v", s)
	}
}

func TestHubSharesAndStopsLoops(t *testing.T) {
	fc := newFakeConsul()
	fc.put("shared/a", "1")
	h, n := newTestHub(t, fc)
	a, b := types.NamespacedName{Namespace: "x", Name: "a"}, types.NamespacedName{Namespace: "y", Name: "b"}
	key := presets.Source{Kind: presets.SourceConsulKey, Path: "shared/a"}
	prefix := presets.Source{Kind: presets.SourceConsulPrefix, Path: "shared/"}
	h.Want(a, []presets.Source{key, prefix})
	h.Want(b, []presets.Source{key})
	if w := h.Watches(); w != 2 {
		t.Errorf("%d loops for two sources", w)
	}
	// Both readers of the key hear of a change.
	for range 3 { // a (key, prefix) and b (key) on the first reads
		n.next(t)
	}
	fc.put("shared/a", "2")
	got := map[types.NamespacedName]int{}
	for range 3 {
		got[n.next(t)]++
	}
	if got[a] != 2 || got[b] != 1 {
		t.Errorf("notifications %v", got)
	}
	// A prefix's keys are relative, folders left out.
	fc.put("shared/dir/", "")
	fc.put("shared/dir/file", "f")
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := h.Want(a, []presets.Source{key, prefix})[prefix.ID()]
		if string(s.Data["dir/file"]) == "f" {
			if _, ok := s.Data["dir/"]; ok || string(s.Data["a"]) != "2" {
				t.Errorf("prefix data %v", s.Data)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prefix data %v", s.Data)
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.Want(a, nil)
	if w := h.Watches(); w != 1 {
		t.Errorf("%d loops after a stopped reading the prefix", w)
	}
	h.Want(b, nil)
	if w := h.Watches(); w != 0 {
		t.Errorf("%d loops after nobody reads anything", w)
	}
}

// fakeVault serves KV secrets from memory; it fails the test on a PKI call.
type fakeVault struct {
	t       *testing.T
	mu      sync.Mutex
	secrets map[string]*Secret
	reads   int
}

func (f *fakeVault) Read(_ context.Context, path string) (*Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.secrets[path], nil
}

func (f *fakeVault) Issue(context.Context, string, string, PKIRequest) (*Certificate, error) {
	f.t.Error("unexpected Vault PKI call")
	return nil, errors.New("no PKI here")
}

func (f *fakeVault) CA(context.Context, string) ([]byte, error) {
	f.t.Error("unexpected Vault PKI call")
	return nil, errors.New("no PKI here")
}

func TestHubRefreshesVault(t *testing.T) {
	fv := &fakeVault{t: t, secrets: map[string]*Secret{"secret/data/shop/db": {Data: map[string][]byte{"password": []byte("x")}, Version: "1"}}}
	h, n := newTestHub(t, nil)
	h.Vault = fv
	shop := types.NamespacedName{Namespace: "shop", Name: "db"}
	src := presets.Source{Kind: presets.SourceVault, Path: "secret/data/shop/db"}
	h.Want(shop, []presets.Source{src})
	n.next(t)
	fv.mu.Lock()
	fv.secrets[src.Path] = &Secret{Data: map[string][]byte{"password": []byte("y")}, Version: "2"}
	fv.mu.Unlock()
	n.next(t)
	if s := h.Want(shop, []presets.Source{src})[src.ID()]; s.Version != "2" || string(s.Data["password"]) != "y" {
		t.Errorf("after a new version: version %s", s.Version)
	}
	// Unchanged reads notify nobody.
	time.Sleep(50 * time.Millisecond)
	select {
	case <-n.ch:
		t.Error("notified for an unchanged secret")
	default:
	}
	// It keeps reading, at the refresh interval (bounded wait).
	deadline := time.Now().Add(5 * time.Second)
	for {
		fv.mu.Lock()
		reads := fv.reads
		fv.mu.Unlock()
		if reads >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reads in 5s at a 10ms refresh", reads)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNextIndex(t *testing.T) {
	for _, tc := range []struct{ prev, next, want uint64 }{
		{prev: 0, next: 17, want: 17},
		{prev: 17, next: 17, want: 17}, // the wait ended with no change
		{prev: 17, next: 18, want: 18},
		{prev: 17, next: 5, want: 0}, // a new server: start over at once
		{prev: 0, next: 0, want: 1},  // never spin on 0
	} {
		if got := nextIndex(tc.prev, tc.next); got != tc.want {
			t.Errorf("nextIndex(%d, %d) = %d, want %d", tc.prev, tc.next, got, tc.want)
		}
	}
}
