package sources

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/template"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/podpreset/podpreset/presets"
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
	WaitTime metav1.Duration `json:"waitTime,omitempty"`
}

// VaultConfig reaches a Vault server.
type VaultConfig struct {
	// Address is the Vault URL (https://vault:8200).
	Address string `json:"address"`
	// TLS for an https address.
	TLS TLSConfig `json:"tls,omitempty"`
	// RefreshInterval is how often each KV secret is read again (1m when
	// zero); Vault has no blocking queries.
	RefreshInterval metav1.Duration `json:"refreshInterval,omitempty"`
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

// Allowance is a set of Consul folders and Vault path patterns.
type Allowance struct {
	// ConsulPrefixes are folders: a key, or a prefix, is allowed when it
	// lies inside one of them, compared segment by segment (apps/team/
	// allows apps/team/db and apps/team/env/, never apps/team-evil/ nor the
	// prefix apps/team, which Consul would answer with apps/team-evil/ too).
	// A trailing / is implied. "" allows every key.
	ConsulPrefixes []string `json:"consulPrefixes,omitempty"`
	// VaultPaths: a path is allowed when it equals one of them, or lies
	// under one that ends in /* (secret/data/team/* allows
	// secret/data/team/db and deeper). PKI sources are checked as
	// <mount>/issue/<role>.
	VaultPaths []string `json:"vaultPaths,omitempty"`
}

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
	for _, a := range []struct {
		name string
		a    Allowance
	}{{"tenancy.podPresets", c.Tenancy.PodPresets}, {"tenancy.clusterPodPresets", c.Tenancy.ClusterPodPresets}} {
		for i, p := range a.a.ConsulPrefixes {
			if err := checkPattern(p, false); err != nil {
				errs = append(errs, fmt.Errorf("%s.consulPrefixes[%d] %q: %w", a.name, i, p, err))
			}
		}
		for i, p := range a.a.VaultPaths {
			if err := checkPattern(p, true); err != nil {
				errs = append(errs, fmt.Errorf("%s.vaultPaths[%d] %q: %w", a.name, i, p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkPattern checks an allowance: its template renders, and what it
// renders is a path that the same rules as presets' paths accept (a Vault
// pattern may end in /*, and * alone allows every path).
func checkPattern(pattern string, vault bool) error {
	e, err := expand(pattern, "example")
	if err != nil {
		return err
	}
	if e == "" || vault && e == "*" {
		return nil
	}
	if vault {
		e = strings.TrimSuffix(e, "/*")
		if errs := presets.ValidateVaultPath(e, field.NewPath("pattern")); len(errs) > 0 {
			return fmt.Errorf("%s (a * may only be the last segment: secret/data/team/*)", errs[0].Detail)
		}
		return nil
	}
	if strings.Contains(e, "*") {
		return errors.New("a Consul prefix is a folder and has no *")
	}
	if errs := presets.ValidateConsulPrefix(e, field.NewPath("pattern")); len(errs) > 0 {
		return errors.New(errs[0].Detail)
	}
	return nil
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
