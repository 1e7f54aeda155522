package sources

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podpreset/podpreset/presets"
)

var (
	sourceReads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podpreset_source_reads_total",
		Help: "Reads of Consul keys and prefixes and Vault secrets, by source (consul, vault) and result (changed, unchanged, error).",
	}, []string{"source", "result"})
	sourceWatches = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "podpreset_source_watches",
		Help: "Consul blocking queries and Vault refresh loops that run, one per distinct source that some preset reads, by source (consul, vault).",
	}, []string{"source"})
	objectWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podpreset_materialised_writes_total",
		Help: "ConfigMaps and Secrets the sources controller created, updated (content changed or repaired) or deleted.",
	}, []string{"kind", "op"})
	vaultLogins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podpreset_vault_logins_total",
		Help: "Vault logins, by auth method and result.",
	}, []string{"method", "result"})
	vaultRenewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podpreset_vault_token_renewals_total",
		Help: "Vault token renewals, by result; a failed renewal is followed by a login.",
	}, []string{"result"})
	certificatesIssued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podpreset_vault_certificates_issued_total",
		Help: "Certificates Vault PKI issued for vaultPKI volumes.",
	})
)

func init() {
	metrics.Registry.MustRegister(sourceReads, sourceWatches, objectWrites, vaultLogins, vaultRenewals, certificatesIssued)
	// Every series from zero, so that rates and alerts work from the first
	// read (Vault logins are labelled with the configured method, when it
	// logs in).
	for _, src := range []string{"consul", "vault"} {
		sourceWatches.WithLabelValues(src)
		for _, r := range []string{"changed", "unchanged", "error"} {
			sourceReads.WithLabelValues(src, r)
		}
	}
	for _, k := range []string{presets.KindConfigMap, presets.KindSecret} {
		for _, op := range []string{"create", "update", "delete"} {
			objectWrites.WithLabelValues(k, op)
		}
	}
	for _, r := range []string{"ok", "error"} {
		vaultRenewals.WithLabelValues(r)
	}
}
