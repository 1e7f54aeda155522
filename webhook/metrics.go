package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Results counted by podpreset_admission_total.
const (
	ResultInjected  = "injected"  // presets changed the pod
	ResultUnchanged = "unchanged" // no preset matched, or everything was there
	ResultSkipped   = "skipped"   // guard, opt-out, mirror pod, excluded namespace
	ResultError     = "error"     // the request could not be served
	ResultPolicy    = "policy"    // presets match, and a compiled MutatingAdmissionPolicy serves the namespace
)

var (
	admissionTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podpreset_admission_total",
		Help: "Pod admission requests by result: injected, unchanged, skipped, policy (left to a compiled MutatingAdmissionPolicy) or error.",
	}, []string{"result"})
	conflictsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podpreset_conflicts_total",
		Help: "Preset values dropped because the pod or an earlier preset set the key, by kind of entry.",
	}, []string{"kind"})
	presetsAppliedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podpreset_presets_applied_total",
		Help: "Presets applied to pods, by kind of preset.",
	}, []string{"preset_kind"})
	presetsCached = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "podpreset_presets_cached",
		Help: "PodPresets and ClusterPodPresets compiled in the webhook's index.",
	})
	presetsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podpreset_presets_refused_total",
		Help: "Presets that matched a pod but were not applied to it, by reason: Invalid, SourceForbidden (tenancy) or PolicyViolation.",
	}, []string{"reason"})
	entriesOmitted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podpreset_entries_omitted_total",
		Help: "Entries left out of pods because the ConfigMap or Secret they refer to is not their preset's.",
	})
	admissionThrottled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podpreset_admission_throttled_total",
		Help: "Admission requests answered 429 because too many (or too many bytes of them) were in flight.",
	})
	namespaceReads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podpreset_namespace_reads_total",
		Help: "Namespaces read from the API server during admission because the cache had not seen them yet (created a moment before the pod or the preset).",
	})
)

func init() {
	metrics.Registry.MustRegister(admissionTotal, conflictsTotal, presetsAppliedTotal, presetsCached, presetsRefused, entriesOmitted, admissionThrottled, namespaceReads)
	// Start every series at zero, so that rates work from the first request.
	for _, r := range []string{ResultInjected, ResultUnchanged, ResultSkipped, ResultError, ResultPolicy} {
		admissionTotal.WithLabelValues(r)
	}
	for _, r := range []string{"Invalid", "SourceForbidden", "PolicyViolation"} {
		presetsRefused.WithLabelValues(r)
	}
	for _, k := range []presets.FieldKind{presets.FieldEnv, presets.FieldEnvFrom, presets.FieldVolumeMount, presets.FieldVolume, presets.FieldInitContainer, presets.FieldAnnotation} {
		conflictsTotal.WithLabelValues(string(k))
	}
	for _, k := range []string{v1alpha1.KindPodPreset, v1alpha1.KindClusterPodPreset} {
		presetsAppliedTotal.WithLabelValues(k)
	}
}

func countResult(res presets.Result) {
	for _, c := range res.Conflicts {
		conflictsTotal.WithLabelValues(string(c.Kind)).Inc()
	}
	for _, r := range res.Applied {
		presetsAppliedTotal.WithLabelValues(r.Kind).Inc()
	}
	for _, r := range res.Refused {
		presetsRefused.WithLabelValues(r.Reason).Inc()
	}
	entriesOmitted.Add(float64(len(res.Omitted)))
}
