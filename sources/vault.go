package sources

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// Secret is a Vault KV secret as the controller materialises it.
type Secret struct {
	// Data are the secret's fields; a field that is not a string is
	// written as JSON.
	Data map[string][]byte
	// Version is the KV v2 version, or for KV v1 a keyed hash of the data
	// (the key is random per process, so the hash reveals nothing).
	Version string
}

// Certificate is what Vault PKI issued.
type Certificate struct {
	CertPEM, KeyPEM, CAPEM []byte
}

// PKIRequest asks for a certificate.
type PKIRequest struct {
	CommonName string
	AltNames   []string // DNS names and IP addresses
	TTL        time.Duration
}

// Vault is what the controller needs of Vault.
type Vault interface {
	// Read reads a KV secret, v1 or v2 (detected from its mount); nil when
	// it does not exist.
	Read(ctx context.Context, path string) (*Secret, error)
	// Issue asks <mount>/issue/<role> for a certificate.
	Issue(ctx context.Context, mount, role string, req PKIRequest) (*Certificate, error)
	// CA returns the PEM chain of the CA that <mount> issues with, to
	// verify a certificate found in a Secret before it is trusted.
	CA(ctx context.Context, mount string) ([]byte, error)
}

// vaultClient is Vault over its HTTP API, with vault/api. It logs in lazily,
// renews its token once two thirds of its TTL have passed, and logs in again
// when renewal fails or a request is refused with 403.
type vaultClient struct {
	c    *vaultapi.Client
	auth VaultAuth
	key  []byte // HMAC key for KV v1 versions

	mu        sync.Mutex
	token     string
	renewAt   time.Time // zero: never (a token without TTL)
	renewable bool
	mounts    map[string]mountInfo // by mount path, "secret/"
}

type mountInfo struct {
	path    string
	version string // "1" or "2"
}

// NewVault returns a Vault client for the configuration. It does not log in
// until the first request.
func NewVault(c *VaultConfig) (Vault, error) {
	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	cfg.Address = c.Address
	cfg.MaxRetries = 0 // the controller retries, with its own backoff
	if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACert: c.TLS.CAFile, ClientCert: c.TLS.CertFile, ClientKey: c.TLS.KeyFile,
		TLSServerName: c.TLS.ServerName, Insecure: c.TLS.InsecureSkipVerify}); err != nil {
		return nil, fmt.Errorf("vault TLS: %w", err)
	}
	cl, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client for %s: %w", c.Address, err)
	}
	cl.ClearToken() // never $VAULT_TOKEN: only what the configuration says
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	for _, r := range []string{"ok", "error"} {
		vaultLogins.WithLabelValues(c.Auth.Method, r) // from zero
	}
	return &vaultClient{c: cl, auth: c.Auth, key: key, mounts: map[string]mountInfo{}}, nil
}

// cleanVaultError keeps a Vault error short: the status and Vault's own
// messages, without the request URL's query or the raw body.
func cleanVaultError(err error) error {
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		return fmt.Errorf("vault %s %s: %d %s", re.HTTPMethod, re.URL, re.StatusCode, strings.Join(re.Errors, "; "))
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("vault unreachable: %w", err)
	}
	return err
}

// mount finds the KV mount of a path, from the cache or
// sys/internal/ui/mounts.
func (v *vaultClient) mount(ctx context.Context, c *vaultapi.Client, path string) (mountInfo, error) {
	v.mu.Lock()
	for p, m := range v.mounts {
		if strings.HasPrefix(path, p) {
			v.mu.Unlock()
			return m, nil
		}
	}
	v.mu.Unlock()
	s, err := c.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+path)
	if err != nil {
		return mountInfo{}, err
	}
	if s == nil || s.Data == nil {
		return mountInfo{}, fmt.Errorf("no secrets engine is mounted at %s", path)
	}
	m := mountInfo{version: "1"}
	m.path, _ = s.Data["path"].(string)
	if opts, ok := s.Data["options"].(map[string]any); ok {
		if ver, _ := opts["version"].(string); ver == "2" {
			m.version = "2"
		}
	}
	if t, _ := s.Data["type"].(string); t != "kv" && t != "generic" {
		return mountInfo{}, fmt.Errorf("%s is a %q secrets engine, not kv", m.path, t)
	}
	if m.path == "" || !strings.HasPrefix(path, m.path) {
		return mountInfo{}, fmt.Errorf("vault returned mount %q for %s", m.path, path)
	}
	v.mu.Lock()
	v.mounts[m.path] = m
	v.mu.Unlock()
	return m, nil
}

func (v *vaultClient) forgetMount(path string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.mounts, path)
}

func (v *vaultClient) Read(ctx context.Context, path string) (*Secret, error) {
	var out *Secret
	err := v.do(ctx, func(c *vaultapi.Client) error {
		m, err := v.mount(ctx, c, path)
		if err != nil {
			return err
		}
		api := path
		if m.version == "2" {
			if rest := strings.TrimPrefix(path, m.path); !strings.HasPrefix(rest, "data/") {
				api = m.path + "data/" + rest
			}
		}
		s, err := c.Logical().ReadWithContext(ctx, api)
		if err != nil {
			v.forgetMount(m.path) // it may have been remounted
			return err
		}
		if s == nil || s.Data == nil {
			return nil
		}
		data := s.Data
		var version string
		if m.version == "2" {
			d, _ := s.Data["data"].(map[string]any)
			if d == nil {
				return nil // deleted or destroyed: no current version
			}
			data = d
			if md, ok := s.Data["metadata"].(map[string]any); ok {
				if n, ok := md["version"].(json.Number); ok {
					version = n.String()
				}
			}
		}
		out = &Secret{Data: make(map[string][]byte, len(data))}
		for k, val := range data {
			if str, ok := val.(string); ok {
				out.Data[k] = []byte(str)
			} else {
				b, _ := json.Marshal(val)
				out.Data[k] = b
			}
		}
		if version == "" {
			version = "h" + v.hmac(out.Data)
		}
		out.Version = version
		return nil
	})
	return out, err
}

// hmac is a keyed hash of a secret's data, for a version that reveals
// nothing of the values.
func (v *vaultClient) hmac(data map[string][]byte) string {
	h := hmac.New(sha256.New, v.key)
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(h, "%d:%s%d:", len(k), k, len(data[k]))
		h.Write(data[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// CA reads <mount>/cert/ca_chain: the issuing CA and its parents, PEM.
func (v *vaultClient) CA(ctx context.Context, mount string) ([]byte, error) {
	var out []byte
	err := v.do(ctx, func(c *vaultapi.Client) error {
		s, err := c.Logical().ReadWithContext(ctx, strings.Trim(mount, "/")+"/cert/ca_chain")
		if err != nil {
			return err
		}
		if s != nil && s.Data != nil {
			for _, k := range []string{"ca_chain", "certificate"} {
				if pem, _ := s.Data[k].(string); pem != "" {
					out = []byte(pem)
					return nil
				}
			}
		}
		return fmt.Errorf("vault PKI %s has no CA", mount)
	})
	return out, err
}

func (v *vaultClient) Issue(ctx context.Context, mount, role string, req PKIRequest) (*Certificate, error) {
	var out *Certificate
	err := v.do(ctx, func(c *vaultapi.Client) error {
		body := map[string]any{"common_name": req.CommonName}
		var dns, ips []string
		for _, n := range req.AltNames {
			if net.ParseIP(n) != nil {
				ips = append(ips, n)
			} else {
				dns = append(dns, n)
			}
		}
		if len(dns) > 0 {
			body["alt_names"] = strings.Join(dns, ",")
		}
		if len(ips) > 0 {
			body["ip_sans"] = strings.Join(ips, ",")
		}
		if req.TTL > 0 {
			body["ttl"] = req.TTL.String()
		}
		s, err := c.Logical().WriteWithContext(ctx, strings.Trim(mount, "/")+"/issue/"+role, body)
		if err != nil {
			return err
		}
		if s == nil || s.Data == nil {
			return errors.New("vault PKI returned no certificate")
		}
		str := func(k string) string { v, _ := s.Data[k].(string); return v }
		out = &Certificate{CertPEM: []byte(str("certificate") + "\n"), KeyPEM: []byte(str("private_key") + "\n")}
		ca := str("issuing_ca")
		if chain, ok := s.Data["ca_chain"].([]any); ok && len(chain) > 0 {
			var parts []string
			for _, p := range chain {
				if ps, ok := p.(string); ok {
					parts = append(parts, ps)
				}
			}
			ca = strings.Join(parts, "\n")
		}
		out.CAPEM = []byte(ca + "\n")
		if str("certificate") == "" || str("private_key") == "" {
			return errors.New("vault PKI returned no certificate or key")
		}
		return nil
	})
	return out, err
}
