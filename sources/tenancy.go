package sources

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Tenancy enforces the allowances: the validating webhook refuses presets
// that name anything else, the webhook's index refuses them for every pod,
// and the controller checks again before it reads anything.
//
// Paths are compared segment by segment, after they pass the same rules
// (no empty, . or .. segment, no encoded or query characters; see
// presets.ValidateConsulKey and ValidateVaultPath): a path that breaks them
// is never allowed, whatever the allowance, so apps/team/../other/ cannot
// pass for a key under apps/team/.
type Tenancy struct {
	Consul, Vault bool // whether each is configured
	Config        TenancyConfig
}

var _ presets.Check = (*Tenancy)(nil)

// NewTenancy returns the policy of a configuration; a nil configuration
// allows no source at all.
func NewTenancy(c *Config) *Tenancy {
	if c == nil {
		return &Tenancy{}
	}
	return &Tenancy{Consul: c.Consul != nil, Vault: c.Vault != nil, Config: c.Tenancy}
}

// Reason is SourceForbidden.
func (*Tenancy) Reason() string { return "SourceForbidden" }

// Check returns an error for each source of a preset that it may not read.
func (t *Tenancy) Check(obj v1alpha1.Object) field.ErrorList {
	namespace := ""
	if obj.PresetKind() == v1alpha1.KindPodPreset {
		namespace = obj.GetNamespace()
	}
	var errs field.ErrorList
	for _, o := range presets.SourcePlan(obj.PresetSpec()) {
		for _, it := range o.Items {
			if err := t.Allowed(namespace, it.Source); err != nil {
				errs = append(errs, field.Forbidden(field.NewPath(it.Field), err.Error()))
			}
		}
	}
	return errs
}

// Allowed says whether a preset in namespace (empty: a ClusterPodPreset)
// may read a source, and if not, why, naming what it may read.
func (t *Tenancy) Allowed(namespace string, s presets.Source) error {
	who, a := "PodPresets in namespace "+namespace, t.Config.PodPresets
	if namespace == "" {
		who, a = "ClusterPodPresets", t.Config.ClusterPodPresets
	}
	consul := s.Kind == presets.SourceConsulKey || s.Kind == presets.SourceConsulPrefix
	if consul && !t.Consul {
		return errors.New("Consul is not configured: podpreset-webhook needs a consul section in --sources-config")
	}
	if !consul && !t.Vault {
		return errors.New("Vault is not configured: podpreset-webhook needs a vault section in --sources-config")
	}
	if err := validSourcePath(s); err != nil {
		return err
	}
	patterns, what := a.VaultPaths, "Vault path"
	if consul {
		patterns, what = a.ConsulPrefixes, "Consul key"
	}
	var allowed []string
	for _, p := range patterns {
		e, err := expand(p, namespace)
		if err != nil {
			continue // Validate refused it at load time
		}
		allowed = append(allowed, e)
		if consul && insideFolder(s.Path, e) || !consul && vaultAllows(e, s.Path) {
			return nil
		}
	}
	if len(allowed) == 0 {
		return fmt.Errorf("%s %q is not allowed: %s may read no %s (tenancy in --sources-config)", what, s.Path, who, what)
	}
	return fmt.Errorf("%s %q is not allowed: %s may read only %s", what, s.Path, who, strings.Join(quoteAll(allowed), ", "))
}

// validSourcePath refuses a path that could step out of a folder, whatever
// the allowance: the validating webhook checks this too, but it fails open,
// and Consul answers a/../b with a redirect to b.
func validSourcePath(s presets.Source) error {
	var errs field.ErrorList
	p := field.NewPath("path")
	switch s.Kind {
	case presets.SourceConsulKey:
		errs = presets.ValidateConsulKey(s.Path, p)
	case presets.SourceConsulPrefix:
		errs = presets.ValidateConsulPrefix(s.Path, p)
	default:
		errs = presets.ValidateVaultPath(s.Path, p)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s is never read: %s", s.ID(), errs[0].Detail)
	}
	return nil
}

// insideFolder says whether a Consul key or prefix lies inside folder:
// segment by segment, so that the folder apps/team holds apps/team/x and
// apps/team/ but neither apps/team-evil/x nor the bare prefix apps/team
// (Consul's list of a prefix is a string match: apps/team would list
// apps/team-evil/ too). "" is every key.
func insideFolder(path, folder string) bool {
	if folder == "" {
		return true
	}
	return strings.HasPrefix(path, strings.TrimSuffix(folder, "/")+"/")
}

// vaultAllows says whether a Vault pattern allows a path: equal, or under a
// pattern that ends in /*; * alone allows every path.
func vaultAllows(pattern, path string) bool {
	if pattern == "*" || pattern == path {
		return true
	}
	folder, ok := strings.CutSuffix(pattern, "/*")
	return ok && strings.HasPrefix(path, folder+"/")
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
