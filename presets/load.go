package presets

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Check is what a preset must pass beyond validation, decided by the
// cluster's configuration: the tenancy of its Consul and Vault sources
// (sources.Tenancy) and the preset policy (presets/policy).
type Check interface {
	// Check returns what the preset may not do, each error naming its
	// field.
	Check(obj v1alpha1.Object) field.ErrorList
	// Reason names the check in the preset's Accepted condition when it
	// fails (PolicyViolation, SourceForbidden).
	Reason() string
}

// Refusal says why a preset that matches a pod is not applied to it.
type Refusal struct {
	// Preset is the preset that was not applied.
	Preset Ref
	// Reason is Invalid, or the Reason of the check it failed.
	Reason string
	// Message lists what is wrong, each problem naming its field.
	Message string
}

// String renders the refusal for a warning or a terminal.
func (r Refusal) String() string {
	return r.Preset.String() + " was not applied (" + r.Reason + "): " + r.Message
}

// Load validates a PodPreset or ClusterPodPreset, compiles it, and runs the
// checks: the one way every caller reads a preset (the validating webhook,
// the webhook's index, the sources controller, the CLI).
//
// errs lists every problem, validation's first, then each check's, each
// naming its field. The preset is nil only when it cannot be compiled (a
// selector that does not parse); when errs is not empty it is refused: it
// still matches pods, so that the webhook can say why it was not applied,
// but Apply never merges it. Callers decide the rest: the validating
// webhook and the CLI refuse a preset with any error, the sources
// controller reads no source that an error names.
func Load(obj v1alpha1.Object, checks ...Check) (*Preset, field.ErrorList) {
	var errs field.ErrorList
	switch o := obj.(type) {
	case *v1alpha1.PodPreset:
		errs = ValidatePodPreset(o)
	case *v1alpha1.ClusterPodPreset:
		errs = ValidateClusterPodPreset(o)
	}
	reason := v1alpha1.ReasonInvalid
	invalid := len(errs)
	for _, c := range checks {
		failed := c.Check(obj)
		if len(failed) > 0 && invalid == 0 && len(errs) == 0 {
			reason = c.Reason()
		}
		errs = append(errs, failed...)
	}
	ref := Ref{Kind: obj.PresetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName(), Generation: obj.GetGeneration()}
	p, err := compile(ref, obj.PresetSpec(), obj.PresetNamespaceSelector(), obj.PresetStatus())
	if p != nil {
		p.created = obj.GetCreationTimestamp().Time
	}
	if err != nil {
		if len(errs) == 0 {
			errs = field.ErrorList{field.Invalid(field.NewPath("spec"), "", err.Error())}
		}
		return nil, errs
	}
	if len(errs) > 0 {
		p.refusal = &Refusal{Preset: ref, Reason: reason, Message: errorMessages(errs)}
	}
	return p, errs
}

// errorMessages joins the errors' messages.
func errorMessages(errs field.ErrorList) string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// SameInputs says whether Load reads the same of two versions of a preset,
// so that the second need not be loaded again: the same generation (the
// spec, which the status subresource keeps from changing without it) and
// the same status fields that compile reads (the source versions, the
// foreign objects and the content generation). The status writes of pod
// counts and conditions change none of them; checks that depend on other
// objects (namespace labels, policies) are the caller's to run again when
// those change.
func SameInputs(a, b v1alpha1.Object) bool {
	if a.GetGeneration() != b.GetGeneration() || a.GetUID() != b.GetUID() || !a.GetCreationTimestamp().Time.Equal(b.GetCreationTimestamp().Time) {
		return false
	}
	sa, sb := a.PresetStatus(), b.PresetStatus()
	return sa.ContentGeneration == sb.ContentGeneration &&
		equality.Semantic.DeepEqual(sa.Sources, sb.Sources) &&
		equality.Semantic.DeepEqual(sa.ForeignObjects, sb.ForeignObjects)
}
