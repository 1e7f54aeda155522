package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/podpreset/podpreset/internal/managed"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "podpreset-system")
	got, err := parseFlags([]string{"--port", "10250", "--log-format", "text", "-v", "1", "--leader-elect", "--leader-elect-lease-duration=40s"})
	if err != nil {
		t.Fatal(err)
	}
	want := defaultOptions()
	want.Namespace, want.Port, want.LogFormat, want.LogLevel, want.LeaderElect, want.LeaseDuration = "podpreset-system", 10250, "text", 1, true, 40*time.Second
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	if _, err := parseFlags([]string{"stray"}); err == nil || !strings.Contains(err.Error(), "stray") {
		t.Errorf("a stray argument gave %v, want an error naming it", err)
	}
}

func TestValidateNamesEachBadFlag(t *testing.T) {
	cases := map[string]struct {
		change func(*Options)
		want   []string
	}{
		"defaults with a namespace": {change: func(o *Options) { o.Namespace = "podpreset-system" }},
		"bad port and log format": {
			change: func(o *Options) { o.Namespace, o.Port, o.LogFormat = "ns", 0, "xml" },
			want:   []string{"--port 0", `--log-format "xml"`},
		},
		"self mode without a namespace": {
			change: func(o *Options) { o.Namespace = "" },
			want:   []string{"--namespace (or $POD_NAMESPACE)"},
		},
		"self mode with a CA shorter than the serving certificate": {
			change: func(o *Options) { o.Namespace, o.CALifetime = "ns", time.Hour },
			want:   []string{"--ca-lifetime", "longer than the CA's"},
		},
		"external mode without a cert dir": {
			change: func(o *Options) { o.CertMode, o.CertDir = CertModeExternal, "" },
			want:   []string{"--cert-dir"},
		},
		"an unknown cert mode": {
			change: func(o *Options) { o.CertMode = "manual" },
			want:   []string{`--cert-mode "manual"`},
		},
		"the sources role without a configuration": {
			change: func(o *Options) { o.Role, o.Namespace = RoleSources, "ns" },
			want:   []string{"--role=sources: needs --sources-config"},
		},
		"the sources role needs no certificate settings": {
			change: func(o *Options) {
				o.Role, o.SourcesConfig, o.Namespace, o.CertMode, o.CertDir = RoleSources, "/etc/sources.yaml", "", CertModeExternal, ""
			},
		},
		"the sources role electing a leader without a namespace": {
			change: func(o *Options) {
				o.Role, o.SourcesConfig, o.Namespace, o.LeaderElect = RoleSources, "/etc/sources.yaml", "", true
			},
			want: []string{"--namespace (or $POD_NAMESPACE): needed with --leader-elect"},
		},
		"a renewal deadline as long as the lease": {
			change: func(o *Options) { o.Namespace, o.RenewDeadline = "ns", o.LeaseDuration },
			want:   []string{"--leader-elect-lease-duration 15s, --leader-elect-renew-deadline 15s, --leader-elect-retry-period 2s: must be"},
		},
		"a retry period too close to the renewal deadline": {
			change: func(o *Options) { o.Namespace, o.RetryPeriod = "ns", 9*time.Second },
			want:   []string{"--leader-elect-retry-period 9s"},
		},
		"an unknown role": {
			change: func(o *Options) { o.Role, o.Namespace = "controller", "ns" },
			want:   []string{`--role "controller"`},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := defaultOptions()
			tc.change(&o)
			err := o.Validate()
			if len(tc.want) == 0 && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			for _, want := range tc.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %v, want it to name %s", err, want)
				}
			}
		})
	}
}

func TestCertConfigSANs(t *testing.T) {
	o := defaultOptions()
	o.Namespace, o.CertExtraSANs = "podpreset-system", []string{"127.0.0.1", "webhook.example"}
	c := o.certConfig()
	want := []string{"podpreset-webhook-service", "podpreset-webhook-service.podpreset-system",
		"podpreset-webhook-service.podpreset-system.svc", "podpreset-webhook-service.podpreset-system.svc.cluster.local", "webhook.example"}
	if diff := cmp.Diff(want, c.DNSNames); diff != "" {
		t.Errorf("DNS names (-want +got):\n%s", diff)
	}
	if len(c.IPs) != 1 || c.IPs[0].String() != "127.0.0.1" {
		t.Errorf("IPs %v", c.IPs)
	}
}

// TestCacheSeesEveryMaterialisedSecret: with sources, the cache holds the
// Secrets podpreset writes in every namespace, its own included (an entry
// for the certificate alone would hide those materialised there from the
// controller's repairs and its sweep); without, only the certificate.
func TestCacheSeesEveryMaterialisedSecret(t *testing.T) {
	opts := defaultOptions()
	opts.Namespace = "podpreset-system"
	secretsOf := func(c cache.Options) cache.ByObject {
		for o, by := range c.ByObject {
			if _, ok := o.(*corev1.Secret); ok {
				return by
			}
		}
		t.Fatal("no Secret entry")
		return cache.ByObject{}
	}
	with := secretsOf(cacheOptions(opts, true))
	if len(with.Namespaces) != 0 || with.Label == nil || !with.Label.Matches(labels.Set(managed.Labels())) {
		t.Errorf("with sources: namespaces %v, label %v; want every namespace, by the managed-by label", with.Namespaces, with.Label)
	}
	without := secretsOf(cacheOptions(opts, false))
	cfg, ok := without.Namespaces["podpreset-system"]
	if len(without.Namespaces) != 1 || !ok || cfg.FieldSelector.String() != "metadata.name=podpreset-webhook-certs" {
		t.Errorf("without sources: %+v; want the certificate Secret only", without.Namespaces)
	}
}

// TestCacheLendsNamespaces: the pod webhook reads a namespace's labels on
// every admission, from the cache's own object (no deep copy per request).
func TestCacheLendsNamespaces(t *testing.T) {
	for _, withSources := range []bool{false, true} {
		var found bool
		for o, by := range cacheOptions(defaultOptions(), withSources).ByObject {
			if _, ok := o.(*corev1.Namespace); ok {
				found = by.UnsafeDisableDeepCopy != nil && *by.UnsafeDisableDeepCopy
			}
		}
		if !found {
			t.Errorf("sources %v: Namespaces are deep-copied on every read", withSources)
		}
	}
}
