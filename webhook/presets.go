package webhook

import (
	"context"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// PresetValidator checks PodPresets and ClusterPodPresets on create and
// update, for what CEL in the CRD cannot say: selectors that parse, env var
// names Kubernetes accepts, exactly one source per entry, and the same checks
// the CLI runs (presets.Validate*), and the tenancy of Consul and Vault
// sources. A denial is an Invalid status naming each
// field; advice that is not an error comes back as warnings.
type PresetValidator struct {
	Decoder admission.Decoder
	// Sources checks the Consul keys and Vault paths a preset reads
	// against the tenancy configuration; nil skips that check.
	Sources SourcePolicy
}

// SourcePolicy says which Consul keys and Vault paths a preset may read
// (sources.Tenancy). namespace is a PodPreset's namespace, empty for a
// ClusterPodPreset.
type SourcePolicy interface {
	Check(namespace string, spec *v1alpha1.PodPresetSpec) field.ErrorList
}

var _ admission.Handler = (*PresetValidator)(nil)

// Handle validates a preset.
func (v *PresetValidator) Handle(_ context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	var (
		errs     field.ErrorList
		spec     *v1alpha1.PodPresetSpec
		kind     = req.Kind.Kind
		compiled error
	)
	switch kind {
	case v1alpha1.KindPodPreset:
		pp := &v1alpha1.PodPreset{}
		if err := v.Decoder.DecodeRaw(req.Object, pp); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding PodPreset: %w", err))
		}
		errs, spec = presets.ValidatePodPreset(pp), &pp.Spec
		_, compiled = presets.CompilePodPreset(pp)
		if v.Sources != nil {
			errs = append(errs, v.Sources.Check(req.Namespace, spec)...)
		}
	case v1alpha1.KindClusterPodPreset:
		cpp := &v1alpha1.ClusterPodPreset{}
		if err := v.Decoder.DecodeRaw(req.Object, cpp); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding ClusterPodPreset: %w", err))
		}
		errs, spec = presets.ValidateClusterPodPreset(cpp), &cpp.Spec.PodPresetSpec
		_, compiled = presets.CompileClusterPodPreset(cpp)
		if v.Sources != nil {
			errs = append(errs, v.Sources.Check("", spec)...)
		}
	default:
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("unexpected kind %s", req.Kind))
	}
	if len(errs) == 0 && compiled != nil {
		// Validate checks the selectors; this is a safety net.
		errs = append(errs, field.Invalid(field.NewPath("spec"), "", compiled.Error()))
	}
	if len(errs) > 0 {
		st := apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind(kind).GroupKind(), req.Name, errs)
		return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
			Allowed: false,
			Result:  &st.ErrStatus,
		}}
	}
	resp := admission.Allowed("")
	resp.Warnings = presets.Advise(spec, field.NewPath("spec"))
	return resp
}
