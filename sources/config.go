package sources

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/template"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Config is the sources configuration file (podpreset-webhook
// --sources-config). Every field is documented in docs/sources.md; unknown
// fields are an error, so that a typo does not silently turn a setting off.
type Config struct {
	// Consul is where Consul KV values come from; nil turns Consul off.
	Consul *ConsulConfig `json:"consul,omitempty"`
	// Vault is where Vault values come from; nil turns Vault off.
	Vault *VaultConfig `json:"vault,omitempty"`
	// Tenancy says what presets may read.
	Tenancy TenancyConfig `json:"tenancy"`
}

// ConsulConfig reaches a Consul agent or server.
type ConsulConfig struct {
	// Address is host:port, or a URL (https://consul:8501).
	Address string `json:"address"`
	// Datacenter to read from; the agent's own when empty.
	Datacenter string `json:"datacenter,omitempty"`
	// TokenFile holds the ACL token, re-read on every query so that a
	// rotated token is picked up. No token when empty.
	TokenFile string `json:"tokenFile,omitempty"`
	// TLS for an https address.
	TLS TLSConfig `json:"tls,omitempty"`
	// WaitTime is how long one blocking query waits (5m when zero).
	WaitTime Duration `json:"waitTime,omitempty"`
}

// VaultConfig reaches a Vault server.
type VaultConfig struct {
	// Address is the Vault URL (https://vault:8200).
	Address string `json:"address"`
	// TLS for an https address.
	TLS TLSConfig `json:"tls,omitempty"`
	// RefreshInterval is how often each KV secret is read again (1m when
	// zero); Vault has no blocking queries.
	RefreshInterval Duration `json:"refreshInterval,omitempty"`
	// Auth says how podpreset logs in.
	Auth VaultAuth `json:"auth"`
}

// VaultAuth is one of the token, approle or kubernetes methods.
type VaultAuth struct {
	// Method is token, approle or kubernetes.
	Method string `json:"method"`
	// Mount is the auth method's mount path (approle or kubernetes when
	// empty).
	Mount string `json:"mount,omitempty"`
	// TokenFile holds the token (method token).
	TokenFile string `json:"tokenFile,omitempty"`
	// RoleID and SecretIDFile are the AppRole credentials (method approle).
	RoleID       string `json:"roleID,omitempty"`
	SecretIDFile string `json:"secretIDFile,omitempty"`
	// Role is the Vault role to log in as (method kubernetes).
	Role string `json:"role,omitempty"`
	// ServiceAccountTokenFile is the JWT presented to Vault (method
	// kubernetes); the webhook's own projected token when empty.
	ServiceAccountTokenFile string `json:"serviceAccountTokenFile,omitempty"`
}

// TLSConfig is the client side of TLS to Consul or Vault.
type TLSConfig struct {
	// CAFile verifies the server; the system roots when empty.
	CAFile string `json:"caFile,omitempty"`
	// CertFile and KeyFile are a client certificate, for mutual TLS.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `json:"serverName,omitempty"`
	// InsecureSkipVerify turns verification off. Never in production.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// TenancyConfig lists what presets may read.
type TenancyConfig struct {
	// PodPresets is the allowance of a namespaced PodPreset, templated on
	// its namespace: {{ .Namespace }}.
	PodPresets Allowance `json:"podPresets,omitempty"`
	// ClusterPodPresets is the allowance of ClusterPodPresets.
	ClusterPodPresets Allowance `json:"clusterPodPresets,omitempty"`
}

// Allowance is a set of Consul key prefixes and Vault path patterns.
type Allowance struct {
	// ConsulPrefixes: a key (or prefix) is allowed when it starts with one
	// of them. "" allows every key.
	ConsulPrefixes []string `json:"consulPrefixes,omitempty"`
	// VaultPaths: a path is allowed when it equals one of them, or starts
	// with one that ends in * (without the *). PKI sources are checked as
	// <mount>/issue/<role>.
	VaultPaths []string `json:"vaultPaths,omitempty"`
}

// Duration is a time.Duration written as "30s" in the file.
type Duration struct{ time.Duration }

// UnmarshalJSON parses "30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (such as 30s or 5m): %w", s, err)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// LoadConfig reads and checks a sources configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the sources configuration: %w", err)
	}
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("sources configuration %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("sources configuration %s: %w", path, err)
	}
	return &c, nil
}

// Validate checks the configuration, naming each field that is wrong.
func (c *Config) Validate() error {
	var errs []error
	if c.Consul != nil {
		if c.Consul.Address == "" {
			errs = append(errs, errors.New("consul.address: must not be empty"))
		}
		if c.Consul.WaitTime.Duration < 0 {
			errs = append(errs, errors.New("consul.waitTime: must not be negative"))
		}
	}
	if v := c.Vault; v != nil {
		if v.Address == "" {
			errs = append(errs, errors.New("vault.address: must not be empty"))
		}
		if v.RefreshInterval.Duration < 0 {
			errs = append(errs, errors.New("vault.refreshInterval: must not be negative"))
		}
		switch v.Auth.Method {
		case "token":
			if v.Auth.TokenFile == "" {
				errs = append(errs, errors.New("vault.auth.tokenFile: needed by method token"))
			}
		case "approle":
			if v.Auth.RoleID == "" || v.Auth.SecretIDFile == "" {
				errs = append(errs, errors.New("vault.auth.roleID and vault.auth.secretIDFile: needed by method approle"))
			}
		case "kubernetes":
			if v.Auth.Role == "" {
				errs = append(errs, errors.New("vault.auth.role: needed by method kubernetes"))
			}
		default:
			errs = append(errs, fmt.Errorf("vault.auth.method %q: must be token, approle or kubernetes", v.Auth.Method))
		}
	}
	for name, a := range map[string]Allowance{"tenancy.podPresets": c.Tenancy.PodPresets, "tenancy.clusterPodPresets": c.Tenancy.ClusterPodPresets} {
		for i, p := range slices.Concat(a.ConsulPrefixes, a.VaultPaths) {
			if _, err := expand(p, "example"); err != nil {
				errs = append(errs, fmt.Errorf("%s[%d] %q: %w", name, i, p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// expand renders an allowance pattern for a namespace.
func expand(pattern, namespace string) (string, error) {
	if !strings.Contains(pattern, "{{") {
		return pattern, nil
	}
	t, err := template.New("").Option("missingkey=error").Parse(pattern)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, struct{ Namespace string }{namespace}); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Tenancy enforces the allowances: the validating webhook calls Check on
// every preset, and the controller again before it reads anything.
type Tenancy struct {
	Consul, Vault bool // whether each is configured
	Config        TenancyConfig
}

// NewTenancy returns the policy of a configuration; a nil configuration
// allows no source at all.
func NewTenancy(c *Config) *Tenancy {
	if c == nil {
		return &Tenancy{}
	}
	return &Tenancy{Consul: c.Consul != nil, Vault: c.Vault != nil, Config: c.Tenancy}
}

// Check returns an error for each source of the spec that the preset may
// not read. namespace is the PodPreset's namespace, empty for a
// ClusterPodPreset.
func (t *Tenancy) Check(namespace string, spec *v1alpha1.PodPresetSpec) field.ErrorList {
	var errs field.ErrorList
	for _, o := range presets.SourcePlan("x", spec) {
		for _, it := range o.Items {
			if err := t.Allowed(namespace, it.Source); err != nil {
				errs = append(errs, field.Forbidden(field.NewPath(it.Field), err.Error()))
			}
		}
	}
	return errs
}

// Allowed says whether a preset in namespace (empty: a ClusterPodPreset)
// may read a source, and if not, why, naming what it may read.
func (t *Tenancy) Allowed(namespace string, s presets.Source) error {
	who, a := "PodPresets in namespace "+namespace, t.Config.PodPresets
	if namespace == "" {
		who, a = "ClusterPodPresets", t.Config.ClusterPodPresets
	}
	consul := s.Kind == presets.SourceConsulKey || s.Kind == presets.SourceConsulPrefix
	if consul && !t.Consul {
		return errors.New("Consul is not configured: podpreset-webhook needs a consul section in --sources-config")
	}
	if !consul && !t.Vault {
		return errors.New("Vault is not configured: podpreset-webhook needs a vault section in --sources-config")
	}
	patterns := a.VaultPaths
	if consul {
		patterns = a.ConsulPrefixes
	}
	var allowed []string
	for _, p := range patterns {
		e, err := expand(p, namespace)
		if err != nil {
			continue // Validate refused it at load time
		}
		allowed = append(allowed, e)
		if consul && strings.HasPrefix(s.Path, e) {
			return nil
		}
		if !consul && (s.Path == e || strings.HasSuffix(e, "*") && strings.HasPrefix(s.Path, strings.TrimSuffix(e, "*"))) {
			return nil
		}
	}
	what := "Vault path"
	if consul {
		what = "Consul key"
	}
	if len(allowed) == 0 {
		return fmt.Errorf("%s %q is not allowed: %s may read no %s (tenancy in --sources-config)", what, s.Path, who, what)
	}
	return fmt.Errorf("%s %q is not allowed: %s may read only %s", what, s.Path, who, strings.Join(quoteAll(allowed), ", "))
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
