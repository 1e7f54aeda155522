package presets

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Explanation says, for one pod, what every preset in its scope does to it
// and why: the answer to "why did (or didn't) my pod get this".
type Explanation struct {
	// Pod is namespace/name.
	Pod string `json:"pod"`
	// Skipped says why the pod is left alone whatever selects it.
	Skipped SkipReason `json:"skipped,omitempty"`
	// Presets are the PodPresets of the pod's namespace and every
	// ClusterPodPreset, in application order for those that select it,
	// then the others by name.
	Presets []PresetExplanation `json:"presets"`
}

// PresetExplanation is what one preset does to the pod.
type PresetExplanation struct {
	// Preset is Kind/namespace/name (Kind/name for a ClusterPodPreset).
	Preset     string `json:"preset"`
	Generation int64  `json:"generation"`
	// Selects says whether the preset selects the pod now.
	Selects bool `json:"selects"`
	// Why says why it selects the pod, or every reason it does not.
	Why []string `json:"why"`
	// Refused says why the webhook never applies the preset (invalid, a
	// source its namespace may not read, a PodPresetPolicy).
	Refused string `json:"refused,omitempty"`
	// Injects lists what the preset gives each container it targets, and
	// the pod.
	Injects []Injection `json:"injects,omitempty"`
	// Conflicts are the preset's values the pod would not get if it were
	// admitted now (the pod's own value, or an earlier preset's, wins).
	Conflicts []string `json:"conflicts,omitempty"`
	// Omitted are the entries left out because their object is not the
	// preset's.
	Omitted []string `json:"omitted,omitempty"`
	// State is what the pod has of the preset: applied, stale, missed or
	// predating; empty when the preset does not select it, or when the
	// pod is not in a cluster (offline).
	State PodState `json:"state,omitempty"`
	// GotGeneration is the generation of the preset the pod received; 0
	// when it has none.
	GotGeneration int64 `json:"gotGeneration,omitempty"`
	// ContentGeneration is the generation at which what the preset
	// injects last changed (with a state).
	ContentGeneration int64 `json:"contentGeneration,omitempty"`
}

// Injection is what a preset gives one container, or the pod.
type Injection struct {
	// Target is "pod", or the container as container/NAME or
	// initContainer/NAME.
	Target string   `json:"target"`
	What   []string `json:"what"`
}

// Explain explains the presets in the pod's scope (the PodPresets of ns and
// the ClusterPodPresets among all) to the pod. For a pod read from a
// cluster (inCluster), each preset that selects it gets its state from the
// pod's podpreset.dev/applied and creation time, as the inventory counts
// it; offline, the pod is one about to be created.
func Explain(pod *corev1.Pod, ns Namespace, all []*Preset, inCluster bool) Explanation {
	ex := Explanation{Pod: ns.Name + "/" + pod.Name, Skipped: Skip(pod)}
	if ex.Skipped == "" {
		ex.Skipped = SkipNamespace(ns)
	}
	var scope []*Preset
	for _, p := range all {
		if p.ref.Kind == v1alpha1.KindClusterPodPreset || p.ref.Namespace == ns.Name {
			scope = append(scope, p)
		}
	}
	set := NewSet(scope...)
	matched := set.Match(ns, pod.Labels)
	var res Result
	var verdicts map[Ref]Verdict
	if ex.Skipped == "" {
		res = Merge(pod, ns, matched)
		if inCluster {
			verdicts = map[Ref]Verdict{}
			for _, v := range Classify(PodMeta{Labels: pod.Labels, Annotations: pod.Annotations, Created: pod.CreationTimestamp.Time}, ns, set) {
				verdicts[v.Preset] = v
			}
		}
	}
	order := slices.Clone(matched)
	var others []*Preset
	for _, p := range scope {
		if !slices.Contains(matched, p) {
			others = append(others, p)
		}
	}
	slices.SortFunc(others, func(a, b *Preset) int { return strings.Compare(presetID(a.ref), presetID(b.ref)) })
	order = append(order, others...)
	for _, p := range order {
		e := PresetExplanation{Preset: presetID(p.ref), Generation: p.ref.Generation}
		if p.refusal != nil {
			e.Refused = p.refusal.String()
		}
		switch {
		case ex.Skipped != "":
			e.Why = []string{"the pod is left alone: " + string(ex.Skipped)}
		case slices.Contains(matched, p):
			e.Selects = true
			e.Why = []string{"spec.selector " + selectorString(p.selector.labels()) + " matches the pod's labels"}
			if p.nsSelector != nil {
				e.Why = append(e.Why, "spec.namespaceSelector "+selectorString(p.nsSelector)+" matches namespace "+ns.Name)
			}
			e.Injects = p.injections(pod)
			if p.containers != nil && !p.targetsAny(pod) {
				e.Why = append(e.Why, "but it targets containers "+strings.Join(p.containers, ", ")+", and the pod has none of them")
			}
			for _, c := range res.Conflicts {
				if c.Preset == p.ref {
					e.Conflicts = append(e.Conflicts, c.Field+": the pod keeps "+c.Kept+" ("+keptFrom(c)+"), not "+c.Dropped)
				}
			}
			for _, o := range res.Omitted {
				if o.Preset == p.ref {
					e.Omitted = append(e.Omitted, o.Field+": "+o.Object+" exists but is not this preset's")
				}
			}
			if v, ok := verdicts[p.ref]; ok {
				e.State, e.GotGeneration, e.ContentGeneration = v.State, v.Got, v.Current
			}
		default:
			e.Why = failures("spec.selector", p.selector.labels(), pod.Labels, "the pod")
			if p.nsSelector != nil {
				e.Why = append(e.Why, failures("spec.namespaceSelector", p.nsSelector, ns.Labels, "namespace "+ns.Name)...)
			}
		}
		ex.Presets = append(ex.Presets, e)
	}
	return ex
}

// presetID is Kind/namespace/name, or Kind/name.
func presetID(r Ref) string {
	if r.Namespace == "" {
		return r.Kind + "/" + r.Name
	}
	return r.Kind + "/" + r.Namespace + "/" + r.Name
}

func keptFrom(c Conflict) string {
	if c.KeptFrom == KeptFromPod {
		return "its own"
	}
	return "from " + c.KeptFrom
}

func selectorString(s labels.Selector) string {
	if s.Empty() {
		return "{} (every pod)"
	}
	return "{" + s.String() + "}"
}

// failures lists the requirements of a selector that a label set does not
// meet, each with what the object has.
func failures(field string, sel labels.Selector, have map[string]string, who string) []string {
	reqs, _ := sel.Requirements()
	var out []string
	for _, r := range reqs {
		if r.Matches(labels.Set(have)) {
			continue
		}
		v, ok := have[r.Key()]
		got := who + " has no label " + r.Key()
		if ok {
			got = who + " has " + r.Key() + "=" + v
		}
		out = append(out, fmt.Sprintf("%s: %s does not hold: %s", field, r.String(), got))
	}
	return out
}

// injections lists what the preset gives the pod and each container it
// targets.
func (p *Preset) injections(pod *corev1.Pod) []Injection {
	var podLevel []string
	for _, v := range p.volumes {
		podLevel = append(podLevel, "volume "+v.Name+" ("+volumeSource(&v)+")")
	}
	for _, c := range p.inits {
		podLevel = append(podLevel, "initContainer "+c.Name+" ("+c.Image+")")
	}
	for _, s := range p.pullSecrets {
		podLevel = append(podLevel, "imagePullSecret "+s.Name)
	}
	for _, a := range p.annotations {
		podLevel = append(podLevel, "annotation "+a.key)
	}
	var out []Injection
	if len(podLevel) > 0 {
		out = append(out, Injection{Target: "pod", What: podLevel})
	}
	var perContainer []string
	for _, e := range p.env {
		perContainer = append(perContainer, "env "+e.Name+envSource(&e))
	}
	for _, e := range p.envFrom {
		perContainer = append(perContainer, "envFrom "+envFromKey(&e))
	}
	for _, m := range p.mounts {
		ro := ""
		if m.ReadOnly {
			ro = ", read-only"
		}
		perContainer = append(perContainer, "volumeMount "+m.Name+" at "+m.MountPath+ro)
	}
	if len(perContainer) == 0 {
		return out
	}
	// An injected init container is a target too.
	var names []string
	for _, c := range pod.Spec.InitContainers {
		names = append(names, "initContainer/"+c.Name)
	}
	for _, c := range p.inits {
		if !slices.ContainsFunc(pod.Spec.InitContainers, func(x corev1.Container) bool { return x.Name == c.Name }) {
			names = append(names, "initContainer/"+c.Name)
		}
	}
	for _, c := range pod.Spec.Containers {
		names = append(names, "container/"+c.Name)
	}
	for _, n := range names {
		_, name, _ := strings.Cut(n, "/")
		if p.targets(name) {
			out = append(out, Injection{Target: n, What: perContainer})
		}
	}
	return out
}

// targetsAny says whether the preset targets a container of the pod, or
// one of its own init containers.
func (p *Preset) targetsAny(pod *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers, p.inits} {
		if slices.ContainsFunc(cs, func(c corev1.Container) bool { return p.targets(c.Name) }) {
			return true
		}
	}
	return false
}

// envSource says where an env var's value comes from; never the value.
func envSource(e *corev1.EnvVar) string {
	switch f := e.ValueFrom; {
	case f == nil:
		return " (a value)"
	case f.SecretKeyRef != nil:
		return " (Secret " + f.SecretKeyRef.Name + " key " + f.SecretKeyRef.Key + ")"
	case f.ConfigMapKeyRef != nil:
		return " (ConfigMap " + f.ConfigMapKeyRef.Name + " key " + f.ConfigMapKeyRef.Key + ")"
	case f.FieldRef != nil:
		return " (field " + f.FieldRef.FieldPath + ")"
	case f.ResourceFieldRef != nil:
		return " (resource " + f.ResourceFieldRef.Resource + ")"
	}
	return ""
}

// volumeSource names a volume's kind and object.
func volumeSource(v *corev1.Volume) string {
	switch s := v.VolumeSource; {
	case s.ConfigMap != nil:
		return "ConfigMap " + s.ConfigMap.Name
	case s.Secret != nil:
		return "Secret " + s.Secret.SecretName
	case s.EmptyDir != nil:
		return "emptyDir"
	case s.HostPath != nil:
		return "hostPath " + s.HostPath.Path
	case s.Projected != nil:
		return "projected"
	case s.PersistentVolumeClaim != nil:
		return "PersistentVolumeClaim " + s.PersistentVolumeClaim.ClaimName
	case s.CSI != nil:
		return "CSI " + s.CSI.Driver
	case s.DownwardAPI != nil:
		return "downwardAPI"
	}
	return "other"
}
