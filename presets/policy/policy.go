// Package policy checks presets against PodPresetPolicies: what the
// PodPresets of a namespace may inject into pods that other people run.
//
// Creating a PodPreset is a way into every matching pod of its namespace,
// including pods that operators and other users create, and pods cannot opt
// in, only out. A PodPresetPolicy (cluster-scoped, written by cluster admins)
// bounds that channel: volume sources (no hostPath, no projected service
// account tokens by default), injected init containers (images from allowed
// prefixes only, none by default; not privileged, no added capabilities, no
// host ports), environment variable names (LD_PRELOAD, *_PROXY denied by
// default) and annotation keys (those that steer Kubernetes, meshes and
// injectors denied by default).
//
// Decisions:
//   - The form is a CRD, not a section of the server's configuration: admins
//     manage it with kubectl and GitOps like Kyverno or Gatekeeper policies,
//     a change takes effect at once on every replica without a restart, and
//     RBAC keeps tenants from writing it.
//   - Every policy whose namespaceSelector selects a PodPreset's namespace
//     governs it, and the preset must satisfy them all; a namespace that no
//     policy selects gets the defaults (Default). So the safe defaults hold
//     until an admin writes a policy, and loosening a namespace means a
//     policy for it and selectors that leave it out of the stricter ones.
//   - ClusterPodPresets are exempt unless a policy says
//     clusterPodPresets: true; such a policy governs every ClusterPodPreset.
//   - The verdict depends only on the preset and the policies, not on the pod:
//     the validating webhook refuses a preset that breaks a policy, and the
//     webhook's index refuses it for every pod (the validating webhook fails
//     open, so a preset can reach the cluster without its check; and a
//     policy can change after a preset was admitted).
//
// This package is pure: no client, no I/O. The webhook and the CLI feed it
// the policies they read.
package policy

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// DefaultName is the name under which the defaults are reported when no
// policy selects a namespace.
const DefaultName = "(defaults)"

// Defaults of the lists an admin leaves unset; the CRD's +kubebuilder:default
// markers carry the same (a test checks).
var (
	DefaultDeniedEnv         = []string{"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "*_PROXY"}
	DefaultDeniedAnnotations = []string{"*kubernetes.io/*", "*k8s.io/*", "*istio.io/*", "*linkerd.io/*", "vault.hashicorp.com/*", "*openshift.io/*"}
)

// Default is the policy that holds where no policy selects a namespace: an
// empty spec with its defaults.
func Default() v1alpha1.PodPresetPolicy {
	p := v1alpha1.PodPresetPolicy{ObjectMeta: metav1.ObjectMeta{Name: DefaultName}}
	SetDefaults(&p.Spec)
	return p
}

// SetDefaults fills what the API server's defaulting fills, for policies
// read from files (the CLI) or built in Go: the denied lists when unset.
func SetDefaults(s *v1alpha1.PodPresetPolicySpec) {
	if s.Env.Denied == nil {
		s.Env.Denied = slices.Clone(DefaultDeniedEnv)
	}
	if s.Annotations.Denied == nil {
		s.Annotations.Denied = slices.Clone(DefaultDeniedAnnotations)
	}
}

// Validate checks a policy: its selector parses and its patterns are
// patterns.
func Validate(p *v1alpha1.PodPresetPolicy) field.ErrorList {
	sp := field.NewPath("spec")
	var errs field.ErrorList
	if _, err := metav1.LabelSelectorAsSelector(&p.Spec.NamespaceSelector); err != nil {
		errs = append(errs, field.Invalid(sp.Child("namespaceSelector"), p.Spec.NamespaceSelector, err.Error()))
	}
	lists := map[*field.Path][]string{
		sp.Child("env", "allowed"): p.Spec.Env.Allowed, sp.Child("env", "denied"): p.Spec.Env.Denied,
		sp.Child("annotations", "allowed"): p.Spec.Annotations.Allowed, sp.Child("annotations", "denied"): p.Spec.Annotations.Denied,
		sp.Child("initContainers", "allowedImages"): p.Spec.InitContainers.AllowedImages,
	}
	for path, list := range lists {
		for i, v := range list {
			if v == "" {
				errs = append(errs, field.Required(path.Index(i), "a pattern must not be empty"))
			}
		}
	}
	return errs
}

// Set is the policies of a cluster, compiled: which presets each governs
// and what it allows. The zero value and nil hold none, so every PodPreset
// gets the defaults.
type Set struct {
	policies []compiled
}

type compiled struct {
	policy   v1alpha1.PodPresetPolicy
	selector labels.Selector
}

// NewSet compiles policies. A policy whose namespace selector does not parse
// selects nothing, and its error is returned (the CRD's own validation makes
// that rare); the others still apply.
func NewSet(policies ...v1alpha1.PodPresetPolicy) (*Set, error) {
	s := &Set{}
	var errs []string
	for _, p := range policies {
		p = *p.DeepCopy()
		SetDefaults(&p.Spec)
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.NamespaceSelector)
		if err != nil {
			errs = append(errs, fmt.Sprintf("PodPresetPolicy %s: spec.namespaceSelector: %v", p.Name, err))
			sel = labels.Nothing()
		}
		s.policies = append(s.policies, compiled{policy: p, selector: sel})
	}
	slices.SortFunc(s.policies, func(a, b compiled) int { return strings.Compare(a.policy.Name, b.policy.Name) })
	if len(errs) > 0 {
		return s, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return s, nil
}

// Len is how many policies the set holds.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.policies)
}

// Governing returns the policies that govern a preset: for a PodPreset, those
// whose namespaceSelector selects its namespace (labels nsLabels), else the
// defaults; for a ClusterPodPreset, those that say clusterPodPresets: true
// (none: it is exempt).
func (s *Set) Governing(kind string, nsLabels map[string]string) []v1alpha1.PodPresetPolicy {
	var out []v1alpha1.PodPresetPolicy
	if s != nil {
		for _, c := range s.policies {
			if kind == v1alpha1.KindClusterPodPreset && c.policy.Spec.ClusterPodPresets ||
				kind == v1alpha1.KindPodPreset && c.selector.Matches(labels.Set(nsLabels)) {
				out = append(out, c.policy)
			}
		}
	}
	if len(out) == 0 && kind == v1alpha1.KindPodPreset {
		out = append(out, Default())
	}
	return out
}

// Checker checks presets against a Set; it is a presets.Check. Namespaces
// gives the labels of a PodPreset's namespace (nil: none but
// kubernetes.io/metadata.name).
type Checker struct {
	Policies   *Set
	Namespaces func(name string) map[string]string
}

var _ presets.Check = (*Checker)(nil)

// Reason is PolicyViolation.
func (*Checker) Reason() string { return v1alpha1.ReasonPolicyViolation }

// Check returns every way the preset breaks a policy that governs it.
func (c *Checker) Check(obj v1alpha1.Object) field.ErrorList {
	var nsLabels map[string]string
	if obj.PresetKind() == v1alpha1.KindPodPreset {
		if c.Namespaces != nil {
			nsLabels = c.Namespaces(obj.GetNamespace())
		}
		if nsLabels == nil {
			nsLabels = map[string]string{corev1.LabelMetadataName: obj.GetNamespace()}
		}
	}
	var errs field.ErrorList
	for _, p := range c.Policies.Governing(obj.PresetKind(), nsLabels) {
		errs = append(errs, Check(&p, obj.PresetSpec())...)
	}
	return errs
}

// Check returns every way a preset's spec breaks one policy, each error
// naming the field and the rule.
func Check(p *v1alpha1.PodPresetPolicy, spec *v1alpha1.PodPresetSpec) field.ErrorList {
	sp := field.NewPath("spec")
	ps := &p.Spec
	rule := func(r string) string { return fmt.Sprintf("PodPresetPolicy %s: %s", p.Name, r) }
	var errs field.ErrorList
	for i := range spec.Volumes {
		errs = append(errs, checkVolume(ps, &spec.Volumes[i], sp.Child("volumes").Index(i), rule)...)
	}
	for i := range spec.Env {
		errs = append(errs, checkEnvName(ps, spec.Env[i].Name, sp.Child("env").Index(i).Child("name"), rule)...)
	}
	for i := range spec.InitContainers {
		errs = append(errs, checkInit(ps, &spec.InitContainers[i], sp.Child("initContainers").Index(i), rule)...)
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Annotations)) {
		if msg := allowedName(ps.Annotations.Allowed, ps.Annotations.Denied, k, false); msg != "" {
			errs = append(errs, field.Forbidden(sp.Child("annotations").Key(k), rule("annotation key "+msg)))
		}
	}
	return errs
}

func checkEnvName(ps *v1alpha1.PodPresetPolicySpec, name string, path *field.Path, rule func(string) string) field.ErrorList {
	if msg := allowedName(ps.Env.Allowed, ps.Env.Denied, name, true); msg != "" {
		return field.ErrorList{field.Forbidden(path, rule("environment variable "+msg))}
	}
	return nil
}

func checkVolume(ps *v1alpha1.PodPresetPolicySpec, v *v1alpha1.Volume, path *field.Path, rule func(string) string) field.ErrorList {
	var errs field.ErrorList
	typ := VolumeType(v)
	switch {
	case v.HostPath != nil && !ps.Volumes.AllowHostPath:
		errs = append(errs, field.Forbidden(path.Child("hostPath"), rule("hostPath volumes are not allowed (volumes.allowHostPath)")))
	case len(ps.Volumes.AllowedTypes) > 0 && !slices.Contains(ps.Volumes.AllowedTypes, typ):
		errs = append(errs, field.Forbidden(path.Child(typ), rule(fmt.Sprintf("%s volumes are not allowed: volumes.allowedTypes is %s", typ, strings.Join(ps.Volumes.AllowedTypes, ", ")))))
	}
	if v.Projected != nil && !ps.Volumes.AllowServiceAccountTokens {
		for i, s := range v.Projected.Sources {
			if s.ServiceAccountToken != nil {
				errs = append(errs, field.Forbidden(path.Child("projected", "sources").Index(i).Child("serviceAccountToken"),
					rule("projected service account tokens are not allowed (volumes.allowServiceAccountTokens)")))
			}
		}
	}
	return errs
}

// VolumeType names a volume's source by its field name: emptyDir,
// configMap, consulKV, vaultPKI, ...; "" when none is set.
func VolumeType(v *v1alpha1.Volume) string {
	switch {
	case v.ConsulKV != nil:
		return "consulKV"
	case v.Vault != nil:
		return "vault"
	case v.VaultPKI != nil:
		return "vaultPKI"
	}
	return coreVolumeType(&v.VolumeSource)
}

func checkInit(ps *v1alpha1.PodPresetPolicySpec, c *corev1.Container, path *field.Path, rule func(string) string) field.ErrorList {
	var errs field.ErrorList
	ip := &ps.InitContainers
	switch {
	case len(ip.AllowedImages) == 0:
		errs = append(errs, field.Forbidden(path, rule("injected init containers are not allowed (initContainers.allowedImages is empty)")))
	case !slices.Contains(ip.AllowedImages, "*") && !slices.ContainsFunc(ip.AllowedImages, func(prefix string) bool { return strings.HasPrefix(c.Image, prefix) }):
		errs = append(errs, field.Forbidden(path.Child("image"), rule(fmt.Sprintf("image %q does not start with an allowed prefix (initContainers.allowedImages: %s)", c.Image, strings.Join(ip.AllowedImages, ", ")))))
	}
	if sc := c.SecurityContext; sc != nil {
		sp := path.Child("securityContext")
		if !ip.AllowPrivileged && sc.Privileged != nil && *sc.Privileged {
			errs = append(errs, field.Forbidden(sp.Child("privileged"), rule("privileged init containers are not allowed (initContainers.allowPrivileged)")))
		}
		if !ip.AllowPrivileged && sc.AllowPrivilegeEscalation != nil && *sc.AllowPrivilegeEscalation {
			errs = append(errs, field.Forbidden(sp.Child("allowPrivilegeEscalation"), rule("privilege escalation is not allowed (initContainers.allowPrivileged)")))
		}
		if sc.Capabilities != nil {
			for i, capability := range sc.Capabilities.Add {
				if !slices.ContainsFunc(ip.AllowedCapabilities, func(a string) bool {
					return strings.EqualFold(strings.TrimPrefix(a, "CAP_"), strings.TrimPrefix(string(capability), "CAP_"))
				}) {
					errs = append(errs, field.Forbidden(sp.Child("capabilities", "add").Index(i), rule(fmt.Sprintf("capability %s is not allowed (initContainers.allowedCapabilities)", capability))))
				}
			}
		}
	}
	if !ip.AllowHostPorts {
		for i, p := range c.Ports {
			if p.HostPort != 0 {
				errs = append(errs, field.Forbidden(path.Child("ports").Index(i).Child("hostPort"), rule("host ports are not allowed (initContainers.allowHostPorts)")))
			}
		}
	}
	for i := range c.Env {
		errs = append(errs, checkEnvName(ps, c.Env[i].Name, path.Child("env").Index(i).Child("name"), rule)...)
	}
	return errs
}

// allowedName says why a name is not allowed, or "" when it is.
func allowedName(allowed, denied []string, name string, foldCase bool) string {
	for _, d := range denied {
		if Match(d, name, foldCase) {
			return fmt.Sprintf("%q is denied (matches %q)", name, d)
		}
	}
	if len(allowed) > 0 && !slices.ContainsFunc(allowed, func(a string) bool { return Match(a, name, foldCase) }) {
		return fmt.Sprintf("%q is not in the allowed list (%s)", name, strings.Join(allowed, ", "))
	}
	return ""
}

// Match says whether name matches pattern, in which * stands for any run of
// characters (/ and . included).
func Match(pattern, name string, foldCase bool) bool {
	if foldCase {
		pattern, name = strings.ToUpper(pattern), strings.ToUpper(name)
	}
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == name
	}
	if !strings.HasPrefix(name, parts[0]) {
		return false
	}
	name = name[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(name, p)
		if i < 0 {
			return false
		}
		name = name[i+len(p):]
	}
	return len(name) >= len(last) && strings.HasSuffix(name, last)
}

// coreVolumeType is the JSON name of the one source set in a core
// VolumeSource, found by reflection so that sources later Kubernetes
// versions add are named too.
func coreVolumeType(vs *corev1.VolumeSource) string {
	v := reflect.ValueOf(vs).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
			return name
		}
	}
	return ""
}
