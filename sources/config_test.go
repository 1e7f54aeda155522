package sources

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	if c.Vault.RefreshInterval.Duration != 30*time.Second || c.Consul.Datacenter != "dc1" || c.Vault.Auth.Role != "podpreset" {
		t.Errorf("loaded %+v %+v", c.Consul, c.Vault)
	}
	for name, tc := range map[string]struct{ text, want string }{
		"a typo":              {strings.Replace(exampleConfig, "datacenter", "datacentre", 1), `unknown field "datacentre"`},
		"a bad duration":      {strings.Replace(exampleConfig, "30s", "thirty", 1), `invalid duration "thirty"`},
		"an unknown method":   {strings.Replace(exampleConfig, "method: kubernetes", "method: ldap", 1), `vault.auth.method "ldap"`},
		"a role missing":      {strings.Replace(exampleConfig, "role: podpreset", "", 1), "vault.auth.role: needed by method kubernetes"},
		"a broken template":   {strings.Replace(exampleConfig, "apps/{{ .Namespace }}/", "apps/{{ .Namespace /", 1), "tenancy.podPresets.consulPrefixes[0]"},
		"an unknown variable": {strings.Replace(exampleConfig, "apps/{{ .Namespace }}/", "apps/{{ .Team }}/", 1), "tenancy.podPresets.consulPrefixes[0]"},
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
	consulKey := func(p string) presets.Source { return presets.Source{Kind: presets.SourceConsulKey, Path: p} }
	consulPrefix := func(p string) presets.Source { return presets.Source{Kind: presets.SourceConsulPrefix, Path: p} }
	vault := func(p string) presets.Source { return presets.Source{Kind: presets.SourceVault, Path: p} }
	cases := map[string]struct {
		ns   string
		src  presets.Source
		want string // "" allowed, else a part of the error
	}{
		"a key in the folder":               {ns: "shop", src: consulKey("apps/shop/db/host")},
		"the folder as a prefix":            {ns: "shop", src: consulPrefix("apps/shop/")},
		"a folder inside it":                {ns: "shop", src: consulPrefix("apps/shop/env/")},
		"a prefix inside it":                {ns: "shop", src: consulPrefix("apps/shop/env")},
		"the folder without its slash":      {ns: "shop", src: consulPrefix("apps/shop"), want: `may read only "apps/shop/"`},
		"a sibling with the same start":     {ns: "shop", src: consulKey("apps/shopping/x"), want: `Consul key "apps/shopping/x" is not allowed`},
		"a sibling folder":                  {ns: "shop", src: consulPrefix("apps/shop-evil/"), want: "is not allowed"},
		"another tenant":                    {ns: "shop", src: consulKey("apps/bank/db"), want: "is not allowed"},
		"a walk out with ..":                {ns: "shop", src: consulPrefix("apps/shop/../bank/"), want: "is never read: a Consul prefix must not"},
		"a walk out of a key with ..":       {ns: "shop", src: consulKey("apps/shop/../bank/db-password"), want: "is never read"},
		"a . segment":                       {ns: "shop", src: consulKey("apps/shop/./x"), want: "is never read"},
		"an empty segment":                  {ns: "shop", src: consulKey("apps/shop//x"), want: "is never read"},
		"a percent-encoded walk":            {ns: "shop", src: consulKey("apps/shop/%2e%2e/bank/x"), want: `must not contain '%'`},
		"a query":                           {ns: "shop", src: consulKey("apps/shop/x?dc=other"), want: `must not contain '?'`},
		"a fragment":                        {ns: "shop", src: consulKey("apps/shop/x#y"), want: `must not contain '#'`},
		"a backslash walk":                  {ns: "shop", src: consulKey(`apps/shop/..\bank\x`), want: "must not contain"},
		"a control character":               {ns: "shop", src: consulKey("apps/shop/x\ny"), want: "control characters"},
		"a leading slash":                   {ns: "shop", src: consulKey("/apps/shop/x"), want: "is never read"},
		"a Vault secret in the folder":      {ns: "shop", src: vault("secret/data/shop/db")},
		"a Vault secret deeper":             {ns: "shop", src: vault("secret/data/shop/team/db")},
		"another tenant's Vault secret":     {ns: "shop", src: vault("secret/data/bank/db"), want: `PodPresets in namespace shop may read only "secret/data/shop/*", "pki/issue/shop"`},
		"a Vault sibling":                   {ns: "shop", src: vault("secret/data/shop-evil/db"), want: "is not allowed"},
		"the Vault folder itself":           {ns: "shop", src: vault("secret/data/shop"), want: "is not allowed"},
		"a Vault walk out":                  {ns: "shop", src: vault("secret/data/shop/../bank/db"), want: "is never read"},
		"a PKI role":                        {ns: "shop", src: presets.Source{Kind: presets.SourceVaultPKI, Path: "pki/issue/shop"}},
		"another PKI role":                  {ns: "shop", src: presets.Source{Kind: presets.SourceVaultPKI, Path: "pki/issue/bank"}, want: "not allowed"},
		"a ClusterPodPreset reads Vault":    {src: vault("secret/data/bank/db")},
		"a ClusterPodPreset outside shared": {src: consulKey("apps/shop/db/host"), want: `ClusterPodPresets may read only "shared/"`},
		"a ClusterPodPreset walking out":    {src: consulKey("shared/../apps/shop/db"), want: "is never read"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := ten.Allowed(tc.ns, tc.src)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%q reading %s: %v", tc.ns, tc.src.ID(), err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("%q reading %s: error %v, want one that says %q", tc.ns, tc.src.ID(), err, tc.want)
			}
		})
	}
	// Without a configuration, nothing may be read, and the error says why.
	err = NewTenancy(nil).Allowed("shop", vault("secret/data/shop/db"))
	if err == nil || !strings.Contains(err.Error(), "--sources-config") {
		t.Errorf("without a configuration: %v", err)
	}
	// Check names the field.
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"}, Spec: v1alpha1.PodPresetSpec{Env: []v1alpha1.EnvVar{
		{Name: "OK", ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: "apps/shop/a"}}},
		{Name: "NO", ValueFrom: &v1alpha1.EnvVarSource{Vault: &v1alpha1.VaultKeySelector{Path: "secret/data/bank/db", Field: "password"}}},
	}}}
	errs := ten.Check(pp)
	if len(errs) != 1 || errs[0].Field != "spec.env[1].valueFrom.vault" {
		t.Errorf("Check: %v", errs)
	}
}

// TestConfigRefusesPatternsThatCannotBeFolders checks that an allowance is
// a path by the same rules as presets' paths, with * only as a whole last
// Vault segment.
func TestConfigRefusesPatternsThatCannotBeFolders(t *testing.T) {
	cases := map[string]struct{ tenancy, want string }{
		"a Vault glob inside a segment": {tenancy: `vaultPaths: ["secret/data/team*"]`, want: "a * may only be the last segment"},
		"a Consul glob":                 {tenancy: `consulPrefixes: ["apps/*/"]`, want: "has no *"},
		"a Consul walk":                 {tenancy: `consulPrefixes: ["apps/../"]`, want: "must not"},
		"a Vault walk":                  {tenancy: `vaultPaths: ["secret/../sys/*"]`, want: "must not"},
		"a template that fails":         {tenancy: `consulPrefixes: ["apps/{{ .Nope }}/"]`, want: "tenancy.podPresets.consulPrefixes[0]"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			text := "consul: {address: 127.0.0.1:8500}\ntenancy:\n  podPresets:\n    " + tc.tenancy + "\n"
			_, err := LoadConfig(writeConfig(t, text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one that says %q", err, tc.want)
			}
		})
	}
}
