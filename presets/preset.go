package presets

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Ref names a preset at a generation, as podpreset.dev/applied records it.
type Ref struct {
	// Kind is PodPreset or ClusterPodPreset.
	Kind string
	// Namespace is the PodPreset's namespace; empty for a ClusterPodPreset.
	Namespace string
	// Name is the preset's name.
	Name string
	// Generation is the preset's metadata.generation.
	Generation int64
}

// String renders the reference as Kind/name@generation.
func (r Ref) String() string {
	return r.Kind + "/" + r.Name + "@" + strconv.FormatInt(r.Generation, 10)
}

// Preset is a compiled PodPreset or ClusterPodPreset: selectors parsed and
// injected values converted to core types, ready for Apply. It is immutable.
type Preset struct {
	ref         Ref
	selector    selector
	nsSelector  labels.Selector // nil for a PodPreset
	containers  []string        // nil: every container
	env         []corev1.EnvVar
	envKeys     []nameKey // env's names, hashed for the merge's filters
	envFrom     []corev1.EnvFromSource
	volumes     []corev1.Volume
	mounts      []corev1.VolumeMount
	inits       []corev1.Container
	pullSecrets []corev1.LocalObjectReference
	annotations []annotation // sorted by key
	// envObjs, envFromObjs and volumeObjs name the materialised object
	// each entry of env, envFrom and volumes refers to (zero: none).
	envObjs, envFromObjs, volumeObjs []objRef
	// foreign are the objects of those names that exist without being the
	// preset's (status.foreignObjects): entries referring to them are left
	// out.
	foreign map[foreignKey]bool
	// sourceVersions are the versions of the Consul and Vault values that
	// the status reports as materialised, for the sources hash.
	sourceVersions string
	// refusal says why the preset is never applied; nil when it is.
	refusal *Refusal
	// sourced says whether the spec takes values from Consul or Vault.
	sourced bool
	// created is when the preset was created; contentGeneration the
	// generation at which what it injects last changed (status), for
	// Classify.
	created           time.Time
	contentGeneration int64
	// rollout is spec.rollout.policy (Never when empty); rolloutInterval
	// its minInterval, defaulted.
	rollout         v1alpha1.RolloutPolicy
	rolloutInterval time.Duration
	// contentSum is ContentHash of the spec, not rendered: a compiled
	// preset holds no string it does not need.
	contentSum [16]byte
	// encoded holds the injected entries as JSON, for Patch.
	encoded encodedCache
}

// ContentHash returns ContentHash of the preset's spec.
func (p *Preset) ContentHash() string { return hex.EncodeToString(p.contentSum[:]) }

// Rollout returns the preset's rollout policy and the least time between
// two restarts it asks for.
func (p *Preset) Rollout() (v1alpha1.RolloutPolicy, time.Duration) {
	return p.rollout, p.rolloutInterval
}

// Version identifies what a pod gets from the preset now: the generation at
// which its content last changed and the versions of its Consul and Vault
// values.
func (p *Preset) Version() string {
	return strconv.FormatInt(p.contentGeneration, 10) + "/" + sourcesHash([]*Preset{p})
}

type annotation struct{ key, value string }

// objRef names a materialised object; the zero value names none.
type objRef struct{ kind, name string }

type foreignKey struct {
	namespace string
	objRef
}

// isForeign says whether an entry's materialised object is someone else's
// in namespace ns.
func (p *Preset) isForeign(ns string, o objRef) bool {
	return o.kind != "" && p.foreign[foreignKey{ns, o}]
}

// Refused says why the preset is never applied; nil when it is applied.
func (p *Preset) Refused() *Refusal { return p.refusal }

// Ref returns the preset's reference.
func (p *Preset) Ref() Ref { return p.ref }

// compile converts a spec; Consul and Vault sources become references to
// the objects the sources controller materialises them into.
func compile(ref Ref, spec *v1alpha1.PodPresetSpec, nsSel *metav1.LabelSelector, status *v1alpha1.PodPresetStatus) (*Preset, error) {
	sel, err := compileSelector(&spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("compiling %s: spec.selector: %w", ref, err)
	}
	p := &Preset{ref: ref, selector: sel}
	if nsSel != nil {
		if p.nsSelector, err = metav1.LabelSelectorAsSelector(nsSel); err != nil {
			return nil, fmt.Errorf("compiling %s: spec.namespaceSelector: %w", ref, err)
		}
	}
	if len(spec.Containers) > 0 {
		p.containers = slices.Clone(spec.Containers)
	}
	for i := range spec.Env {
		p.env = append(p.env, coreEnv(ref.Name, &spec.Env[i]))
		p.envKeys = append(p.envKeys, keyOf(spec.Env[i].Name))
	}
	for i := range spec.EnvFrom {
		p.envFrom = append(p.envFrom, coreEnvFrom(ref.Name, &spec.EnvFrom[i]))
	}
	for i := range spec.Volumes {
		p.volumes = append(p.volumes, coreVolume(ref.Name, &spec.Volumes[i]))
	}
	if len(status.ForeignObjects) > 0 {
		p.recordForeign(spec, status.ForeignObjects)
	}
	for i := range spec.VolumeMounts {
		p.mounts = append(p.mounts, *spec.VolumeMounts[i].DeepCopy())
	}
	for i := range spec.InitContainers {
		p.inits = append(p.inits, *spec.InitContainers[i].DeepCopy())
	}
	p.pullSecrets = slices.Clone(spec.ImagePullSecrets)
	for k, v := range spec.Annotations {
		p.annotations = append(p.annotations, annotation{k, v})
	}
	slices.SortFunc(p.annotations, func(a, b annotation) int { return strings.Compare(a.key, b.key) })
	p.sourceVersions = sourceVersions(spec, status)
	p.sourced = HasSources(spec)
	p.contentGeneration = ref.Generation
	if g := status.ContentGeneration; g > 0 && g <= ref.Generation {
		p.contentGeneration = g
	}
	p.contentSum = contentSum(spec)
	p.rollout, p.rolloutInterval = v1alpha1.RolloutNever, DefaultRolloutInterval
	if r := spec.Rollout; r != nil {
		if r.Policy != "" {
			p.rollout = r.Policy
		}
		if r.MinInterval != nil {
			p.rolloutInterval = max(r.MinInterval.Duration, MinRolloutInterval)
		}
	}
	return p, nil
}

// recordForeign notes which entries refer to materialised objects, and
// which of those objects are someone else's, as the status reports.
func (p *Preset) recordForeign(spec *v1alpha1.PodPresetSpec, foreign []v1alpha1.ObjectReference) {
	p.foreign = make(map[foreignKey]bool, len(foreign))
	for _, f := range foreign {
		p.foreign[foreignKey{f.Namespace, objRef{f.Kind, f.Name}}] = true
	}
	p.envObjs = make([]objRef, len(p.env))
	for i := range p.env {
		if vf := p.env[i].ValueFrom; vf != nil && spec.Env[i].ValueFrom != nil && (spec.Env[i].ValueFrom.ConsulKV != nil || spec.Env[i].ValueFrom.Vault != nil) {
			if vf.ConfigMapKeyRef != nil {
				p.envObjs[i] = objRef{KindConfigMap, vf.ConfigMapKeyRef.Name}
			} else if vf.SecretKeyRef != nil {
				p.envObjs[i] = objRef{KindSecret, vf.SecretKeyRef.Name}
			}
		}
	}
	p.envFromObjs = make([]objRef, len(p.envFrom))
	for i := range p.envFrom {
		if e := &p.envFrom[i]; spec.EnvFrom[i].ConsulKV != nil || spec.EnvFrom[i].Vault != nil {
			if e.ConfigMapRef != nil {
				p.envFromObjs[i] = objRef{KindConfigMap, e.ConfigMapRef.Name}
			} else if e.SecretRef != nil {
				p.envFromObjs[i] = objRef{KindSecret, e.SecretRef.Name}
			}
		}
	}
	p.volumeObjs = make([]objRef, len(p.volumes))
	for i := range p.volumes {
		if v := &p.volumes[i]; spec.Volumes[i].ConsulKV != nil || spec.Volumes[i].Vault != nil || spec.Volumes[i].VaultPKI != nil {
			if v.ConfigMap != nil {
				p.volumeObjs[i] = objRef{KindConfigMap, v.ConfigMap.Name}
			} else if v.Secret != nil {
				p.volumeObjs[i] = objRef{KindSecret, v.Secret.SecretName}
			}
		}
	}
}

// targets reports whether the preset injects into the named container.
func (p *Preset) targets(container string) bool {
	return p.containers == nil || slices.Contains(p.containers, container)
}

// anchors returns the label pairs the preset can be indexed under: one set
// per equality (=, ==, in) requirement of its selector. A pod can only match
// when it has one of the pairs of each set, so one set is enough to index by.
func (p *Preset) anchors() [][]labelPair {
	if p.selector.full == nil {
		out := make([][]labelPair, p.selector.n)
		for i := range out {
			out[i] = p.selector.pairs[i : i+1]
		}
		return out
	}
	reqs, _ := p.selector.full.Requirements()
	var out [][]labelPair
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			// Values may repeat (in (a, a)); index each once, or a pod
			// would find the preset twice.
			var set []labelPair
			for _, v := range r.Values().UnsortedList() {
				set = append(set, labelPair{r.Key(), v})
			}
			out = append(out, set)
		}
	}
	return out
}

type labelPair struct{ key, value string }

// selector is a compiled label selector. The usual one, matchLabels of at
// most two pairs, is held in the preset itself and matched by looking the
// pairs up, so that a compiled preset costs the collector four objects
// fewer (a labels.Selector is an interface over a list of requirements,
// each with its list of values) and matching costs no Requirement; any
// other selector is a labels.Selector.
type selector struct {
	pairs [2]labelPair    // sorted by key; the first n are the selector
	n     int             // when full is nil
	full  labels.Selector // nil when pairs hold the selector
}

// compileSelector validates a selector as the API server's
// LabelSelectorAsSelector does, and compiles it.
func compileSelector(ls *metav1.LabelSelector) (selector, error) {
	full, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return selector{}, err
	}
	var s selector
	if len(ls.MatchExpressions) > 0 || len(ls.MatchLabels) > len(s.pairs) {
		return selector{full: full}, nil
	}
	for k, v := range ls.MatchLabels {
		s.pairs[s.n] = labelPair{k, v}
		s.n++
	}
	if s.n == 2 && s.pairs[1].key < s.pairs[0].key {
		s.pairs[0], s.pairs[1] = s.pairs[1], s.pairs[0]
	}
	return s, nil
}

// Matches says whether the selector selects an object with these labels.
func (s *selector) Matches(have labels.Set) bool {
	if s.full != nil {
		return s.full.Matches(have)
	}
	for _, lp := range s.pairs[:s.n] {
		if v, ok := have[lp.key]; !ok || v != lp.value {
			return false
		}
	}
	return true
}

// labels returns the selector as a labels.Selector, for what shows or
// converts it (Content, Explain): the same requirements, in the same
// order, as LabelSelectorAsSelector gives.
func (s *selector) labels() labels.Selector {
	if s.full != nil {
		return s.full
	}
	set := make(labels.Set, s.n)
	for _, lp := range s.pairs[:s.n] {
		set[lp.key] = lp.value
	}
	return labels.SelectorFromValidatedSet(set)
}
