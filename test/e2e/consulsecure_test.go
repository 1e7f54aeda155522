package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/podpreset/podpreset/sources"
	"github.com/podpreset/podpreset/test/cluster"
)

// TestConsulTLSTokenAndDatacenter reads a Consul that serves HTTPS only and
// denies by default (ACLs): the sources client verifies the server with the
// configured CA, presents the ACL token from its file, and asks the
// configured datacenter.
func TestConsulTLSTokenAndDatacenter(t *testing.T) {
	ctx := t.Context()
	sc, err := cluster.StartSecureConsul(ctx, cp.Root, cpLogs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sc.Stop)

	// As the administrator: a key, a policy that reads apps/, a token.
	cfg := consulapi.DefaultConfig()
	cfg.Address, cfg.Scheme, cfg.Token = sc.Addr, "https", sc.Token
	cfg.TLSConfig.CAFile = sc.CAFile
	admin, err := consulapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"apps/shop/host": "db-1", "private/key": "no"} {
		if _, err := admin.KV().Put(&consulapi.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := admin.ACL().PolicyCreate(&consulapi.ACLPolicy{Name: "read-apps", Rules: `key_prefix "apps/" { policy = "read" }`}, nil); err != nil {
		t.Fatal(err)
	}
	tok, _, err := admin.ACL().TokenCreate(&consulapi.ACLToken{Policies: []*consulapi.ACLTokenPolicyLink{{Name: "read-apps"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok.SecretID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := sources.ConsulConfig{Address: sc.URL, Datacenter: "dc1", TokenFile: tokenFile, TLS: sources.TLSConfig{CAFile: sc.CAFile}}

	read := func(c sources.ConsulConfig, key string) (*sources.KV, error) {
		cl, err := sources.NewConsul(&c)
		if err != nil {
			return nil, err
		}
		kv, _, err := cl.Key(ctx, key, 0)
		return kv, err
	}
	kv, err := read(good, "apps/shop/host")
	if err != nil || kv == nil || string(kv.Value) != "db-1" {
		t.Fatalf("reading with TLS, token and datacenter: %v %v", kv, err)
	}
	cl, err := sources.NewConsul(&good)
	if err != nil {
		t.Fatal(err)
	}
	if kvs, _, err := cl.Prefix(ctx, "apps/", 0); err != nil || len(kvs) != 1 {
		t.Errorf("listing apps/: %v %v", kvs, err)
	}
	for name, tc := range map[string]struct {
		cfg  sources.ConsulConfig
		key  string
		want string
	}{
		"a key the token may not read": {good, "private/key", "403"},
		"no token":                     {sources.ConsulConfig{Address: sc.URL, TLS: good.TLS}, "apps/shop/host", "403"},
		"an unknown CA":                {sources.ConsulConfig{Address: sc.URL, TokenFile: tokenFile}, "apps/shop/host", "certificate"},
		"another datacenter":           {sources.ConsulConfig{Address: sc.URL, Datacenter: "dc2", TokenFile: tokenFile, TLS: good.TLS}, "apps/shop/host", "datacenter"},
		"a token file that is missing": {sources.ConsulConfig{Address: sc.URL, TokenFile: filepath.Join(dir, "none"), TLS: good.TLS}, "apps/shop/host", "reading the Consul token"},
	} {
		t.Run(name, func(t *testing.T) {
			kv, err := read(tc.cfg, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, error %v; want an error that says %q", kv, err, tc.want)
			}
		})
	}
}
