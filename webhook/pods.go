package webhook

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
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
	// LiveReadTimeout bounds that read (0: DefaultLiveReadTimeout), so
	// that an API server slow to answer it leaves the webhook time to
	// answer its own request: the API server waits 5 s by default.
	LiveReadTimeout time.Duration
	// OwnNamespace is the webhook's namespace, whose pods are left alone.
	OwnNamespace string
	// LogLevel is the verbosity at which each admission is logged, one
	// line (logAdmission); 0 logs every one.
	LogLevel int
	// Log writes the admission lines; unset, the process's logger.
	Log logr.Logger
	// Wait is the longest a pod waits for a preset of its namespace that
	// this replica validated a moment before to reach the index
	// (expect.go); 0 never waits.
	Wait time.Duration
	// Policies, when set (--admission-mode=auto), says which namespaces
	// compiled MutatingAdmissionPolicies serve: their pods are left to the
	// API server.
	Policies *PolicyServing
}

var _ Handler[PodObject] = (*PodMutator)(nil)

// jsonPatch is every answer's patch type (json.Marshal only reads it).
var jsonPatch = admissionv1.PatchTypeJSONPatch

// maxWarningValue is how much of a kept or dropped value a warning shows;
// the API server may truncate warnings over 256 characters.
const maxWarningValue = 60

// Handle mutates a pod creation request. It decodes the pod's spec only
// when a preset matches (PodObject). It counts each request by result, and
// logs it in one line at verbosity LogLevel.
func (m *PodMutator) Handle(ctx context.Context, req *Request[PodObject]) (*admissionv1.AdmissionResponse, error) {
	start := time.Now()
	resp, out, err := m.admit(ctx, req)
	admissionTotal.WithLabelValues(out.result).Inc()
	// Serve puts no logger in the context: the process's logger, without
	// the allocation logf.FromContext makes on every call. A failed
	// admission is an error, logged at every verbosity.
	log := m.Log
	if log.GetSink() == nil {
		log = logf.Log
	}
	if log := log.V(m.LogLevel); err != nil || log.Enabled() {
		logAdmission(log, req, out, time.Since(start), err)
	}
	return resp, err
}

// DefaultLiveReadTimeout bounds the read of a namespace the cache has not
// seen yet.
const DefaultLiveReadTimeout = 2 * time.Second

// patchBuffers are the arrays patches are written into: Done gives each
// back once its answer is written.
var patchBuffers = sync.Pool{New: func() any { return new([]byte) }}

// Done takes back an answer's patch buffer, once Serve has written it.
func (m *PodMutator) Done(resp *admissionv1.AdmissionResponse) {
	if p := resp.Patch; cap(p) > 0 && cap(p) <= maxPooled {
		p = p[:0]
		resp.Patch = nil
		patchBuffers.Put(&p)
	}
}

// outcome is what an admission did, for its count and its log line.
type outcome struct {
	result string
	// reason says why a pod was left alone.
	reason string
	res    *presets.Result
}

func (m *PodMutator) admit(ctx context.Context, req *Request[PodObject]) (*admissionv1.AdmissionResponse, outcome, error) {
	if reason := Guard(req); reason != "" {
		return allowed(reason), outcome{result: ResultSkipped, reason: reason}, nil
	}
	if req.Namespace == m.OwnNamespace && m.OwnNamespace != "" {
		const reason = "the webhook's own namespace"
		return allowed(reason), outcome{result: ResultSkipped, reason: reason}, nil
	}
	ns, err := m.namespace(ctx, req.Namespace)
	if err != nil {
		return nil, outcome{result: ResultError}, err
	}

	m.Presets.WaitFor(ctx, req.Namespace, m.Wait)
	// Matching reads the metadata of a pod that stays on the stack; only a
	// pod that presets match is built on the heap, with its spec.
	probe := req.Object.meta(req.Namespace)
	matched, skipped := presets.Select(&probe, ns, m.Presets.Set())
	if skipped != "" {
		return allowed(string(skipped)), outcome{result: ResultSkipped, reason: string(skipped)}, nil
	}
	if len(matched) == 0 {
		return allowed(""), outcome{result: ResultUnchanged}, nil
	}
	// A compiled policy runs before the webhooks: when the pod shows that
	// it applied every preset that matches, at its generation, there is
	// nothing left to do. Without that evidence (a policy the API server
	// has not loaded yet, one compiled from older presets) the webhook
	// merges as always, which changes nothing the policy did.
	if m.Policies != nil && appliedAll(probe.Annotations[presets.AnnotationApplied], matched) && m.Policies.Serves(ctx, req.Namespace) {
		const reason = "a MutatingAdmissionPolicy applied the presets"
		return allowed(reason), outcome{result: ResultPolicy, reason: reason}, nil
	}
	pod := &corev1.Pod{ObjectMeta: probe.ObjectMeta}
	if err := req.Object.decodeSpec(pod, presets.WholeContainers(matched)); err != nil {
		return denied(http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error()), outcome{result: ResultError, reason: "the pod's spec does not decode"}, nil
	}
	buf := patchBuffers.Get().(*[]byte)
	res, encoded, err := presets.AppendMergePatch(*buf, pod, ns, matched, req.Object.specJSON)
	if err != nil || encoded == nil {
		patchBuffers.Put(buf)
	}
	if err != nil {
		return nil, outcome{result: ResultError}, err
	}
	countResult(res)
	resp := allowed("")
	resp.Warnings = warnings(res)
	if encoded == nil {
		return resp, outcome{result: ResultUnchanged, res: &res}, nil
	}
	resp.Patch, resp.PatchType = encoded, &jsonPatch
	return resp, outcome{result: ResultInjected, res: &res}, nil
}

// appliedAll says whether a podpreset.dev/applied value lists every preset
// of ps that is not refused, at its generation.
func appliedAll(applied string, ps []*presets.Preset) bool {
	if applied == "" {
		return false
	}
	for _, p := range ps {
		if p.Refused() != nil {
			continue
		}
		ref := p.Ref().String()
		found := false
		for e := range strings.SplitSeq(applied, ",") {
			if strings.TrimSpace(e) == ref {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// logAdmission writes an admission's line: the pod, the result, the
// presets applied and refused, the fields of conflicts and omissions, and
// the time taken; names and field paths, never a value (a refusal's
// message can quote one: only its reason is logged).
func logAdmission(log logr.Logger, req *Request[PodObject], out outcome, took time.Duration, err error) {
	kv := []any{"pod", klog.KRef(req.Namespace, req.Object.podName()), "uid", req.UID, "result", out.result,
		"dryRun", req.DryRun != nil && *req.DryRun, "duration", took}
	if out.reason != "" {
		kv = append(kv, "reason", out.reason)
	}
	if r := out.res; r != nil {
		kv = append(kv, "applied", render(r.Applied, presets.Ref.String))
		if len(r.Conflicts) > 0 {
			kv = append(kv, "conflicts", render(r.Conflicts, func(c presets.Conflict) string { return c.Preset.String() + " " + c.Field }))
		}
		if len(r.Refused) > 0 {
			kv = append(kv, "refused", render(r.Refused, func(f presets.Refusal) string { return f.Preset.String() + " (" + f.Reason + ")" }))
		}
		if len(r.Omitted) > 0 {
			kv = append(kv, "omitted", render(r.Omitted, func(o presets.Omission) string { return o.Preset.String() + " " + o.Field }))
		}
	}
	if err != nil {
		log.Error(err, "pod admission failed", kv...)
		return
	}
	log.Info("pod admission", kv...)
}

// render is each of xs as f renders it.
func render[T any](xs []T, f func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
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
		timeout := m.LiveReadTimeout
		if timeout <= 0 {
			timeout = DefaultLiveReadTimeout
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		err = m.LiveNamespaces.Get(rctx, client.ObjectKey{Name: name}, ns)
		cancel()
	}
	switch {
	case apierrors.IsNotFound(err):
		return presets.Namespace{Name: name, Labels: map[string]string{corev1.LabelMetadataName: name}}, nil
	case err != nil:
		return presets.Namespace{}, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return presets.Namespace{Name: name, Labels: ns.Labels}, nil
}
