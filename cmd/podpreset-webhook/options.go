package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/podpreset/podpreset/certs"
	"github.com/podpreset/podpreset/inventory"
	"github.com/podpreset/podpreset/webhook"
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
	// PprofBindAddress serves Go's /debug/pprof; "0" (the default) turns
	// it off.
	PprofBindAddress string
	// LeaderElect turns on leader election (for the controllers that only
	// one replica may run).
	LeaderElect bool
	// LeaseDuration, RenewDeadline and RetryPeriod time the election: a
	// leader that cannot renew its lease within RenewDeadline stops its
	// leader work (the webhook goes on serving); the others wait
	// LeaseDuration after the last renewal before one takes over, trying
	// every RetryPeriod.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// EnableHTTP2 lets the webhook server speak HTTP/2 (off: CVE-2023-44487).
	EnableHTTP2 bool
	// LogFormat is json or text; LogLevel the verbosity (1 logs every
	// mutation).
	LogFormat string
	LogLevel  int
	// AdmissionLogLevel is the verbosity at which each pod admission is
	// logged, one line; 0 logs every one.
	AdmissionLogLevel int

	// CertMode is self (the webhook issues, rotates and publishes its own
	// certificates) or external (it serves --cert-dir, as cert-manager
	// writes it).
	CertMode string
	// CertSecret is the Secret in Namespace that self mode keeps.
	CertSecret string
	// WebhookConfigName names the MutatingWebhookConfiguration and the
	// ValidatingWebhookConfiguration whose caBundle self mode keeps, and
	// that readiness checks.
	WebhookConfigName string
	// ServiceName is the webhook Service; its DNS names go into the serving
	// certificate.
	ServiceName string
	// CertExtraSANs are more DNS names or IP addresses for the serving
	// certificate.
	CertExtraSANs []string
	// Certs are the lifetimes of self mode.
	CALifetime, CertLifetime, CertPropagation time.Duration
	CertLookahead                             float64

	// KubeAPIQPS and KubeAPIBurst limit the client's requests to the API
	// server.
	KubeAPIQPS   float32
	KubeAPIBurst int
	// KubeAPICompression lets the API server gzip its responses and watch
	// streams to this client (off: the webhook runs next to its API
	// server, where compressing every watch event costs the API server
	// CPU and saves no time).
	KubeAPICompression bool

	// Role is what this process runs: all (the webhook, and the sources
	// controller when SourcesConfig is set), webhook (the webhook only; the
	// sources configuration only for tenancy checks) or sources (the
	// sources controller only).
	Role string

	// SourcesConfig is the Consul, Vault and tenancy configuration file;
	// empty turns sources off (presets that read them are refused).
	SourcesConfig string

	// ShowVersion prints the version and exits.
	ShowVersion bool

	// MaxInFlight and MaxInFlightBytes bound the admission requests served
	// at once, in number and in request bytes; beyond them a request is
	// answered 429 at once.
	MaxInFlight, MaxInFlightBytes int64

	// Inventory runs, on the leader, the pod inventory (status.pods, the
	// Ready, PodsStale and PodsMissed conditions) and rollouts.
	Inventory bool
	// RolloutInterval is the least time between two workload restarts,
	// cluster-wide.
	RolloutInterval time.Duration
	// PresetWait is the longest a pod admission waits for a preset this
	// replica validated a moment before.
	PresetWait time.Duration
	// AdmissionMode is webhook (every preset served by the pod webhook)
	// or auto (presets the compiler can express served by native
	// MutatingAdmissionPolicies, one namespace at a time).
	AdmissionMode string
}

// Roles.
const (
	RoleAll     = "all"
	RoleWebhook = "webhook"
	RoleSources = "sources"
)

// Certificate modes.
const (
	CertModeSelf     = "self"
	CertModeExternal = "external"
)

func defaultOptions() Options {
	return Options{
		Namespace:              os.Getenv("POD_NAMESPACE"),
		CertDir:                "/tmp/k8s-webhook-server/serving-certs",
		Port:                   9443,
		MetricsBindAddress:     ":8080",
		HealthProbeBindAddress: ":8081",
		PprofBindAddress:       "0",
		LogFormat:              "json",
		CertMode:               CertModeSelf,
		CertSecret:             "podpreset-webhook-certs",
		WebhookConfigName:      "podpreset-webhook",
		ServiceName:            "podpreset-webhook-service",
		CALifetime:             certs.DefaultConfig().CALifetime,
		CertLifetime:           certs.DefaultConfig().LeafLifetime,
		CertPropagation:        certs.DefaultConfig().Propagation,
		CertLookahead:          certs.DefaultConfig().Lookahead,
		Role:                   RoleAll,
		KubeAPIQPS:             50,
		KubeAPIBurst:           100,
		MaxInFlight:            256,
		MaxInFlightBytes:       8 << 20,
		Inventory:              true,
		RolloutInterval:        inventory.DefaultInterval,
		PresetWait:             time.Second,
		AdmissionMode:          webhook.ModeWebhook,
		AdmissionLogLevel:      1,
		LeaseDuration:          15 * time.Second,
		RenewDeadline:          10 * time.Second,
		RetryPeriod:            2 * time.Second,
	}
}

func parseFlags(args []string) (Options, error) {
	o := defaultOptions()
	fs := pflag.NewFlagSet("podpreset-webhook", pflag.ContinueOnError)
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty means the in-cluster configuration")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "the webhook's own namespace, whose pods are left alone (default $POD_NAMESPACE)")
	fs.StringVar(&o.CertMode, "cert-mode", o.CertMode, "self: issue, rotate and publish the serving certificate; external: serve --cert-dir (cert-manager)")
	fs.StringVar(&o.CertDir, "cert-dir", o.CertDir, "directory holding tls.crt and tls.key (external mode), reloaded when they change")
	fs.StringVar(&o.CertSecret, "cert-secret", o.CertSecret, "Secret in --namespace where self mode keeps the CA and serving certificate")
	fs.StringVar(&o.WebhookConfigName, "webhook-config-name", o.WebhookConfigName, "name of the Mutating- and ValidatingWebhookConfiguration whose caBundle self mode keeps")
	fs.StringVar(&o.ServiceName, "service-name", o.ServiceName, "the webhook Service, whose DNS names the serving certificate carries")
	fs.StringSliceVar(&o.CertExtraSANs, "cert-extra-sans", nil, "more DNS names or IP addresses for the serving certificate")
	fs.DurationVar(&o.CALifetime, "ca-lifetime", o.CALifetime, "lifetime of a CA (self mode)")
	fs.DurationVar(&o.CertLifetime, "cert-lifetime", o.CertLifetime, "lifetime of a serving certificate (self mode)")
	fs.Float64Var(&o.CertLookahead, "cert-lookahead", o.CertLookahead, "renew a certificate when this fraction of its lifetime is left (self mode)")
	fs.DurationVar(&o.CertPropagation, "cert-propagation", o.CertPropagation, "how long a new CA is in the caBundle before it signs the served certificate (self mode)")
	fs.StringVar(&o.SourcesConfig, "sources-config", "", "Consul, Vault and tenancy configuration file (docs/sources.md); empty turns Consul and Vault sources off")
	fs.StringVar(&o.Role, "role", o.Role, "all: the webhook, and the sources controller with --sources-config; webhook: the webhook only; sources: the sources controller only (a Deployment of its own, so that the webhook's service account needs no access to Secrets)")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "requests per second to the API server (the sources controller writes a ConfigMap or Secret and a status per change)")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "burst of requests to the API server")
	fs.BoolVar(&o.KubeAPICompression, "kube-api-compression", o.KubeAPICompression, "let the API server gzip its responses and watch streams to the webhook: for an API server across a slow link; off, it spends no CPU compressing every pod event it sends")
	fs.BoolVar(&o.ShowVersion, "version", false, "print the version and exit")
	fs.BoolVar(&o.Inventory, "inventory", o.Inventory, "on the leader, count every pod as applied, stale, missed or predating for each preset that selects it (status.pods), and restart the workloads of presets with spec.rollout.policy OnChange; needs list and watch of pods")
	fs.DurationVar(&o.RolloutInterval, "rollout-interval", o.RolloutInterval, "least time between two workload restarts, cluster-wide (spec.rollout.minInterval paces each preset)")
	fs.DurationVar(&o.PresetWait, "preset-wait", o.PresetWait, "longest a pod admission waits for a preset of its namespace that this replica validated a moment before to reach the index; 0 never waits")
	fs.Int64Var(&o.MaxInFlight, "max-inflight", o.MaxInFlight, "admission requests served at once; more are answered 429 at once")
	fs.Int64Var(&o.MaxInFlightBytes, "max-inflight-bytes", o.MaxInFlightBytes, "bytes of admission request bodies held at once (a pod review is at most 4 MiB); more are answered 429 at once")
	fs.StringVar(&o.Host, "host", "", "address the webhook server listens on (default all)")
	fs.IntVar(&o.Port, "port", o.Port, "port the webhook server listens on")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, `address of /metrics; "0" turns it off`)
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress, "address of /healthz and /readyz")
	fs.StringVar(&o.PprofBindAddress, "pprof-bind-address", o.PprofBindAddress, `address of Go's /debug/pprof profiles, unauthenticated: bind it to 127.0.0.1 and reach it with kubectl port-forward; "0" turns it off`)
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "elect a leader among replicas")
	fs.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", o.LeaseDuration, "how long the other replicas wait after the leader's last renewal before one of them takes over")
	fs.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", o.RenewDeadline, "how long the leader tries to renew its lease before it stops its leader work (the webhook goes on serving) and stands for election again")
	fs.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", o.RetryPeriod, "how often replicas try to acquire or renew the lease")
	fs.BoolVar(&o.EnableHTTP2, "enable-http2", false, "let the webhook server speak HTTP/2")
	fs.StringVar(&o.AdmissionMode, "admission-mode", o.AdmissionMode, "webhook: the pod webhook serves every preset; auto: the leader compiles the presets of each namespace into a MutatingAdmissionPolicy the API server runs itself (Kubernetes 1.36+), and the webhook serves only the namespaces whose presets it cannot (Consul or Vault values)")
	fs.StringVar(&o.LogFormat, "log-format", o.LogFormat, "log format: json or text")
	fs.IntVarP(&o.LogLevel, "verbosity", "v", 0, "log verbosity: 1 logs every pod admission (--admission-log-level), source change, status write and rollout decision; 5 adds controller-runtime's reconciles")
	fs.IntVar(&o.AdmissionLogLevel, "admission-log-level", o.AdmissionLogLevel, "the verbosity (-v) at which each pod admission is logged, one line with the pod, the result, the presets applied, the fields of conflicts and the time taken, never a value; 0 logs every admission")
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
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst <= 0 {
		errs = append(errs, fmt.Errorf("--kube-api-qps %v, --kube-api-burst %d: must be positive", o.KubeAPIQPS, o.KubeAPIBurst))
	}
	if o.MaxInFlight < 1 || o.MaxInFlightBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("--max-inflight %d, --max-inflight-bytes %d: must be at least 1 and 1 MiB", o.MaxInFlight, o.MaxInFlightBytes))
	}
	if o.RolloutInterval < time.Second {
		errs = append(errs, fmt.Errorf("--rollout-interval %s: must be at least 1s", o.RolloutInterval))
	}
	if o.PresetWait < 0 || o.PresetWait > 3*time.Second {
		errs = append(errs, fmt.Errorf("--preset-wait %s: must be between 0 and 3s (the pod webhook's timeout is 5s)", o.PresetWait))
	}
	// client-go's own rule: the lease outlasts the renewal deadline, which
	// outlasts 1.2 retry periods.
	if o.RetryPeriod <= 0 || o.RenewDeadline <= o.RetryPeriod*6/5 || o.LeaseDuration <= o.RenewDeadline {
		errs = append(errs, fmt.Errorf("--leader-elect-lease-duration %s, --leader-elect-renew-deadline %s, --leader-elect-retry-period %s: must be lease duration > renew deadline > 1.2 × retry period > 0",
			o.LeaseDuration, o.RenewDeadline, o.RetryPeriod))
	}
	if o.AdmissionMode != webhook.ModeWebhook && o.AdmissionMode != webhook.ModeAuto {
		errs = append(errs, fmt.Errorf("--admission-mode %q: must be webhook or auto", o.AdmissionMode))
	}
	if o.LogLevel < 0 {
		errs = append(errs, fmt.Errorf("-v %d: must not be negative", o.LogLevel))
	}
	if o.AdmissionLogLevel < 0 {
		errs = append(errs, fmt.Errorf("--admission-log-level %d: must not be negative", o.AdmissionLogLevel))
	}
	switch o.Role {
	case RoleAll, RoleWebhook:
	case RoleSources:
		if o.SourcesConfig == "" {
			errs = append(errs, errors.New("--role=sources: needs --sources-config"))
		}
		if o.LeaderElect && o.Namespace == "" {
			errs = append(errs, errors.New("--namespace (or $POD_NAMESPACE): needed with --leader-elect, for the lease"))
		}
		return errors.Join(errs...) // no webhook server, no certificates
	default:
		errs = append(errs, fmt.Errorf("--role %q: must be all, webhook or sources", o.Role))
	}
	switch o.CertMode {
	case CertModeSelf:
		if o.Namespace == "" {
			errs = append(errs, errors.New("--namespace (or $POD_NAMESPACE): needed in --cert-mode=self, for the certificate Secret"))
		} else if err := o.certConfig().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("--ca-lifetime, --cert-lifetime, --cert-lookahead, --cert-propagation: %w", err))
		}
	case CertModeExternal:
		if o.CertDir == "" {
			errs = append(errs, errors.New("--cert-dir: must not be empty in --cert-mode=external"))
		}
	default:
		errs = append(errs, fmt.Errorf("--cert-mode %q: must be self or external", o.CertMode))
	}
	return errors.Join(errs...)
}

// certConfig is the rotator's configuration: the Service's DNS names and
// the extra names or IP addresses.
func (o *Options) certConfig() certs.Config {
	c := certs.Config{CALifetime: o.CALifetime, LeafLifetime: o.CertLifetime, Lookahead: o.CertLookahead, Propagation: o.CertPropagation}
	if o.Namespace != "" {
		c.DNSNames = certs.SANs(o.ServiceName, o.Namespace)
	}
	for _, san := range o.CertExtraSANs {
		if ip := net.ParseIP(san); ip != nil {
			c.IPs = append(c.IPs, ip)
		} else {
			c.DNSNames = append(c.DNSNames, san)
		}
	}
	return c
}
