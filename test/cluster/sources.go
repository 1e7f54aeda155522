package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
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

// StartConsul starts bin/consul in dev mode on free loopback ports and
// waits until it has a leader.
func StartConsul(ctx context.Context, root string, logs io.Writer) (*Consul, error) {
	bin := filepath.Join(root, "bin", "consul")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("bin/consul is missing: run hack/build-servers.sh (make test does): %w", err)
	}
	ports := make([]int, 5)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	dir, err := os.MkdirTemp("", "podpreset-consul-")
	if err != nil {
		return nil, err
	}
	if logs == nil {
		logs = io.Discard
	}
	c := &Consul{Addr: "127.0.0.1:" + strconv.Itoa(ports[0]), dir: dir, bin: bin, logs: logs, args: []string{"agent", "-dev",
		"-bind=127.0.0.1", "-client=127.0.0.1", "-data-dir=" + dir,
		"-http-port=" + strconv.Itoa(ports[0]), "-server-port=" + strconv.Itoa(ports[1]),
		"-serf-lan-port=" + strconv.Itoa(ports[2]), "-serf-wan-port=" + strconv.Itoa(ports[3]),
		"-dns-port=-1", "-grpc-port=-1"}}
	if err := c.Start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// Start starts a stopped Consul again, on the same ports, empty (dev
// mode keeps nothing), and waits until it has a leader.
func (c *Consul) Start(ctx context.Context) error {
	p, err := startProcess(ctx, "consul", c.logs, c.bin, c.args...)
	if err != nil {
		return err
	}
	c.proc = p
	if err := waitHTTP(p, "http://"+c.Addr+"/v1/status/leader", func(body string) bool { return len(body) > 2 }); err != nil {
		p.stop()
		return fmt.Errorf("consul: %w", err)
	}
	return nil
}

// Halt stops Consul, keeping its ports for Start.
func (c *Consul) Halt() { c.proc.stop() }

// Stop stops Consul and removes its data.
func (c *Consul) Stop() {
	c.proc.stop()
	os.RemoveAll(c.dir)
}

// StartVault starts bin/vault in dev mode (in memory, unsealed, KV v2 at
// secret/) on a free loopback port, with a random root token, and waits
// until it is healthy.
func StartVault(ctx context.Context, root string, logs io.Writer) (*Vault, error) {
	bin := filepath.Join(root, "bin", "vault")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("bin/vault is missing: run hack/build-servers.sh (make test does): %w", err)
	}
	port, err := freePort()
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
	v := &Vault{Addr: "http://127.0.0.1:" + strconv.Itoa(port), RootToken: "root-" + hex.EncodeToString(tok), bin: bin, logs: logs}
	// The root token is passed as a flag: it is a throwaway dev server's.
	v.args = []string{"server", "-dev", "-dev-no-store-token",
		"-dev-listen-address=127.0.0.1:" + strconv.Itoa(port), "-dev-root-token-id=" + v.RootToken}
	if err := v.Start(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// Start starts a stopped Vault again, on the same port with the same root
// token, empty (dev mode keeps nothing), and waits until it is healthy.
func (v *Vault) Start(ctx context.Context) error {
	p, err := startProcess(ctx, "vault", v.logs, v.bin, v.args...)
	if err != nil {
		return err
	}
	v.proc = p
	if err := waitHTTP(p, v.Addr+"/v1/sys/health", func(string) bool { return true }); err != nil {
		p.stop()
		return fmt.Errorf("vault: %w", err)
	}
	return nil
}

// Stop stops Vault; its storage was in memory.
func (v *Vault) Stop() { v.proc.stop() }

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
