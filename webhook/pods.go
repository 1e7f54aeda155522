package webhook

import (
	"context"
	"fmt"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podpreset/podpreset/presets"
)

// PodMutator applies presets to pods at creation.
type PodMutator struct {
	// Presets is the index of compiled presets.
	Presets *Store
	// Namespaces reads namespaces, from the manager's cache.
	Namespaces client.Reader
	// LiveNamespaces reads a namespace from the API server when the cache
	// has not seen it yet (created a moment before the pod); nil: such a
	// namespace has only the label the API server sets on every one.
	LiveNamespaces client.Reader
	// OwnNamespace is the webhook's namespace, whose pods are left alone.
	OwnNamespace string
	// Wait is the longest a pod waits for a preset of its namespace that
	// this replica validated a moment before to reach the index
	// (expect.go); 0 never waits.
	Wait time.Duration
}

var _ Handler[PodObject] = (*PodMutator)(nil)

// jsonPatch is every answer's patch type (json.Marshal only reads it).
var jsonPatch = admissionv1.PatchTypeJSONPatch

// maxWarningValue is how much of a kept or dropped value a warning shows;
// the API server may truncate warnings over 256 characters.
const maxWarningValue = 60

// Handle mutates a pod creation request. It decodes the pod's spec only
// when a preset matches (PodObject).
func (m *PodMutator) Handle(ctx context.Context, req *Request[PodObject]) (*admissionv1.AdmissionResponse, error) {
	if reason := Guard(req); reason != "" {
		admissionTotal.WithLabelValues(ResultSkipped).Inc()
		return allowed(reason), nil
	}
	if req.Namespace == m.OwnNamespace && m.OwnNamespace != "" {
		admissionTotal.WithLabelValues(ResultSkipped).Inc()
		return allowed("the webhook's own namespace"), nil
	}
	// Serve puts no logger in the context: the process's logger, without
	// the allocation logf.FromContext makes on every call.
	log := logf.Log
	ns, err := m.namespace(ctx, req.Namespace)
	if err != nil {
		admissionTotal.WithLabelValues(ResultError).Inc()
		log.Error(err, "reading namespace", "pod", klog.KRef(req.Namespace, req.Object.podName()))
		return nil, err
	}

	m.Presets.WaitFor(ctx, req.Namespace, m.Wait)
	// Matching reads the metadata of a pod that stays on the stack; only a
	// pod that presets match is built on the heap, with its spec.
	probe := req.Object.meta(req.Namespace)
	matched, skipped := presets.Select(&probe, ns, m.Presets.Set())
	if skipped != "" {
		admissionTotal.WithLabelValues(ResultSkipped).Inc()
		if log.V(1).Enabled() {
			log.V(1).Info("pod left alone", "pod", klog.KRef(req.Namespace, req.Object.podName()), "reason", string(skipped))
		}
		return allowed(string(skipped)), nil
	}
	if len(matched) == 0 {
		admissionTotal.WithLabelValues(ResultUnchanged).Inc()
		return allowed(""), nil
	}
	pod := &corev1.Pod{ObjectMeta: probe.ObjectMeta}
	if err := req.Object.decodeSpec(pod, presets.WholeContainers(matched)); err != nil {
		admissionTotal.WithLabelValues(ResultError).Inc()
		return denied(http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error()), nil
	}
	res, encoded, err := presets.MergePatch(pod, ns, matched, req.Object)
	if err != nil {
		admissionTotal.WithLabelValues(ResultError).Inc()
		return nil, err
	}
	countResult(res)
	warnings := warnings(res)
	if encoded == nil {
		admissionTotal.WithLabelValues(ResultUnchanged).Inc()
		resp := allowed("")
		resp.Warnings = warnings
		return resp, nil
	}
	resp := allowed("")
	resp.Patch, resp.PatchType = encoded, &jsonPatch
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
		log.V(1).Info("presets applied", "pod", klog.KRef(req.Namespace, req.Object.podName()), "applied", applied, "conflicts", fields)
	}
	return resp, nil
}

// warnings renders what a pod did not get, for kubectl: every conflict
// (values shortened), every preset refused, every entry left out.
func warnings(res presets.Result) []string {
	n := len(res.Conflicts) + len(res.Refused) + len(res.Omitted)
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for _, c := range res.Conflicts {
		out = append(out, "podpreset: "+c.Render(maxWarningValue))
	}
	for _, r := range res.Refused {
		out = append(out, "podpreset: "+presets.Shorten(r.String(), 2*maxWarningValue+100))
	}
	for _, o := range res.Omitted {
		out = append(out, "podpreset: "+o.String())
	}
	return out
}

// namespace reads the namespace's labels from the cache. A namespace the
// cache has not seen yet was created a moment ago (the API server admits no
// pod into a namespace that does not exist): its labels are read from the
// API server, one request, so that a namespace and its first pods applied
// together get the ClusterPodPresets that select the namespace. A namespace
// neither knows gets only the label the API server sets on every one.
func (m *PodMutator) namespace(ctx context.Context, name string) (presets.Namespace, error) {
	ns := &corev1.Namespace{}
	err := m.Namespaces.Get(ctx, client.ObjectKey{Name: name}, ns)
	if apierrors.IsNotFound(err) && m.LiveNamespaces != nil {
		namespaceReads.Inc()
		err = m.LiveNamespaces.Get(ctx, client.ObjectKey{Name: name}, ns)
	}
	switch {
	case apierrors.IsNotFound(err):
		return presets.Namespace{Name: name, Labels: map[string]string{corev1.LabelMetadataName: name}}, nil
	case err != nil:
		return presets.Namespace{}, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return presets.Namespace{Name: name, Labels: ns.Labels}, nil
}
