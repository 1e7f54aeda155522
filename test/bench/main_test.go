// Package bench measures admission through a real kube-apiserver: pod
// creation with no webhook, with a do-nothing webhook this package serves,
// with podpreset injecting nothing and injecting 5 presets, and the
// already-merged pod created directly, in interleaved rounds on one control
// plane, so that every figure stands beside its baselines from the same run
// (`make bench-e2e`). Its TestMain starts the control plane only when a
// benchmark is asked for; the package has no tests, and `make test` leaves
// it out.
package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/test/cluster"
)

var (
	cp     *cluster.Cluster
	k8s    client.Client
	scheme = runtime.NewScheme()
)

var (
	webhookBinary  = flag.String("webhook-binary", "", "the podpreset-webhook binary to measure (default: built from the working tree); a previous commit's, for a before and after")
	webhookProfile = flag.String("webhook-profile", "", "write the webhook's CPU profile, 30 seconds at a time for as long as the benchmarks run, to PREFIX.N.pb.gz (go tool pprof -top BINARY PREFIX.*.pb.gz)")
)

// profileWebhook fetches the webhook's CPU profile in 30-second pieces
// until ctx ends.
func profileWebhook(ctx context.Context, addr, prefix string) {
	for i := 0; ctx.Err() == nil; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/profile?seconds=30", nil)
		if err != nil {
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "bench: the webhook's profile: %v\n", err)
			}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			fmt.Fprintf(os.Stderr, "bench: the webhook's profile: HTTP %d, %v\n", resp.StatusCode, err)
			return
		}
		if err := os.WriteFile(fmt.Sprintf("%s.%d.pb.gz", prefix, i), b, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return
		}
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run())
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	logf.SetLogger(logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	var logs cluster.Buffer
	// No controller manager: nothing here needs one, and its work would
	// only add noise to the figures.
	if cp, err = cluster.Start(ctx, cluster.Options{Root: root, Logs: &logs}); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: stopping the control plane: %v\n", err)
		}
	}()
	bin := *webhookBinary
	if bin == "" {
		if bin, err = cp.WebhookBinary(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
	}
	// The webhook as installed: default flags, no sources; with
	// -webhook-profile, its pprof endpoint on loopback.
	var args []string
	pprofAddr := ""
	if *webhookProfile != "" {
		port, err := cluster.FreePort()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		pprofAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args = append(args, "--pprof-bind-address="+pprofAddr)
	}
	if err := cp.StartWebhook(ctx, bin, &logs, args...); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n%s", err, logs.String())
		return 1
	}
	if pprofAddr != "" {
		done := make(chan struct{})
		defer func() { cancel(); <-done }()
		go func() { defer close(done); profileWebhook(ctx, pprofAddr, *webhookProfile) }()
	}
	if k8s, err = client.New(cp.Config, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	return m.Run()
}
