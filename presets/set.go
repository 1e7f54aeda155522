package presets

import (
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Namespace is what matching needs to know of the pod's namespace.
type Namespace struct {
	// Name is the namespace's name.
	Name string
	// Labels are the namespace's labels, matched by ClusterPodPresets'
	// namespaceSelector.
	Labels map[string]string
}

// Set is an immutable, indexed collection of compiled presets. Build a new
// one when presets change; the zero value and nil hold no presets.
type Set struct {
	namespaced map[string]*index // by namespace
	cluster    *index
	size       int
}

// index finds the presets whose selector can match a set of pod labels
// without looking at the others.
type index struct {
	byLabel map[string]map[string][]*Preset // label key -> value -> presets
	scan    []*Preset                       // presets with no equality requirement
}

// NewSet indexes compiled presets. PodPresets are looked up by namespace.
func NewSet(presets ...*Preset) *Set {
	s := &Set{namespaced: map[string]*index{}, size: len(presets)}
	groups := map[string][]*Preset{}
	var cluster []*Preset
	for _, p := range presets {
		if p.ref.Kind == v1alpha1.KindClusterPodPreset {
			cluster = append(cluster, p)
		} else {
			groups[p.ref.Namespace] = append(groups[p.ref.Namespace], p)
		}
	}
	for ns, ps := range groups {
		s.namespaced[ns] = newIndex(ps)
	}
	s.cluster = newIndex(cluster)
	return s
}

// Len returns how many presets the set holds.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.size
}

// newIndex indexes each preset under the label pairs of its most selective
// equality requirement: the one whose pairs the fewest presets share.
func newIndex(presets []*Preset) *index {
	ix := &index{byLabel: map[string]map[string][]*Preset{}}
	anchors := make([][][]labelPair, len(presets))
	freq := map[labelPair]int{}
	for i, p := range presets {
		anchors[i] = p.anchors()
		for _, set := range anchors[i] {
			for _, lp := range set {
				freq[lp]++
			}
		}
	}
	// Each preset goes under the pairs of its cheapest set; the lists are
	// then cut from one array, so that the index costs the collector a
	// few objects, not one per label value.
	type placed struct {
		lp labelPair
		p  *Preset
	}
	under := make([]placed, 0, len(presets))
	for i, p := range presets {
		if len(anchors[i]) == 0 {
			ix.scan = append(ix.scan, p)
			continue
		}
		best, bestCost := anchors[i][0], -1
		for _, set := range anchors[i] {
			cost := 0
			for _, lp := range set {
				cost += freq[lp]
			}
			if bestCost < 0 || cost < bestCost {
				best, bestCost = set, cost
			}
		}
		for _, lp := range best {
			under = append(under, placed{lp, p})
		}
	}
	// Count each pair's presets, give each pair its run of the array,
	// then fill the runs.
	type span struct{ start, end int }
	spans := make(map[labelPair]span, len(under))
	for _, u := range under {
		sp := spans[u.lp]
		sp.end++
		spans[u.lp] = sp
	}
	next := 0
	for lp, sp := range spans {
		spans[lp] = span{next, next}
		next += sp.end
	}
	all := make([]*Preset, len(under))
	for _, u := range under {
		sp := spans[u.lp]
		all[sp.end] = u.p
		sp.end++
		spans[u.lp] = sp
	}
	for lp, sp := range spans {
		values := ix.byLabel[lp.key]
		if values == nil {
			values = map[string][]*Preset{}
			ix.byLabel[lp.key] = values
		}
		ps := all[sp.start:sp.end:sp.end]
		slices.SortFunc(ps, byName) // in the order match returns them
		values[lp.value] = ps
	}
	slices.SortFunc(ix.scan, byName)
	return ix
}

// match appends the presets whose selector matches the pod labels and, for
// cluster presets, whose namespace selector matches the namespace labels. A
// preset is listed under at most one value per key, and a pod has one value
// per key, so nothing is found twice.
func (ix *index) match(out []*Preset, podLabels, nsLabels labels.Set) []*Preset {
	if ix == nil {
		return out
	}
	start := len(out)
	try := func(ps []*Preset) {
		for _, p := range ps {
			if p.selector.Matches(podLabels) && (p.nsSelector == nil || p.nsSelector.Matches(nsLabels)) {
				if out == nil {
					out = make([]*Preset, 0, 8) // one allocation for the usual few
				}
				out = append(out, p)
			}
		}
	}
	ix.candidates(podLabels, try)
	// Each list is in name order (newIndex): presets found in one need no
	// sorting.
	if found := out[start:]; !slices.IsSortedFunc(found, byName) {
		slices.SortFunc(found, byName)
	}
	return out
}

// candidates calls try with every list of presets that may match the pod
// labels: those indexed under one of the labels, and those with no
// equality requirement. It walks whichever is shorter, the pod's labels or
// the keys presets are indexed by.
func (ix *index) candidates(podLabels labels.Set, try func([]*Preset)) {
	if len(ix.byLabel) <= len(podLabels) {
		for k, values := range ix.byLabel {
			if v, ok := podLabels[k]; ok {
				try(values[v])
			}
		}
	} else {
		for k, v := range podLabels {
			try(ix.byLabel[k][v])
		}
	}
	try(ix.scan)
}

func byName(a, b *Preset) int { return strings.Compare(a.ref.Name, b.ref.Name) }

// Match returns the presets that apply to a pod with these labels in this
// namespace, in application order: PodPresets of the namespace by name, then
// ClusterPodPresets by name.
func (s *Set) Match(ns Namespace, podLabels map[string]string) []*Preset {
	if s == nil {
		return nil
	}
	var out []*Preset
	out = s.namespaced[ns.Name].match(out, podLabels, nil)
	return s.cluster.match(out, podLabels, ns.Labels)
}
