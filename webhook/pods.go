package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"unicode/utf8"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/patch"
)

// PodMutator applies presets to pods at creation.
type PodMutator struct {
	// Presets is the index of compiled presets.
	Presets *Store
	// Namespaces reads namespaces, from the manager's cache.
	Namespaces client.Reader
	// Decoder decodes pods from requests.
	Decoder admission.Decoder
	// OwnNamespace is the webhook's namespace, whose pods are left alone.
	OwnNamespace string
}

var _ admission.Handler = (*PodMutator)(nil)

// maxWarningValue is how much of a kept or dropped value a warning shows;
// the API server may truncate warnings over 256 characters.
const maxWarningValue = 60

// Handle mutates a pod creation request.
func (m *PodMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if reason := Guard(req); reason != "" {
		admissionTotal.WithLabelValues(ResultSkipped).Inc()
		return admission.Allowed(reason)
	}
	if req.Namespace == m.OwnNamespace && m.OwnNamespace != "" {
		admissionTotal.WithLabelValues(ResultSkipped).Inc()
		return admission.Allowed("the webhook's own namespace")
	}
	log := logf.FromContext(ctx)
	pod := &corev1.Pod{}
	if err := m.Decoder.DecodeRaw(req.Object, pod); err != nil {
		admissionTotal.WithLabelValues(ResultError).Inc()
		log.Error(err, "decoding pod", "namespace", req.Namespace)
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding pod: %w", err))
	}
	ns, err := m.namespace(ctx, req.Namespace)
	if err != nil {
		admissionTotal.WithLabelValues(ResultError).Inc()
		log.Error(err, "reading namespace", "pod", klog.KRef(req.Namespace, podName(pod)))
		return admission.Errored(http.StatusInternalServerError, err)
	}

	res := presets.Apply(pod, ns, m.Presets.Set())
	countResult(res)
	warnings := make([]string, 0, len(res.Conflicts))
	for _, c := range res.Conflicts {
		warnings = append(warnings, warning(c))
	}
	switch {
	case res.Skipped != "":
		admissionTotal.WithLabelValues(ResultSkipped).Inc()
		log.V(1).Info("pod left alone", "pod", klog.KRef(req.Namespace, podName(pod)), "reason", string(res.Skipped))
		return admission.Allowed(string(res.Skipped))
	case !res.Changed:
		admissionTotal.WithLabelValues(ResultUnchanged).Inc()
		resp := admission.Allowed("")
		resp.Warnings = warnings
		return resp
	}
	ops, err := patch.Pod(pod, res.Pod, "")
	if err != nil {
		admissionTotal.WithLabelValues(ResultError).Inc()
		return admission.Errored(http.StatusInternalServerError, err)
	}
	// Encoded here in one go: controller-runtime would encode each
	// operation on its own.
	encoded, err := json.Marshal(ops)
	if err != nil {
		admissionTotal.WithLabelValues(ResultError).Inc()
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encoding the patch: %w", err))
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp := admission.Allowed("")
	resp.Patch, resp.PatchType = encoded, &pt
	resp.Warnings = warnings
	admissionTotal.WithLabelValues(ResultInjected).Inc()
	if log.V(1).Enabled() {
		applied := make([]string, len(res.Applied))
		for i, r := range res.Applied {
			applied[i] = r.String()
		}
		fields := make([]string, len(res.Conflicts))
		for i, c := range res.Conflicts {
			fields[i] = c.Preset.String() + " " + c.Field
		}
		log.V(1).Info("presets applied", "pod", klog.KRef(req.Namespace, podName(pod)), "applied", applied, "conflicts", fields)
	}
	return resp
}

// namespace reads the namespace's labels from the cache. A namespace the
// cache has not seen yet (created a moment ago) gets only the label the API
// server sets on every namespace.
func (m *PodMutator) namespace(ctx context.Context, name string) (presets.Namespace, error) {
	ns := &corev1.Namespace{}
	if err := m.Namespaces.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return presets.Namespace{Name: name, Labels: map[string]string{corev1.LabelMetadataName: name}}, nil
		}
		return presets.Namespace{}, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return presets.Namespace{Name: name, Labels: ns.Labels}, nil
}

// warning renders a conflict for kubectl, values shortened.
func warning(c presets.Conflict) string {
	from := "the pod's own"
	if c.KeptFrom != presets.KeptFromPod {
		from = c.KeptFrom
	}
	return fmt.Sprintf("podpreset: %s: %s: kept %s (%s), dropped %s",
		c.Preset, c.Field, shorten(c.Kept), from, shorten(c.Dropped))
}

func shorten(s string) string {
	if len(s) <= maxWarningValue {
		return s
	}
	cut := maxWarningValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
