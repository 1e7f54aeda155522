package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// PresetValidator checks PodPresets and ClusterPodPresets on create and
// update, for what CEL in the CRD cannot say: presets.Load's validation
// (selectors that parse, env var names Kubernetes accepts, exactly one
// source per entry, paths that cannot escape their folder), and its
// checks: the tenancy of Consul and Vault sources and the preset policy. A
// denial is an Invalid status naming each field and the rule; advice that is
// not an error comes back as warnings.
type PresetValidator struct {
	// Checks returns the checks a preset must pass now (the tenancy of the
	// sources configuration, the preset policy as the cache has it).
	Checks func() []presets.Check
	// Expect is told of every preset allowed (not on a dry run), so that
	// the pods created right after it wait for it (Store.Expect); nil
	// tells nobody.
	Expect func(Key, string)
}

var _ Handler[json.RawMessage] = (*PresetValidator)(nil)

// Handle validates a preset.
func (v *PresetValidator) Handle(_ context.Context, req *Request[json.RawMessage]) (*admissionv1.AdmissionResponse, error) {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return allowed(""), nil
	}
	var obj v1alpha1.Object
	switch req.Kind.Kind {
	case v1alpha1.KindPodPreset:
		obj = &v1alpha1.PodPreset{}
	case v1alpha1.KindClusterPodPreset:
		obj = &v1alpha1.ClusterPodPreset{}
	default:
		return denied(http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("unexpected kind %s", req.Kind.Kind)), nil
	}
	if req.Object == nil {
		return denied(http.StatusBadRequest, metav1.StatusReasonBadRequest, "no object in the request"), nil
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(*req.Object, obj); err != nil {
		return denied(http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("decoding the %s: %v", req.Kind.Kind, err)), nil
	}
	var checks []presets.Check
	if v.Checks != nil {
		checks = v.Checks()
	}
	if _, errs := presets.Load(obj, checks...); len(errs) > 0 {
		st := apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind(req.Kind.Kind).GroupKind(), req.Name, errs)
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &st.ErrStatus}, nil
	}
	if v.Expect != nil && (req.DryRun == nil || !*req.DryRun) {
		ns := obj.GetNamespace()
		if ns == "" && obj.PresetKind() == v1alpha1.KindPodPreset {
			ns = req.Namespace
		}
		v.Expect(Key{Kind: obj.PresetKind(), NamespacedName: types.NamespacedName{Namespace: ns, Name: obj.GetName()}}, presets.ContentHash(obj.PresetSpec()))
	}
	resp := allowed("")
	resp.Warnings = presets.Advise(obj.PresetSpec(), field.NewPath("spec"))
	return resp, nil
}

// denied refuses a request, saying why.
func denied(code int32, reason metav1.StatusReason, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Result: &metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}}
}
