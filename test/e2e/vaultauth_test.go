package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podpreset/podpreset/sources"
)

// counter reads a counter of this process's metrics registry (the sources
// package registers its own there).
func counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue metric
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// TestVaultAuthMethods logs in with the token and AppRole methods against
// the real Vault, with tokens that expire within seconds: reads keep
// working across several token lifetimes, with renewals and new logins but
// not a login per read.
func TestVaultAuthMethods(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	value := secretValue(t)
	putVault(t, "auth-methods/app", map[string]any{"key": value})

	// AppRole: role_id in the configuration, secret_id in a file.
	if err := vaultRoot.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil &&
		!strings.Contains(err.Error(), "path is already in use") {
		t.Fatal(err)
	}
	if _, err := vaultRoot.Logical().WriteWithContext(ctx, "auth/approle/role/podpreset", map[string]any{
		"token_policies": "podpreset", "token_ttl": "3s", "token_max_ttl": "7s",
	}); err != nil {
		t.Fatal(err)
	}
	rid, err := vaultRoot.Logical().ReadWithContext(ctx, "auth/approle/role/podpreset/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := vaultRoot.Logical().WriteWithContext(ctx, "auth/approle/role/podpreset/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	secretIDFile := filepath.Join(dir, "secret-id")
	if err := os.WriteFile(secretIDFile, []byte(sid.Data["secret_id"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	// Token: a renewable token with the same policy and lifetimes.
	tok, err := vaultRoot.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{
		Policies: []string{"default", "podpreset"}, TTL: "3s", ExplicitMaxTTL: "7s", Renewable: new(true), NoParent: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok.Auth.ClientToken), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, auth := range []sources.VaultAuth{
		// The token first: it lives 3s unless renewed.
		{Method: "token", TokenFile: tokenFile},
		{Method: "approle", RoleID: rid.Data["role_id"].(string), SecretIDFile: secretIDFile},
	} {
		t.Run(auth.Method, func(t *testing.T) {
			v, err := sources.NewVault(&sources.VaultConfig{Address: vaultSrv.Addr, Auth: auth})
			if err != nil {
				t.Fatal(err)
			}
			logins0 := counter(t, "podpreset_vault_logins_total", map[string]string{"method": auth.Method, "result": "ok"})
			renewals0 := counter(t, "podpreset_vault_token_renewals_total", map[string]string{"result": "ok"})
			// 10 reads over 5 seconds: beyond the 3s TTL.
			for i := range 10 {
				s, err := v.Read(ctx, "secret/data/auth-methods/app")
				if err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				if string(s.Data["key"]) != value {
					t.Fatalf("read %d: the wrong value", i)
				}
				time.Sleep(500 * time.Millisecond)
			}
			logins := counter(t, "podpreset_vault_logins_total", map[string]string{"method": auth.Method, "result": "ok"}) - logins0
			renewals := counter(t, "podpreset_vault_token_renewals_total", map[string]string{"result": "ok"}) - renewals0
			if renewals < 1 {
				t.Errorf("%v renewals over 5s with a 3s token", renewals)
			}
			if logins < 1 || logins > 2 {
				t.Errorf("%v logins for 10 reads: want 1, or 2 when the maximum TTL is reached", logins)
			}
		})
	}
	// A token that is not valid fails with a clear error.
	if err := os.WriteFile(tokenFile, []byte("hvs.not-a-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := sources.NewVault(&sources.VaultConfig{Address: vaultSrv.Addr, Auth: sources.VaultAuth{Method: "token", TokenFile: tokenFile}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Read(ctx, "secret/data/auth-methods/app"); err == nil || !strings.Contains(err.Error(), "403 permission denied") {
		t.Errorf("a bad token: %v", err)
	}
}
