package sources

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

const exampleConfig = `consul:
  address: https://consul.example:8501
  datacenter: dc1
  tokenFile: /etc/podpreset/consul-token
  tls:
    caFile: /etc/podpreset/consul-ca.crt
vault:
  address: https://vault.example:8200
  refreshInterval: 30s
  auth:
    method: kubernetes
    role: podpreset
tenancy:
  podPresets:
    consulPrefixes: ["apps/{{ .Namespace }}/"]
    vaultPaths: ["secret/data/{{ .Namespace }}/*", "pki/issue/{{ .Namespace }}"]
  clusterPodPresets:
    consulPrefixes: ["shared/"]
    vaultPaths: ["secret/data/*"]
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	c, err := LoadConfig(writeConfig(t, exampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Vault.RefreshInterval.String() != "30s" || c.Consul.Datacenter != "dc1" || c.Vault.Auth.Role != "podpreset" {
		t.Errorf("loaded %+v %+v", c.Consul, c.Vault)
	}
	for name, tc := range map[string]struct{ text, want string }{
		"a typo":              {strings.Replace(exampleConfig, "datacenter", "datacentre", 1), `unknown field "datacentre"`},
		"a bad duration":      {strings.Replace(exampleConfig, "30s", "thirty", 1), `"thirty" is not a duration`},
		"an unknown method":   {strings.Replace(exampleConfig, "method: kubernetes", "method: ldap", 1), `vault.auth.method "ldap"`},
		"a role missing":      {strings.Replace(exampleConfig, "role: podpreset", "", 1), "vault.auth.role: needed by method kubernetes"},
		"a broken template":   {strings.Replace(exampleConfig, "apps/{{ .Namespace }}/", "apps/{{ .Namespace /", 1), "tenancy.podPresets[0]"},
		"an unknown variable": {strings.Replace(exampleConfig, "apps/{{ .Namespace }}/", "apps/{{ .Team }}/", 1), "tenancy.podPresets[0]"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one that says %q", err, tc.want)
			}
		})
	}
}

func TestTenancy(t *testing.T) {
	c, err := LoadConfig(writeConfig(t, exampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	ten := NewTenancy(c)
	cases := []struct {
		ns   string
		src  presets.Source
		want string // "" allowed, else a part of the error
	}{
		{"shop", presets.Source{Kind: presets.SourceConsulKey, Path: "apps/shop/db/host"}, ""},
		{"shop", presets.Source{Kind: presets.SourceConsulPrefix, Path: "apps/shop/"}, ""},
		{"shop", presets.Source{Kind: presets.SourceConsulPrefix, Path: "apps/shop"}, `may read only "apps/shop/"`},
		{"shop", presets.Source{Kind: presets.SourceConsulKey, Path: "apps/shopping/x"}, `Consul key "apps/shopping/x" is not allowed`},
		{"shop", presets.Source{Kind: presets.SourceVault, Path: "secret/data/shop/db"}, ""},
		{"shop", presets.Source{Kind: presets.SourceVault, Path: "secret/data/bank/db"}, `PodPresets in namespace shop may read only "secret/data/shop/*", "pki/issue/shop"`},
		{"shop", presets.Source{Kind: presets.SourceVaultPKI, Path: "pki/issue/shop"}, ""},
		{"shop", presets.Source{Kind: presets.SourceVaultPKI, Path: "pki/issue/bank"}, "not allowed"},
		{"", presets.Source{Kind: presets.SourceVault, Path: "secret/data/bank/db"}, ""},
		{"", presets.Source{Kind: presets.SourceConsulKey, Path: "apps/shop/db/host"}, `ClusterPodPresets may read only "shared/"`},
	}
	for _, tc := range cases {
		err := ten.Allowed(tc.ns, tc.src)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q reading %s: %v", tc.ns, tc.src.ID(), err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q reading %s: error %v, want one that says %q", tc.ns, tc.src.ID(), err, tc.want)
		}
	}
	// Without a configuration, nothing may be read, and the error says why.
	err = NewTenancy(nil).Allowed("shop", presets.Source{Kind: presets.SourceVault, Path: "secret/data/shop/db"})
	if err == nil || !strings.Contains(err.Error(), "--sources-config") {
		t.Errorf("without a configuration: %v", err)
	}
	// Check names the field.
	spec := &v1alpha1.PodPresetSpec{Env: []v1alpha1.EnvVar{
		{Name: "OK", ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: "apps/shop/a"}}},
		{Name: "NO", ValueFrom: &v1alpha1.EnvVarSource{Vault: &v1alpha1.VaultKeySelector{Path: "secret/data/bank/db", Field: "password"}}},
	}}
	errs := ten.Check("shop", spec)
	if len(errs) != 1 || errs[0].Field != "spec.env[1].valueFrom.vault" {
		t.Errorf("Check: %v", errs)
	}
}
