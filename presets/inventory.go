package presets

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// PodState is what a pod has of a preset that selects it now.
type PodState string

// Pod states.
const (
	// StateApplied: the pod has the preset's current version (and, for a
	// preset with Consul or Vault sources, the current values' versions).
	StateApplied PodState = "applied"
	// StateStale: the pod has an older version of the preset, or older
	// values.
	StateStale PodState = "stale"
	// StateMissed: the preset existed when the pod was created, and the
	// pod did not get it.
	StateMissed PodState = "missed"
	// StatePredating: the pod was created before the preset existed.
	StatePredating PodState = "predating"
)

// PodMeta is what classification needs of a pod: its metadata.
type PodMeta struct {
	Labels      map[string]string
	Annotations map[string]string
	Created     time.Time
}

// Verdict is what a pod has of one preset that selects it.
type Verdict struct {
	// Preset is the preset at its current generation.
	Preset Ref
	State  PodState
	// Got is the generation the pod received; 0 when it has none.
	Got int64
	// Current is the generation at which what the preset injects last
	// changed: a pod that got it or a later one has the current content.
	Current int64
}

// Classify says, for every preset of the set that selects the pod now, what
// the pod has of it; a refused preset (never applied) is left out, and so is
// every preset for a pod that is left alone (opted out, a mirror pod, a
// namespace that is always left out). It uses the webhook's index, so its
// cost is what the pod's matches cost, whatever the set holds.
//
// Decisions: a pod has a preset's current version when the generation in
// podpreset.dev/applied is at least the one at which what the preset injects
// last changed (so a change of spec.rollout alone makes no pod stale). A
// pod created in the same second as the preset counts as created after it
// (creation times have seconds only): a pod applied together with its
// preset that did not get it is missed, not predating.
func Classify(pod PodMeta, ns Namespace, set *Set) []Verdict {
	if Skip(podOf(pod)) != "" || SkipNamespace(ns) != "" {
		return nil
	}
	matched := set.Match(ns, pod.Labels)
	if len(matched) == 0 {
		return nil
	}
	got := appliedGenerations(pod.Annotations[AnnotationApplied])
	// The values the pod got: the hash of the source versions of the
	// presets it got, as the webhook computed it at admission.
	var gotten []*Preset
	for _, p := range matched {
		if _, ok := got[p.ref.Kind+"/"+p.ref.Name]; ok && p.refusal == nil {
			gotten = append(gotten, p)
		}
	}
	hashCurrent := sourcesHash(gotten) == pod.Annotations[AnnotationSourcesHash]
	out := make([]Verdict, 0, len(matched))
	for _, p := range matched {
		if p.refusal != nil {
			continue
		}
		v := Verdict{Preset: p.ref, Current: p.contentGeneration}
		g, ok := got[p.ref.Kind+"/"+p.ref.Name]
		switch {
		case ok:
			v.Got = g
			v.State = StateApplied
			if g < p.contentGeneration || p.sourceVersions != "" && !hashCurrent {
				v.State = StateStale
			}
		case !p.created.After(pod.Created):
			v.State = StateMissed
		default:
			v.State = StatePredating
		}
		out = append(out, v)
	}
	return out
}

// appliedGenerations parses podpreset.dev/applied: Kind/name -> generation.
func appliedGenerations(v string) map[string]int64 {
	out := map[string]int64{}
	if v == "" {
		return out
	}
	for _, e := range strings.Split(v, ",") {
		key, gen, ok := strings.Cut(strings.TrimSpace(e), "@")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(gen, 10, 64); err == nil {
			out[key] = n
		}
	}
	return out
}

// podOf is a pod with the metadata Skip reads.
func podOf(m PodMeta) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: m.Annotations}}
}

// ContentHash identifies what a preset injects: its spec without rollout,
// which is how podpreset treats pods, not what they get.
func ContentHash(spec *v1alpha1.PodPresetSpec) string {
	h := contentSum(spec)
	return hex.EncodeToString(h[:])
}

// contentSum is ContentHash before it is rendered.
func contentSum(spec *v1alpha1.PodPresetSpec) [16]byte {
	s := *spec
	s.Rollout = nil
	b, _ := json.Marshal(&s) // a spec always marshals
	h := sha256.Sum256(b)
	return [16]byte(h[:16])
}
