package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	vaultapi "github.com/hashicorp/vault/api"

	"github.com/podpreset/podpreset/certs"
)

// Consul is a Consul dev agent on loopback, started by StartConsul.
type Consul struct {
	// Addr is the HTTP API's host:port.
	Addr string
	proc *process
	dir  string
	bin  string
	args []string
	logs io.Writer
}

// Vault is a Vault dev server on loopback, started by StartVault.
type Vault struct {
	// Addr is the API's URL; RootToken its root token.
	Addr, RootToken string
	proc            *process
	bin             string
	args            []string
	logs            io.Writer
}

// consulDev prepares a Consul dev agent on free loopback ports: ports[0]
// is for its HTTP(S) API, which the caller adds to its arguments.
func consulDev(root, name, host string, logs io.Writer) (*Consul, []int, error) {
	bin := filepath.Join(root, "bin", "consul")
	if _, err := os.Stat(bin); err != nil {
		return nil, nil, fmt.Errorf("bin/consul is missing: run hack/build-servers.sh (make test does): %w", err)
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "podpreset-"+name+"-")
	if err != nil {
		return nil, nil, err
	}
	if logs == nil {
		logs = io.Discard
	}
	return &Consul{Addr: host + ":" + strconv.Itoa(ports[0]), dir: dir, bin: bin, logs: logs, args: []string{"agent", "-dev",
		"-bind=127.0.0.1", "-client=" + host, "-data-dir=" + dir,
		"-server-port=" + strconv.Itoa(ports[1]),
		"-serf-lan-port=" + strconv.Itoa(ports[2]), "-serf-wan-port=" + strconv.Itoa(ports[3]),
		"-dns-port=-1", "-grpc-port=-1"}}, ports, nil
}

// StartConsul starts bin/consul in dev mode on free loopback ports and
// waits until it has a leader.
func StartConsul(ctx context.Context, root string, logs io.Writer) (*Consul, error) {
	return StartConsulOn(ctx, root, "127.0.0.1", logs)
}

// StartConsulOn starts bin/consul in dev mode with its HTTP API on host
// (an address of this machine: the node's, for pods to reach it).
func StartConsulOn(ctx context.Context, root, host string, logs io.Writer) (*Consul, error) {
	c, ports, err := consulDev(root, "consul", host, logs)
	if err != nil {
		return nil, err
	}
	c.args = append(c.args, "-http-port="+strconv.Itoa(ports[0]))
	if err := c.Start(ctx); err != nil {
		return nil, errors.Join(err, os.RemoveAll(c.dir))
	}
	return c, nil
}

// Start starts a stopped Consul again, on the same ports, empty (dev
// mode keeps nothing), and waits until it has a leader.
func (c *Consul) Start(ctx context.Context) error {
	p, err := startProcess(ctx, "consul", c.logs, nil, c.bin, c.args...)
	if err != nil {
		return err
	}
	c.proc = p
	if err := waitHTTP(p, "http://"+c.Addr+"/v1/status/leader", func(body string) bool { return len(body) > 2 }); err != nil {
		p.halt()
		return fmt.Errorf("consul: %w", err)
	}
	return nil
}

// Halt stops Consul, keeping its ports for Start.
func (c *Consul) Halt() { c.proc.halt() }

// Stop stops Consul and removes its data.
func (c *Consul) Stop() {
	c.proc.halt()
	if err := os.RemoveAll(c.dir); err != nil {
		fmt.Fprintf(c.logs, "[consul] removing %s: %v\n", c.dir, err)
	}
}

// StartVault starts bin/vault in dev mode (in memory, unsealed, KV v2 at
// secret/) on a free loopback port, with a random root token, and waits
// until it is healthy.
func StartVault(ctx context.Context, root string, logs io.Writer) (*Vault, error) {
	return StartVaultOn(ctx, root, "127.0.0.1", logs)
}

// StartVaultOn starts bin/vault in dev mode listening on host (an address
// of this machine: the node's, for pods to reach it).
func StartVaultOn(ctx context.Context, root, host string, logs io.Writer) (*Vault, error) {
	bin := filepath.Join(root, "bin", "vault")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("bin/vault is missing: run hack/build-servers.sh (make test does): %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	if logs == nil {
		logs = io.Discard
	}
	v := &Vault{Addr: "http://" + host + ":" + strconv.Itoa(port), RootToken: "root-" + hex.EncodeToString(tok), bin: bin, logs: logs}
	// The root token is passed as a flag: it is a throwaway dev server's.
	v.args = []string{"server", "-dev", "-dev-no-store-token",
		"-dev-listen-address=" + host + ":" + strconv.Itoa(port), "-dev-root-token-id=" + v.RootToken}
	if err := v.Start(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// Start starts a stopped Vault again, on the same port with the same root
// token, empty (dev mode keeps nothing), and waits until it is healthy.
func (v *Vault) Start(ctx context.Context) error {
	p, err := startProcess(ctx, "vault", v.logs, nil, v.bin, v.args...)
	if err != nil {
		return err
	}
	v.proc = p
	if err := waitHTTP(p, v.Addr+"/v1/sys/health", func(string) bool { return true }); err != nil {
		p.halt()
		return fmt.Errorf("vault: %w", err)
	}
	return nil
}

// Stop stops Vault; its storage was in memory.
func (v *Vault) Stop() { v.proc.halt() }

// freePorts returns n free loopback ports.
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	return ports, nil
}

// waitHTTP polls url until it answers 200 with a body ok accepts, for up
// to 60 seconds, or the process exits.
func waitHTTP(p *process, url string, ok func(body string) bool) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && ok(string(body)) {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("exited before it was ready: %v", p.wait())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 60s (%s: %v)", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SecureConsul is a Consul dev agent that serves HTTPS only, with ACLs on
// (default deny), started by StartSecureConsul.
type SecureConsul struct {
	*Consul
	// URL is the HTTPS API's address; CAFile verifies it; Token is the
	// initial management token (it may read and write everything).
	URL, CAFile, Token string
}

// StartSecureConsul starts bin/consul in dev mode with TLS (a CA and a
// certificate for 127.0.0.1 written into a temporary directory) and ACLs
// in default-deny mode, and waits until it has a leader.
func StartSecureConsul(ctx context.Context, root string, logs io.Writer) (*SecureConsul, error) {
	c, ports, err := consulDev(root, "consul-tls", "127.0.0.1", logs)
	if err != nil {
		return nil, err
	}
	dir := c.dir
	now := time.Now()
	ca, err := certs.NewCA(now, time.Hour)
	if err != nil {
		return nil, err
	}
	leaf, err := certs.NewLeaf(ca, now, time.Hour, []string{"localhost", "server.dc1.consul"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	token := fmt.Sprintf("%x-%x-%x-%x-%x", tok[0:4], tok[4:6], tok[6:8], tok[8:10], tok[10:16])
	hcl := fmt.Sprintf(`ports { http = -1, https = %d }
tls { defaults { ca_file = %q, cert_file = %q, key_file = %q, verify_incoming = false } }
acl { enabled = true, default_policy = "deny", tokens { initial_management = %q } }`,
		ports[0], filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), token)
	c.args = append(c.args, "-hcl", hcl)
	p, err := startProcess(ctx, "consul-tls", c.logs, nil, c.bin, c.args...)
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	c.proc = p
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	url := "https://" + c.Addr
	deadline := time.Now().Add(60 * time.Second)
	// Ready when the management token works: the leader creates it a
	// moment after it is elected, and until then it is "ACL not found".
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/acl/token/self", nil)
		if err != nil {
			c.Stop()
			return nil, err
		}
		req.Header.Set("X-Consul-Token", token)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("GET /v1/acl/token/self: %s", resp.Status)
		}
		if p.exited() || time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("consul with TLS and ACLs not ready (last: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &SecureConsul{Consul: c, URL: url, CAFile: filepath.Join(dir, "ca.crt"), Token: token}, nil
}

// Seed runs the `consul kv put KEY VALUE` and `vault kv put -mount=M PATH
// k=v...` lines of an example's seed.sh against a Consul and a Vault, as the
// consul and vault commands would (KV v2 for vault). Other lines must be
// comments, blank or `set -e`.
func Seed(ctx context.Context, path, consulAddr, vaultAddr, vaultToken string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	cc := consulapi.DefaultConfig()
	cc.Address = consulAddr
	cl, err := consulapi.NewClient(cc)
	if err != nil {
		return err
	}
	vc := vaultapi.DefaultConfig()
	vc.Address = vaultAddr
	vl, err := vaultapi.NewClient(vc)
	if err != nil {
		return err
	}
	vl.SetToken(vaultToken)
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#") || line == "set -e":
		case len(f) >= 5 && f[0] == "consul" && f[1] == "kv" && f[2] == "put":
			if _, err := cl.KV().Put(&consulapi.KVPair{Key: f[3], Value: []byte(strings.Join(f[4:], " "))}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
				return fmt.Errorf("%s:%d: %w", path, i+1, err)
			}
		case len(f) >= 6 && f[0] == "vault" && f[1] == "kv" && f[2] == "put" && strings.HasPrefix(f[3], "-mount="):
			data := map[string]any{}
			for _, kv := range f[5:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("%s:%d: %q is not key=value", path, i+1, kv)
				}
				data[k] = v
			}
			if _, err := vl.KVv2(strings.TrimPrefix(f[3], "-mount=")).Put(ctx, f[4], data); err != nil {
				return fmt.Errorf("%s:%d: %w", path, i+1, err)
			}
		default:
			return fmt.Errorf("%s:%d: not a consul kv put or vault kv put -mount= line: %q", path, i+1, line)
		}
	}
	return nil
}

// WriteSourcesConfig writes a podpreset-webhook --sources-config file for
// these dev servers into dir and returns its path. auth is the vault.auth
// section (YAML, one "key: value" per line); the tenancy lets a PodPreset
// read apps/<namespace>/ in Consul and secret/data/<namespace>/*,
// kv1/<namespace>/* and pki/issue/web in Vault, and ClusterPodPresets
// shared/, secret/data/* and pki/issue/web.
func WriteSourcesConfig(dir string, consul *Consul, vault *Vault, refresh time.Duration, auth map[string]string) (string, error) {
	var a strings.Builder
	for _, k := range slices.Sorted(maps.Keys(auth)) {
		fmt.Fprintf(&a, "    %s: %s\n", k, auth[k])
	}
	cfg := fmt.Sprintf(`consul:
  address: %s
  waitTime: 30s
vault:
  address: %s
  refreshInterval: %s
  auth:
%stenancy:
  podPresets:
    consulPrefixes: ["apps/{{ .Namespace }}/"]
    vaultPaths: ["secret/data/{{ .Namespace }}/*", "kv1/{{ .Namespace }}/*", "pki/issue/web"]
  clusterPodPresets:
    consulPrefixes: ["shared/"]
    vaultPaths: ["secret/data/*", "pki/issue/web"]
`, consul.Addr, vault.Addr, refresh, a.String())
	path := filepath.Join(dir, "sources.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}
