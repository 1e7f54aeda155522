package e2e

import (
	"slices"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/podpreset/podpreset/test/cluster"
)

// TestSourceClientsTalkToTheServers checks that the current consul/api and
// vault/api client modules work against the Consul v1.13.9 and Vault v1.13.0
// servers built in bin/: the calls the sources controller will make (Consul
// KV reads, prefix lists and blocking queries; Vault KV v1 and v2 reads and
// KV version detection).
func TestSourceClientsTalkToTheServers(t *testing.T) {
	ctx := t.Context()
	t.Run("consul", func(t *testing.T) {
		c, err := cluster.StartConsul(ctx, cp.Root, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Stop)
		cfg := consulapi.DefaultConfig()
		cfg.Address = c.Addr
		cl, err := consulapi.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		kv := cl.KV()
		for k, v := range map[string]string{"apps/shop/LOG_FORMAT": "json", "apps/shop/TIMEOUT": "30s", "apps/other/X": "1"} {
			if _, err := kv.Put(&consulapi.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
				t.Fatal(err)
			}
		}
		pair, meta, err := kv.Get("apps/shop/LOG_FORMAT", (&consulapi.QueryOptions{}).WithContext(ctx))
		if err != nil || pair == nil || string(pair.Value) != "json" {
			t.Fatalf("get: %v %v", pair, err)
		}
		pairs, _, err := kv.List("apps/shop/", nil)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, p := range pairs {
			keys = append(keys, p.Key)
		}
		if !slices.Equal(keys, []string{"apps/shop/LOG_FORMAT", "apps/shop/TIMEOUT"}) {
			t.Errorf("list apps/shop/: %v", keys)
		}
		// A blocking query returns when the key changes.
		errs := make(chan error, 1)
		go func() {
			time.Sleep(200 * time.Millisecond)
			_, err := kv.Put(&consulapi.KVPair{Key: "apps/shop/LOG_FORMAT", Value: []byte("text")}, nil)
			errs <- err
		}()
		changed, meta2, err := kv.Get("apps/shop/LOG_FORMAT", (&consulapi.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 20 * time.Second}).WithContext(ctx))
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if err != nil || changed == nil || string(changed.Value) != "text" || meta2.LastIndex <= meta.LastIndex || changed.ModifyIndex <= pair.ModifyIndex {
			t.Errorf("the blocking query returned %v (index %d after %d): %v", changed, meta2.LastIndex, meta.LastIndex, err)
		}
	})
	t.Run("vault", func(t *testing.T) {
		v, err := cluster.StartVault(ctx, cp.Root, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.Stop)
		cfg := vaultapi.DefaultConfig()
		cfg.Address = v.Addr
		cl, err := vaultapi.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cl.SetToken(v.RootToken)
		// KV v2, mounted at secret/ in dev mode.
		if _, err := cl.KVv2("secret").Put(ctx, "shop/db", map[string]any{"password": "fake-for-tests"}); err != nil {
			t.Fatal(err)
		}
		s, err := cl.KVv2("secret").Get(ctx, "shop/db")
		if err != nil || s.Data["password"] != "fake-for-tests" || s.VersionMetadata == nil || s.VersionMetadata.Version != 1 {
			t.Errorf("KV v2 read: version %+v, err %v", s.VersionMetadata, err)
		}
		// KV v1, on a mount of its own.
		if err := cl.Sys().MountWithContext(ctx, "kv1", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
			t.Fatal(err)
		}
		if err := cl.KVv1("kv1").Put(ctx, "shop/api", map[string]any{"token": "fake-for-tests"}); err != nil {
			t.Fatal(err)
		}
		s1, err := cl.KVv1("kv1").Get(ctx, "shop/api")
		if err != nil || s1.Data["token"] != "fake-for-tests" {
			t.Errorf("KV v1 read failed: %v", err)
		}
		// The KV version of a path's mount, as the controller will detect it.
		for path, want := range map[string]string{"secret/shop/db": "2", "kv1/shop/api": "1"} {
			m, err := cl.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+path)
			if err != nil || m == nil {
				t.Fatalf("mount of %s: %v", path, err)
			}
			opts, _ := m.Data["options"].(map[string]any)
			if got, _ := opts["version"].(string); got != want {
				t.Errorf("%s: KV version %q, want %s", path, got, want)
			}
		}
	})
}
