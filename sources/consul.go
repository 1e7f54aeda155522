package sources

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// KV is one Consul key and its value.
type KV struct {
	Key         string
	Value       []byte
	ModifyIndex uint64
}

// Consul is what the controller needs of Consul: blocking reads of a key or
// a prefix. A read returns when the index passes waitIndex, or when the
// wait time ends (with the same index); waitIndex 0 returns at once.
type Consul interface {
	// Key reads one key; nil when it does not exist.
	Key(ctx context.Context, key string, waitIndex uint64) (kv *KV, index uint64, err error)
	// Prefix reads every key under a prefix, sorted by key.
	Prefix(ctx context.Context, prefix string, waitIndex uint64) (kvs []KV, index uint64, err error)
}

// errConsulRedirect is the error of a Consul read that was redirected.
var errConsulRedirect = errors.New("consul answered with a redirect, which is never followed")

// consulClient is Consul over its HTTP API, with consul/api.
type consulClient struct {
	kv        *consulapi.KV
	dc        string
	tokenFile string
	wait      time.Duration
}

// NewConsul returns a Consul client for the configuration.
func NewConsul(c *ConsulConfig) (Consul, error) {
	cfg := consulapi.DefaultNonPooledConfig()
	cfg.Address = c.Address
	if rest, ok := strings.CutPrefix(c.Address, "https://"); ok {
		cfg.Address, cfg.Scheme = rest, "https"
	} else if rest, ok := strings.CutPrefix(c.Address, "http://"); ok {
		cfg.Address, cfg.Scheme = rest, "http"
	}
	cfg.Datacenter = c.Datacenter
	cfg.Token, cfg.TokenFile = "", ""
	cfg.TLSConfig = consulapi.TLSConfig{CAFile: c.TLS.CAFile, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile,
		Address: c.TLS.ServerName, InsecureSkipVerify: c.TLS.InsecureSkipVerify}
	// One connection per blocking query: they are long, and there is one
	// per watched key or prefix.
	cfg.Transport.MaxIdleConnsPerHost = 64
	hc, err := consulapi.NewHttpClient(cfg.Transport, cfg.TLSConfig)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", c.Address, err)
	}
	// A KV read is never redirected: Consul answers a key with a . or ..
	// segment with a redirect to the cleaned path, which would step out of
	// the prefix that tenancy checked.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return errConsulRedirect }
	cfg.HttpClient = hc
	cl, err := consulapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", c.Address, err)
	}
	wait := c.WaitTime.Duration
	if wait == 0 {
		wait = 5 * time.Minute
	}
	return &consulClient{kv: cl.KV(), dc: c.Datacenter, tokenFile: c.TokenFile, wait: wait}, nil
}

func (c *consulClient) opts(ctx context.Context, waitIndex uint64) (*consulapi.QueryOptions, error) {
	q := &consulapi.QueryOptions{Datacenter: c.dc, WaitIndex: waitIndex, WaitTime: c.wait}
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading the Consul token: %w", err)
		}
		q.Token = strings.TrimSpace(string(b))
	}
	return q.WithContext(ctx), nil
}

func (c *consulClient) Key(ctx context.Context, key string, waitIndex uint64) (*KV, uint64, error) {
	q, err := c.opts(ctx, waitIndex)
	if err != nil {
		return nil, 0, err
	}
	p, meta, err := c.kv.Get(key, q)
	if err != nil {
		return nil, 0, consulError(err)
	}
	if p == nil {
		return nil, meta.LastIndex, nil
	}
	return &KV{Key: p.Key, Value: p.Value, ModifyIndex: p.ModifyIndex}, meta.LastIndex, nil
}

func (c *consulClient) Prefix(ctx context.Context, prefix string, waitIndex uint64) ([]KV, uint64, error) {
	q, err := c.opts(ctx, waitIndex)
	if err != nil {
		return nil, 0, err
	}
	ps, meta, err := c.kv.List(prefix, q)
	if err != nil {
		return nil, 0, consulError(err)
	}
	out := make([]KV, 0, len(ps))
	for _, p := range ps {
		out = append(out, KV{Key: p.Key, Value: p.Value, ModifyIndex: p.ModifyIndex})
	}
	return out, meta.LastIndex, nil
}

// consulError says "unreachable" when Consul could not be reached, and
// drops the request URL (with its query) from the message.
func consulError(err error) error {
	if errors.Is(err, errConsulRedirect) {
		return errConsulRedirect
	}
	var ne net.Error
	if errors.As(err, &ne) {
		var op *net.OpError
		if errors.As(err, &op) {
			return fmt.Errorf("consul unreachable: %w", op)
		}
		return fmt.Errorf("consul unreachable: %w", ne)
	}
	return fmt.Errorf("consul: %w", err)
}
