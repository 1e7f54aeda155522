package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	gozap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/podpreset/podpreset/certs"
	"github.com/podpreset/podpreset/inventory"
	"github.com/podpreset/podpreset/presets/admissionpolicy"
	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/sources"
	"github.com/podpreset/podpreset/webhook"
)

// Paths the webhook configurations call.
const (
	mutatePodsPath      = "/mutate-pods"
	validatePresetsPath = "/validate-presets"
)

// RBAC for the server, generated into manifests/rbac by `make manifests`.
// What the sources controller needs more (ConfigMaps and Secrets in every
// namespace, preset status) is in manifests/sources/rbac.yaml, installed
// only with sources.
// The certificate Secret is the only one it may read, by name; create
// cannot be limited to a name, and lets it read nothing.
// +kubebuilder:rbac:groups=podpreset.dev,resources=podpresets;clusterpodpresets;podpresetpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=podpreset.dev,resources=podpresets/status;clusterpodpresets/status,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// With --admission-mode=auto the leader writes the compiled policies; every
// replica reads them.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingadmissionpolicies;mutatingadmissionpolicybindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch,namespace=system
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;update;patch,namespace=system,resourceNames=podpreset-webhook-certs
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create,namespace=system
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=system
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;list;watch
// The inventory (--inventory) watches pods as metadata, and rollouts read
// ReplicaSets and restart Deployments, StatefulSets and DaemonSets (a patch
// of the pod template's annotations), with an Event on each; the PodsMissed
// Event is on the preset.
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=update;patch,resourceNames=podpreset-webhook

// The webhook configurations, generated into manifests/webhook; the
// kustomize base adds the namespaceSelector and the service.
// +kubebuilder:webhook:path=/mutate-pods,mutating=true,failurePolicy=ignore,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=pods.podpreset.dev,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded,timeoutSeconds=5,matchPolicy=Equivalent
// +kubebuilder:webhook:path=/validate-presets,mutating=false,failurePolicy=ignore,sideEffects=None,groups=podpreset.dev,resources=podpresets;clusterpodpresets,verbs=create;update,versions=v1alpha1,name=presets.podpreset.dev,admissionReviewVersions=v1,timeoutSeconds=5,matchPolicy=Equivalent

func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

// run starts the manager and blocks until ctx ends or the manager fails.
func run(ctx context.Context, opts Options) error {
	level := zapcore.Level(-opts.LogLevel)
	log := zap.New(zap.UseDevMode(false), zap.Level(level), func(o *zap.Options) {
		if opts.LogFormat == "text" {
			o.Encoder = zapcore.NewConsoleEncoder(gozap.NewDevelopmentEncoderConfig())
		}
	})
	ctrl.SetLogger(log)
	ctx = ctrl.LoggerInto(ctx, log)

	var srcCfg *sources.Config
	if opts.SourcesConfig != "" {
		var err error
		if srcCfg, err = sources.LoadConfig(opts.SourcesConfig); err != nil {
			return err
		}
	}
	cfg, err := restConfig(opts.Kubeconfig)
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = opts.KubeAPIQPS, opts.KubeAPIBurst
	// The API server gzips each watch event for a client that accepts it:
	// measured in the admission benchmark, a sixth of the webhook's CPU
	// went to inflating its pod watch, and more of the API server's to
	// deflating it.
	cfg.DisableCompression = !opts.KubeAPICompression
	scheme, err := newScheme()
	if err != nil {
		return fmt.Errorf("building the scheme: %w", err)
	}
	// The two roles elect their leaders apart: a sources Deployment and
	// the webhook Deployment each have one.
	leaseID := "podpreset-webhook.podpreset.dev"
	if opts.Role == RoleSources {
		leaseID = "podpreset-sources.podpreset.dev"
	}
	// Two managers: this one, which every replica runs for as long as the
	// process lives (the webhook server, the probes, the metrics, the
	// preset index and the certificate every replica serves), and a leader
	// term's (below), elected, which borrows this one's cache.
	servingOpts := ctrl.Options{
		Cache:                  cacheOptions(opts, srcCfg != nil && opts.Role != RoleWebhook),
		Scheme:                 scheme,
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: opts.MetricsBindAddress},
		HealthProbeBindAddress: opts.HealthProbeBindAddress,
		PprofBindAddress:       opts.PprofBindAddress,
	}
	var ws *webhookSetup
	if opts.Role != RoleSources {
		if ws, err = newWebhookSetup(opts); err != nil {
			return err
		}
		servingOpts.WebhookServer = ws.server
	}
	mgr, err := ctrl.NewManager(cfg, servingOpts)
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	tenancy := sources.NewTenancy(srcCfg)
	var store *webhook.Store
	if ws != nil {
		store = webhook.NewStore()
		store.Tenancy = tenancy
		store.LiveNamespaces = mgr.GetAPIReader()
		if opts.AdmissionMode == webhook.ModeAuto {
			store.PolicyLayout = []string{}
			if opts.Namespace != "" {
				store.PolicyLayout = []string{opts.Namespace}
			}
		}
		if err := ws.register(mgr, opts, store); err != nil {
			return err
		}
	} else if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}
	terms := &leaderTerms{
		config: cfg,
		opts: ctrl.Options{
			Scheme:                        scheme,
			Logger:                        log,
			Metrics:                       metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress:        "0",
			NewCache:                      func(*rest.Config, cache.Options) (cache.Cache, error) { return borrowedCache{mgr.GetCache()}, nil },
			LeaderElection:                opts.LeaderElect,
			LeaderElectionID:              leaseID,
			LeaderElectionNamespace:       opts.Namespace,
			LeaderElectionReleaseOnCancel: true,
			LeaseDuration:                 &opts.LeaseDuration,
			RenewDeadline:                 &opts.RenewDeadline,
			RetryPeriod:                   &opts.RetryPeriod,
			// Each term builds its controllers again, under the same names.
			Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
		},
		setup: func(term manager.Manager) error {
			if ws != nil {
				if err := ws.registerLeader(term, opts, store); err != nil {
					return err
				}
			}
			if srcCfg != nil && opts.Role != RoleWebhook {
				return setupSources(term, srcCfg, tenancy)
			}
			return nil
		},
		log: log.WithName("leader"),
	}
	if err := mgr.Add(terms); err != nil {
		return fmt.Errorf("adding the leader's work: %w", err)
	}
	log.Info("starting", "role", opts.Role, "port", opts.Port, "certMode", opts.CertMode, "namespace", opts.Namespace, "sources", srcCfg != nil)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the manager: %w", err)
	}
	return nil
}

// leaderTerms runs what one replica at a time may do (certificate
// rotation, preset status, the pod inventory and rollouts, the sources
// controller) in a manager of its own, elected among the replicas, one
// term after another: when a term loses its lease (an API server that did
// not answer its renewals for --leader-elect-renew-deadline), its work
// stops and the replica stands for election again, while the webhook goes
// on serving. controller-runtime's manager ends its process when it loses
// its lease; with the webhook in the same manager, that turned a slow API
// server into a restarting webhook, and with failurePolicy Ignore, pods
// admitted without their presets meanwhile.
type leaderTerms struct {
	config *rest.Config
	opts   ctrl.Options
	setup  func(manager.Manager) error
	log    logr.Logger
}

// leaseLost is how controller-runtime's manager says that it lost its
// lease (it has no error value to compare with).
const leaseLost = "leader election lost"

func (l *leaderTerms) NeedLeaderElection() bool { return false }

// leading is 1 while this replica does the leader's work.
var leading = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "podpreset_leader",
	Help: "1 while this replica does the leader's work (certificate rotation, preset status, the pod inventory and rollouts, the sources controller), 0 otherwise.",
})

func init() { metrics.Registry.MustRegister(leading) }

func (l *leaderTerms) Start(ctx context.Context) error {
	for term := 1; ; term++ {
		mgr, err := ctrl.NewManager(l.config, l.opts)
		if err != nil {
			return fmt.Errorf("creating the leader's manager: %w", err)
		}
		if err := l.setup(mgr); err != nil {
			return err
		}
		ended, watched := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(watched)
			select {
			case <-mgr.Elected():
				leading.Set(1)
			case <-ended:
			}
		}()
		err = mgr.Start(ctx)
		close(ended)
		<-watched
		leading.Set(0)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil || err.Error() != leaseLost:
			return fmt.Errorf("running the leader's controllers: %w", err)
		}
		l.log.Info("lost the leader lease: certificate rotation, status, inventory and sources stop here until this replica is elected again; the webhook goes on serving", "term", term)
	}
}

// borrowedCache is the serving manager's cache as a leader term sees it:
// the serving manager starts it and keeps it for the process's life; a
// term only waits for it to sync. (Handlers that a term's controllers add
// to its informers stay after the term ends, feeding a stopped queue:
// controller-runtime does not remove them.)
type borrowedCache struct{ cache.Cache }

func (borrowedCache) Start(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// webhookSetup is the admission side: the webhook server, its certificate
// (self-managed or from --cert-dir), the preset index and the handlers.
type webhookSetup struct {
	server  crwebhook.Server
	loader  *certs.Loader
	watcher *certwatcher.CertWatcher
}

func newWebhookSetup(opts Options) (*webhookSetup, error) {
	tlsOpts := []func(*tls.Config){}
	if !opts.EnableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	// In self mode, the server reads its certificate from the loader,
	// which follows the Secret; in external mode, controller-runtime
	// watches --cert-dir.
	ws := &webhookSetup{loader: &certs.Loader{Secret: types.NamespacedName{Namespace: opts.Namespace, Name: opts.CertSecret}}}
	if opts.CertMode == CertModeSelf {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.GetCertificate = ws.loader.GetCertificate })
	} else {
		var err error
		if ws.watcher, err = certwatcher.New(filepath.Join(opts.CertDir, "tls.crt"), filepath.Join(opts.CertDir, "tls.key")); err != nil {
			return nil, fmt.Errorf("loading the certificate from --cert-dir %s: %w", opts.CertDir, err)
		}
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.GetCertificate = ws.watcher.GetCertificate })
	}
	ws.server = crwebhook.NewServer(crwebhook.Options{Host: opts.Host, Port: opts.Port, CertDir: opts.CertDir, TLSOpts: tlsOpts})
	return ws, nil
}

// register adds what every replica runs to the serving manager: the preset
// index, the handlers, the certificate it serves and the readiness checks.
func (ws *webhookSetup) register(mgr manager.Manager, opts Options, store *webhook.Store) error {
	// The manager runs the webhook server once it has been asked for it.
	server := mgr.GetWebhookServer()
	if err := mgr.Add(storeRunnable{store: store, mgr: mgr}); err != nil {
		return fmt.Errorf("adding the preset store: %w", err)
	}
	limiter := webhook.NewLimiter(opts.MaxInFlight, opts.MaxInFlightBytes)
	mutator := &webhook.PodMutator{
		Presets: store, Namespaces: mgr.GetCache(), LiveNamespaces: mgr.GetAPIReader(), OwnNamespace: opts.Namespace, Wait: opts.PresetWait,
		LogLevel: opts.AdmissionLogLevel,
	}
	if opts.AdmissionMode == webhook.ModeAuto {
		mutator.Policies = &webhook.PolicyServing{Reader: mgr.GetCache(), Store: store}
		// The policies' informers start with the process, not at the first
		// admission that asks.
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			for _, obj := range []client.Object{&admissionregistrationv1.MutatingAdmissionPolicy{}, &admissionregistrationv1.MutatingAdmissionPolicyBinding{}} {
				if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
					return fmt.Errorf("watching %T: %w", obj, err)
				}
			}
			return nil
		})); err != nil {
			return err
		}
	}
	server.Register(mutatePodsPath, webhook.Serve(mutator, limiter, webhook.MaxPodReviewBytes))
	server.Register(validatePresetsPath, webhook.Serve(&webhook.PresetValidator{Checks: store.Checks, Expect: store.Expect}, limiter, webhook.MaxPresetReviewBytes))

	leaf := ws.loader.Leaf
	switch opts.CertMode {
	case CertModeSelf:
		ws.loader.Cache = mgr.GetCache()
		if err := mgr.Add(ws.loader); err != nil {
			return fmt.Errorf("adding the certificate loader: %w", err)
		}
	case CertModeExternal:
		if err := mgr.Add(ws.watcher); err != nil {
			return fmt.Errorf("adding the certificate watcher: %w", err)
		}
		leaf = func() *x509.Certificate {
			if c, err := ws.watcher.GetCertificate(nil); err == nil && c != nil {
				return c.Leaf
			}
			return nil
		}
	}
	// Ready means the webhook server answers TLS with a valid certificate
	// that the webhook configurations' caBundle trusts, and the preset index
	// holds what the informers listed.
	if err := mgr.AddReadyzCheck("webhook-server", server.StartedChecker()); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}
	if err := mgr.AddReadyzCheck("certificate", certs.ReadyCheck(mgr.GetCache(), opts.WebhookConfigName, opts.WebhookConfigName, leaf, time.Now)); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}
	if err := mgr.AddReadyzCheck("presets", func(*http.Request) error {
		if !store.Ready() {
			return fmt.Errorf("the preset index is not loaded yet")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}
	return nil
}

// registerLeader adds a leader term's share of the webhook: preset status,
// the pod inventory and rollouts, and in self mode the certificate
// rotator.
func (ws *webhookSetup) registerLeader(mgr manager.Manager, opts Options, store *webhook.Store) error {
	recorder := mgr.GetEventRecorder("podpreset-webhook")
	status := &webhook.StatusController{Client: mgr.GetClient(), Store: store, Recorder: recorder}
	if opts.Inventory {
		inv := &inventory.Inventory{Store: store, OwnNamespace: opts.Namespace, Changed: status.Enqueue, Log: mgr.GetLogger().WithName("inventory")}
		inv.InjectCache(mgr.GetCache())
		status.Counter = inv
		rollout := &inventory.Rollout{Inventory: inv, Store: store, Client: mgr.GetClient(), Reader: mgr.GetAPIReader(),
			Recorder: recorder, Interval: opts.RolloutInterval, Log: mgr.GetLogger().WithName("rollout")}
		if err := mgr.Add(inv); err != nil {
			return fmt.Errorf("adding the pod inventory: %w", err)
		}
		if err := mgr.Add(rollout); err != nil {
			return fmt.Errorf("adding the rollout: %w", err)
		}
	}
	if err := status.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the preset status controller: %w", err)
	}
	policies := &webhook.PolicyController{Client: mgr.GetClient(), Reader: mgr.GetCache(), Store: store, OwnNamespace: opts.Namespace,
		Owner: opts.WebhookConfigName, Log: mgr.GetLogger().WithName("admission-policies"), Off: opts.AdmissionMode != webhook.ModeAuto}
	if err := mgr.Add(policies); err != nil {
		return fmt.Errorf("adding the admission policy controller: %w", err)
	}
	if opts.CertMode == CertModeSelf {
		rotator := &certs.Rotator{Client: mgr.GetClient(), Cache: mgr.GetCache(), Secret: ws.loader.Secret,
			Mutating: opts.WebhookConfigName, Validating: opts.WebhookConfigName, Config: opts.certConfig()}
		if err := rotator.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("adding the certificate rotator: %w", err)
		}
	}
	return nil
}

// setupSources starts the Consul and Vault clients and the materialising
// controller (leader only).
func setupSources(mgr manager.Manager, cfg *sources.Config, tenancy *sources.Tenancy) error {
	hub := &sources.Hub{Log: mgr.GetLogger().WithName("sources")}
	ctl := &sources.Controller{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Hub: hub, Tenancy: tenancy}
	if cfg.Consul != nil {
		c, err := sources.NewConsul(cfg.Consul)
		if err != nil {
			return err
		}
		hub.Consul = c
	}
	if cfg.Vault != nil {
		v, err := sources.NewVault(cfg.Vault)
		if err != nil {
			return err
		}
		hub.Vault, ctl.Vault = v, v
		hub.Refresh = cfg.Vault.RefreshInterval.Duration // the hub's default when zero
	}
	if err := ctl.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the sources controller: %w", err)
	}
	return nil
}

// cacheOptions limits what the cache holds of Secrets and webhook
// configurations to podpreset's own: the certificate Secret, and with
// sources, the ConfigMaps and Secrets labelled managed-by podpreset.
func cacheOptions(opts Options, withSources bool) cache.Options {
	byName := func(name string) fields.Selector { return fields.OneTermEqualSelector("metadata.name", name) }
	byObject := map[client.Object]cache.ByObject{
		&admissionregistrationv1.MutatingWebhookConfiguration{}:   {Field: byName(opts.WebhookConfigName)},
		&admissionregistrationv1.ValidatingWebhookConfiguration{}: {Field: byName(opts.WebhookConfigName)},
	}
	switch {
	case withSources:
		// Every Secret and ConfigMap podpreset writes, in every namespace
		// (its own too: a namespace-specific entry here would hide the
		// objects materialised there). The certificate Secret carries the
		// same label.
		byObject[&corev1.Secret{}] = cache.ByObject{Label: sources.CacheSelector()}
		byObject[&corev1.ConfigMap{}] = cache.ByObject{Label: sources.CacheSelector()}
	case opts.Role != RoleSources && opts.CertMode == CertModeSelf && opts.Namespace != "":
		// The webhook alone reads one Secret, its certificate, by name:
		// its Role allows no other.
		byObject[&corev1.Secret{}] = cache.ByObject{Namespaces: map[string]cache.Config{
			opts.Namespace: {FieldSelector: byName(opts.CertSecret)}}}
	}
	// The pod webhook reads a namespace's labels on every admission; no one
	// in this process writes a Namespace it read, so the cache hands out its
	// own copy rather than a deep copy per request.
	byObject[&corev1.Namespace{}] = cache.ByObject{UnsafeDisableDeepCopy: ptr.To(true)}
	// Only the admission policies podpreset writes (--admission-mode=auto),
	// read on admissions and never written back from the cache.
	managed := labels.SelectorFromSet(labels.Set{admissionpolicy.LabelManagedBy: admissionpolicy.ManagedBy})
	byObject[&admissionregistrationv1.MutatingAdmissionPolicy{}] = cache.ByObject{Label: managed, UnsafeDisableDeepCopy: ptr.To(true)}
	byObject[&admissionregistrationv1.MutatingAdmissionPolicyBinding{}] = cache.ByObject{Label: managed, UnsafeDisableDeepCopy: ptr.To(true)}
	// Nothing reads managedFields from the cache: dropping them keeps the
	// inventory's pods (and every other object) small.
	return cache.Options{ByObject: byObject, DefaultTransform: cache.TransformStripManagedFields()}
}

// storeRunnable keeps the preset index up to date on every replica (it
// does not need leader election).
type storeRunnable struct {
	store *webhook.Store
	mgr   manager.Manager
}

var _ manager.LeaderElectionRunnable = storeRunnable{}

func (r storeRunnable) NeedLeaderElection() bool { return false }

func (r storeRunnable) Start(ctx context.Context) error {
	if err := r.store.Watch(ctx, r.mgr.GetCache()); err != nil {
		return err
	}
	r.store.Run(ctx)
	return nil
}
