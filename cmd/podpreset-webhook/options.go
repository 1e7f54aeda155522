package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"
)

// Options is everything the server is configured with.
type Options struct {
	// Kubeconfig is the kubeconfig file; empty means in-cluster.
	Kubeconfig string
	// Namespace is the webhook's own namespace, whose pods are left alone.
	Namespace string
	// CertDir holds tls.crt and tls.key for the webhook server.
	CertDir string
	// Host and Port are where the webhook server listens.
	Host string
	Port int
	// MetricsBindAddress serves /metrics; "0" turns it off.
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz.
	HealthProbeBindAddress string
	// LeaderElect turns on leader election (for the controllers that only
	// one replica may run).
	LeaderElect bool
	// EnableHTTP2 lets the webhook server speak HTTP/2 (off: CVE-2023-44487).
	EnableHTTP2 bool
	// LogFormat is json or text; LogLevel the verbosity (1 logs every
	// mutation).
	LogFormat string
	LogLevel  int
}

func defaultOptions() Options {
	return Options{
		Namespace:              os.Getenv("POD_NAMESPACE"),
		CertDir:                "/tmp/k8s-webhook-server/serving-certs",
		Port:                   9443,
		MetricsBindAddress:     ":8080",
		HealthProbeBindAddress: ":8081",
		LogFormat:              "json",
	}
}

func parseFlags(args []string) (Options, error) {
	o := defaultOptions()
	fs := pflag.NewFlagSet("podpreset-webhook", pflag.ContinueOnError)
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty means the in-cluster configuration")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "the webhook's own namespace, whose pods are left alone (default $POD_NAMESPACE)")
	fs.StringVar(&o.CertDir, "cert-dir", o.CertDir, "directory holding tls.crt and tls.key for the webhook server")
	fs.StringVar(&o.Host, "host", "", "address the webhook server listens on (default all)")
	fs.IntVar(&o.Port, "port", o.Port, "port the webhook server listens on")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, `address of /metrics; "0" turns it off`)
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "address of /healthz and /readyz")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "elect a leader among replicas")
	fs.BoolVar(&o.EnableHTTP2, "enable-http2", false, "let the webhook server speak HTTP/2")
	fs.StringVar(&o.LogFormat, "log-format", o.LogFormat, "log format: json or text")
	fs.IntVarP(&o.LogLevel, "verbosity", "v", 0, "log verbosity: 1 logs every mutation")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

// Validate checks the options, naming each flag that is wrong.
func (o *Options) Validate() error {
	var errs []error
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d: must be between 1 and 65535", o.Port))
	}
	if o.LogFormat != "json" && o.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("--log-format %q: must be json or text", o.LogFormat))
	}
	if o.LogLevel < 0 {
		errs = append(errs, fmt.Errorf("-v %d: must not be negative", o.LogLevel))
	}
	if o.CertDir == "" {
		errs = append(errs, errors.New("--cert-dir: must not be empty"))
	}
	return errors.Join(errs...)
}
