// Command podpreset-webhook is podpreset's server: a controller-runtime
// manager serving the pod mutating webhook and the preset validating webhook,
// with informer caches for PodPresets, ClusterPodPresets and Namespaces so
// that admission makes no API call, and beside it, one term after another, an
// elected manager for the leader's work (certificates, status, inventory,
// sources) that borrows its cache: losing the lease ends a term, never the
// process (see leaderTerms).
//
// Its API client asks for no gzip (the API server would compress every pod
// watch event: --kube-api-compression turns it back on for a distant API
// server).
//
// main parses flags into Options, validates them and calls run; run is what
// the e2e tests and `make run` start.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
)

// version is set at build time (make image: -X main.version=...).
var version = "dev"

func main() {
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		os.Exit(0)
	}
	if err == nil && opts.ShowVersion {
		fmt.Println("podpreset-webhook", version)
		os.Exit(0)
	}
	if err == nil {
		err = opts.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "podpreset-webhook: %v\n", err)
		os.Exit(2)
	}
	if err := serve(opts); err != nil {
		fmt.Fprintf(os.Stderr, "podpreset-webhook: %v\n", err)
		os.Exit(1)
	}
}

// serve runs the server until SIGINT or SIGTERM.
func serve(opts Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return run(ctx, opts)
}
