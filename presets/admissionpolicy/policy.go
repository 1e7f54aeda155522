package admissionpolicy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Policy is a MutatingAdmissionPolicy and the binding that puts it in
// force.
type Policy struct {
	Policy  *admissionregistrationv1.MutatingAdmissionPolicy
	Binding *admissionregistrationv1.MutatingAdmissionPolicyBinding
}

// Refusal is a preset the compiler cannot express, and why: the field
// that stands in the way.
type Refusal struct {
	Preset presets.Ref
	Field  string
	Reason string
}

func (r *Refusal) Error() string {
	return r.Preset.String() + ": " + r.Field + ": " + r.Reason + "; the webhook serves it"
}

// Check says whether a preset can be compiled: nil, or a *Refusal naming
// the field that cannot be.
func Check(p *presets.Preset) error {
	c := p.Content()
	refuse := func(field, reason string) error { return &Refusal{Preset: p.Ref(), Field: field, Reason: reason} }
	switch {
	case c.Sourced:
		return refuse("spec", "takes values from Consul or Vault, whose materialised objects the webhook checks at admission")
	case c.Foreign:
		return refuse("status.foreignObjects", "objects under its materialised names are someone else's")
	}
	if err := selectorCEL(c.Selector, "variables.labels", new(strings.Builder)); err != nil {
		return refuse("spec.selector", err.Error())
	}
	if c.NamespaceSelector != nil {
		if err := selectorCEL(c.NamespaceSelector, "variables.nsLabels", new(strings.Builder)); err != nil {
			return refuse("spec.namespaceSelector", err.Error())
		}
	}
	return nil
}

// Compile compiles presets, in application order (PodPresets by name,
// then ClusterPodPresets by name, as presets.Set.Match orders them), into
// one policy named name whose binding selects the namespaces
// namespaceSelector selects (every namespace when nil) but kube-system and
// those labelled podpreset.dev/ignore=true. Refused presets (the preset
// policy's) are left out, as the webhook leaves them out. A preset Check
// refuses fails the whole compilation.
//
// With opts.HandOff the policy is for the webhook's auto mode: it leaves
// alone (an empty patch) every pod whose merge could report anything — a
// key of a matching preset that the pod, or another matching preset,
// already has, or a refused preset that matches — and the webhook, which
// sees the pod next, merges it and warns in its own words. Without it the
// policy merges every pod and reports nothing (kubectl podpreset compile:
// no webhook behind it).
func Compile(name string, ps []*presets.Preset, namespaceSelector *metav1.LabelSelector, opts Options) (Policy, error) {
	var errs []error
	var served, refused []*presets.Preset
	for _, p := range ps {
		if p.Refused() != nil {
			refused = append(refused, p)
			continue
		}
		if err := Check(p); err != nil {
			errs = append(errs, err)
			continue
		}
		served = append(served, p)
	}
	if len(errs) > 0 {
		return Policy{}, errors.Join(errs...)
	}
	g := &gen{presets: served}
	if opts.HandOff {
		g.handOff, g.refused = true, refused
	}
	expr, vars, err := g.program()
	if err != nil {
		return Policy{}, fmt.Errorf("compiling policy %s: %w", name, err)
	}
	fail := admissionregistrationv1.Fail
	equivalent := admissionregistrationv1.Equivalent
	pol := &admissionregistrationv1.MutatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "MutatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelManagedBy: ManagedBy}},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{
				MatchPolicy: &equivalent,
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}}},
			},
			Variables:          vars,
			Mutations:          []admissionregistrationv1.Mutation{{PatchType: admissionregistrationv1.PatchTypeJSONPatch, JSONPatch: &admissionregistrationv1.JSONPatch{Expression: expr}}},
			FailurePolicy:      &fail,
			ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
		},
	}
	nsSel := &metav1.LabelSelector{}
	if namespaceSelector != nil {
		nsSel = namespaceSelector.DeepCopy()
	}
	nsSel.MatchExpressions = append(nsSel.MatchExpressions,
		metav1.LabelSelectorRequirement{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{presets.SystemNamespace}},
		metav1.LabelSelectorRequirement{Key: presets.LabelIgnore, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"true"}})
	bind := &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "MutatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelManagedBy: ManagedBy}},
		Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{
			PolicyName:     name,
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: nsSel},
		},
	}
	return Policy{Policy: pol, Binding: bind}, nil
}

// The label on every policy and binding podpreset writes.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "podpreset"
)

// Options are how Compile compiles.
type Options struct {
	// HandOff leaves to the webhook every pod whose merge could report a
	// conflict or a refused preset (the webhook's auto mode).
	HandOff bool
}

// gen writes a policy's CEL.
type gen struct {
	presets []*presets.Preset
	// handOff: Options.HandOff; refused the refused presets, which hand a
	// pod they match off to the webhook.
	handOff bool
	refused []*presets.Preset
}

// Limits of the API server's CEL: each expression (a variable's, the
// mutation's) holds at most 100,000 code points; an object must stay well
// under etcd's 1.5 MiB.
const (
	maxExpression = 100_000
	maxPolicy     = 1 << 20
)

// program returns the mutation's expression and the variables it reads.
//
// Each preset is two variables: m<k>, whether it matches the pod, and
// d<k>, what it injects, as plain data (maps and lists whose members are
// dyn(), the API server's CEL wanting lists and maps of one type). The
// variable matched lists the data of the matching presets, in order, and
// evaluates only theirs; it checks only the presets an index of label
// pairs (idx, cands) says the pod's labels can match, so that a pod costs
// the API server the selectors of a few presets, not of all. The mutation
// is the same text whatever the presets: it merges variables.matched into
// the pod. So a policy grows by
// its presets' data only, and each preset's data is an expression of its
// own, under the API server's limit per expression.
func (g *gen) program() (string, []admissionregistrationv1.Variable, error) {
	vars := []admissionregistrationv1.Variable{
		{Name: "labels", Expression: `has(object.metadata.labels) ? object.metadata.labels : {}`},
		{Name: "ann", Expression: `has(object.metadata.annotations) ? object.metadata.annotations : {}`},
		{Name: "nsLabels", Expression: `namespaceObject != null && has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {}`},
		// presets.Skip: mirror pods and pods that opted out.
		{Name: "skip", Expression: fmt.Sprintf(`(%[1]s in variables.ann && variables.ann[%[1]s] != "") || (%[2]s in variables.ann && variables.ann[%[2]s] == "true") || (%[3]s in variables.ann && variables.ann[%[3]s] == "true")`,
			quote(corev1.MirrorPodAnnotationKey), quote(presets.AnnotationExclude), quote(presets.AnnotationExcludeLegacy))},
	}
	idx := map[string][]int{} // "key=value" → the presets that require it
	var scan []string         // the presets idx cannot find
	for k, p := range g.presets {
		c := p.Content()
		match, err := matchCEL(p)
		if err != nil {
			return "", nil, err
		}
		data, err := presetData(p)
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", p.Ref(), err)
		}
		vars = append(vars,
			admissionregistrationv1.Variable{Name: "m" + strconv.Itoa(k), Expression: match},
			admissionregistrationv1.Variable{Name: "d" + strconv.Itoa(k), Expression: data})
		if pairs := indexPairs(c.Selector); pairs != nil {
			for _, kv := range pairs {
				idx[kv] = append(idx[kv], k)
			}
		} else {
			scan = append(scan, strconv.Itoa(k))
		}
	}
	if len(g.presets) == 0 {
		// A refused preset that matches is the webhook's to report: it
		// sees the pod unchanged.
		return "[]", vars, nil
	}
	var entries []string
	for _, kv := range slices.Sorted(maps.Keys(idx)) {
		ks := make([]string, len(idx[kv]))
		for i, k := range idx[kv] {
			ks[i] = strconv.Itoa(k)
		}
		entries = append(entries, quote(kv)+": ["+strings.Join(ks, ", ")+"]")
	}
	vars = append(vars,
		// The presets the pod's labels can match: those indexed under one
		// of its labels (key=value), and those the index cannot find, in
		// order. Each is then checked whole (m<k>): the index only spares
		// the API server the selectors of presets that cannot match.
		admissionregistrationv1.Variable{Name: "idx", Expression: "{" + strings.Join(entries, ", ") + "}"},
		admissionregistrationv1.Variable{Name: "cands", Expression: `(variables.labels.map(k, k + "=" + variables.labels[k]).filter(kv, kv in variables.idx).map(kv, variables.idx[kv]).flatten() + [` +
			strings.Join(scan, ", ") + `]).sort()`},
		admissionregistrationv1.Variable{Name: "matched", Expression: "variables.cands.map(i, " + pick(0, len(g.presets)) + ").flatten()"},
		admissionregistrationv1.Variable{Name: "oldApplied", Expression: fmt.Sprintf(`%[1]s in variables.ann ? variables.ann[%[1]s] : ""`, quote(presets.AnnotationApplied))},
		// presets' recordApplied: the first application writes every
		// entry; a later one updates each preset's first entry in place
		// and appends the presets it lacks. A preset's ref is [its
		// entry's prefix, the entry].
		admissionregistrationv1.Variable{Name: "newApplied", Expression: `variables.oldApplied == "" ? variables.matched.map(d, d.ref[1]).join(",") : ` +
			`cel.bind(refs, variables.matched.map(d, d.ref), cel.bind(es, variables.oldApplied.split(","), (lists.range(size(es)).map(i, cel.bind(hit, refs.filter(r, es[i].trim().startsWith(r[0]) && !es.slice(0, i).exists(x, x.trim().startsWith(r[0]))), size(hit) > 0 ? hit[0][1] : es[i])) + ` +
			`refs.filter(r, !es.exists(x, x.trim().startsWith(r[0]))).map(r, r[1])).join(",")))`},
	)
	skip := "variables.skip || size(variables.matched) == 0"
	if g.handOff {
		var refused []string
		for _, p := range g.refused {
			match, err := matchCEL(p)
			if err != nil {
				return "", nil, err
			}
			refused = append(refused, "("+match+")")
		}
		if len(refused) == 0 {
			refused = []string{"false"}
		}
		vars = append(vars,
			admissionregistrationv1.Variable{Name: "refusedMatch", Expression: strings.Join(refused, " || ")},
			admissionregistrationv1.Variable{Name: "handOff", Expression: handOffExpr})
		skip = "variables.skip || variables.refusedMatch || size(variables.matched) == 0 || variables.handOff"
	}
	expr := skip + " ? [] :\n" +
		"cel.bind(inits, " + initsExpr + ",\n" + podOps + " +\n" + containerOps + ")"
	total := len(expr)
	for i := range vars {
		vars[i].Expression = unbind(vars[i].Expression)
		if n := utf8.RuneCountInString(vars[i].Expression); n > maxExpression {
			return "", nil, fmt.Errorf("variable %s is %d code points, over the API server's %d", vars[i].Name, n, maxExpression)
		}
		total += len(vars[i].Expression)
	}
	if total > maxPolicy {
		return "", nil, fmt.Errorf("%d presets make a policy of %d bytes, over the %d one policy may hold", len(g.presets), total, maxPolicy)
	}
	return unbind(expr), vars, nil
}

// matchCEL is whether preset p matches the pod: its selector on the pod's
// labels and, for a ClusterPodPreset, its namespaceSelector on the
// namespace's.
func matchCEL(p *presets.Preset) (string, error) {
	c := p.Content()
	var b strings.Builder
	if err := selectorCEL(c.Selector, "variables.labels", &b); err != nil {
		return "", err
	}
	if c.NamespaceSelector != nil {
		b.WriteString(" && ")
		if err := selectorCEL(c.NamespaceSelector, "variables.nsLabels", &b); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// pick renders, for a preset index i in [lo, hi), the preset's data in a
// list when it matches, else an empty list: a binary tree of conditions on
// i, so that a candidate costs log2(hi-lo) comparisons and only its own
// variables are evaluated.
func pick(lo, hi int) string {
	if hi-lo == 1 {
		return fmt.Sprintf("(variables.m%[1]d ? [variables.d%[1]d] : [])", lo)
	}
	mid := lo + (hi-lo)/2
	return fmt.Sprintf("(i < %d ? %s : %s)", mid, pick(lo, mid), pick(mid, hi))
}

// indexPairs are the "key=value" label pairs under which a selector's
// presets are indexed: one of its requirements' (the first that is an
// equality or an In, by key), one pair per value, as a pod it selects has
// one of them. Nil when it has none such: the preset is checked for every
// pod.
func indexPairs(sel labels.Selector) []string {
	reqs, selectable := sel.Requirements()
	if !selectable {
		return nil
	}
	for _, r := range reqs {
		switch r.Operator() {
		case selection.In, selection.Equals, selection.DoubleEquals:
			// A value listed twice is indexed once: the preset must be a
			// candidate once.
			var out []string
			for _, v := range r.ValuesUnsorted() {
				if kv := r.Key() + "=" + v; !slices.Contains(out, kv) {
					out = append(out, kv)
				}
			}
			return out
		}
	}
	return nil
}

// unbind rewrites cel.bind(x, e, body), which the API server's CEL for
// admission policies lacks, as [e].map(x, body)[0], which binds x alike.
func unbind(expr string) string {
	for {
		i := strings.LastIndex(expr, "cel.bind(")
		if i < 0 {
			return expr
		}
		// The bind's three arguments end at its closing parenthesis.
		args, end := splitArgs(expr[i+len("cel.bind("):])
		expr = expr[:i] + "[" + args[1] + "].map(" + args[0] + ", " + args[2] + ")[0]" + expr[i+len("cel.bind(")+end:]
	}
}

// splitArgs splits s, the text after a call's opening parenthesis, into
// the call's top-level arguments, and returns where the call ends (after
// its closing parenthesis). Strings are skipped whole.
func splitArgs(s string) ([]string, int) {
	var args []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			if depth == 0 {
				return append(args, strings.TrimSpace(s[start:i])), i + 1
			}
			depth--
		case ',':
			if depth == 0 {
				args = append(args, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	panic("unbalanced CEL: " + s)
}

// presetData renders what a preset injects, and its applied entry, as CEL
// data: {"ref": [prefix, entry], "targets": [...], "env": [...],
// "envK": [the entries' keys], …}, the lists present only when not empty.
func presetData(p *presets.Preset) (string, error) {
	c := p.Content()
	r := p.Ref()
	prefix := r.Kind + "/" + r.Name + "@"
	fields := []string{`"ref": dyn([` + quote(prefix) + ", " + quote(prefix+strconv.FormatInt(r.Generation, 10)) + `])`}
	if c.Containers != nil {
		var names []string
		for _, n := range c.Containers {
			names = append(names, quote(n))
		}
		fields = append(fields, `"targets": dyn([`+strings.Join(names, ", ")+`])`)
	}
	var anns []string
	for _, a := range c.Annotations {
		anns = append(anns, "["+quote(a[0])+", "+quote(a[1])+"]")
	}
	if len(anns) > 0 {
		fields = append(fields, `"anns": dyn([`+strings.Join(anns, ", ")+`])`)
	}
	for _, l := range []struct {
		key  string
		list any
		keys []string // the entries' keys, as the mutation compares them
	}{
		{"env", c.Env, keys(c.Env, func(e *corev1.EnvVar) string { return e.Name })},
		{"envFrom", c.EnvFrom, keys(c.EnvFrom, envFromCELKey)},
		{"volumes", c.Volumes, keys(c.Volumes, func(v *corev1.Volume) string { return v.Name })},
		{"mounts", c.VolumeMounts, keys(c.VolumeMounts, func(m *corev1.VolumeMount) string { return m.MountPath })},
		{"pulls", c.ImagePullSecrets, keys(c.ImagePullSecrets, func(s *corev1.LocalObjectReference) string { return s.Name })},
		{"inits", c.InitContainers, keys(c.InitContainers, func(c *corev1.Container) string { return c.Name })},
	} {
		if len(l.keys) == 0 {
			continue
		}
		lit, err := literal(l.list)
		if err != nil {
			return "", fmt.Errorf("%s: %w", l.key, err)
		}
		quoted := make([]string, len(l.keys))
		for i, k := range l.keys {
			quoted[i] = quote(k)
		}
		fields = append(fields, quote(l.key)+": dyn("+lit+")", quote(l.key+"K")+": dyn(["+strings.Join(quoted, ", ")+"])")
	}
	return "{" + strings.Join(fields, ", ") + "}", nil
}

// keys are the keys of entries, as key renders each.
func keys[T any](entries []T, key func(*T) string) []string {
	out := make([]string, len(entries))
	for i := range entries {
		out[i] = key(&entries[i])
	}
	return out
}

// list renders the entries under key of every matching preset, in order;
// cond, when set, filters the presets (d).
func list(key, cond string) string {
	presets := "variables.matched"
	if cond != "" {
		presets += ".filter(d, " + cond + ")"
	}
	return fmt.Sprintf(`%s.map(d, has(d.%[2]s) ? d.%[2]s : []).flatten()`, presets, key)
}

// addEntries renders the patch operations that add what the matching
// presets (filtered by cond) hold under kind and the list at path (whose
// value in the object is own) lacks, by key: kept in order, the first of
// each key, none the list has. The presets' keys are the compiler's (under
// kind+"K" in their data, computed once, in Go); ownKey is the key of an
// entry o of the list, in CEL. first puts them before the list's own
// entries, else after. Membership and first occurrence are the API
// server's in and indexOf, not comprehensions: each comprehension step
// costs the API server a cost-tracking call.
func addEntries(kind, cond, own, path, ownKey string, first bool) string {
	at := `string(j)`
	if !first {
		at = `"-"`
	}
	return fmt.Sprintf(`cel.bind(cand, %[1]s, cel.bind(keys, %[2]s, cel.bind(ownKeys, has(%[3]s) ? %[3]s.map(o, %[4]s) : [], `+
		`cel.bind(keep, lists.range(size(keys)).filter(j, !(keys[j] in ownKeys) && keys.indexOf(keys[j]) == j).map(j, cand[j]), `+
		`size(keep) == 0 ? [] : has(%[3]s) ? lists.range(size(keep)).map(j, JSONPatch{op: "add", path: %[5]s + "/" + %[6]s, value: keep[j]}) : [JSONPatch{op: "add", path: %[5]s, value: keep}]))))`,
		list(kind, cond), list(kind+"K", cond), own, ownKey, path, at)
}

// initsExpr is the init containers the matching presets inject: each, in
// preset order, unless the pod has a container (init or not) of its name
// or an earlier preset injects one. Bound as inits in the mutation.
var initsExpr = `cel.bind(cand, ` + list("inits", "") + `, cel.bind(keys, ` + list("initsK", "") + `, cel.bind(names, (has(object.spec.initContainers) ? object.spec.initContainers.map(c, c.name) : []) + (has(object.spec.containers) ? object.spec.containers.map(c, c.name) : []), ` +
	`lists.range(size(keys)).filter(j, !(keys[j] in names) && keys.indexOf(keys[j]) == j).map(j, cand[j]))))`

// handOffExpr says whether the engine could report something about the
// matching presets on this pod: whether a key one of them injects is one
// that another has too, or that the pod has (a container's env name,
// envFrom source or mount path, whatever the container; a volume's, an
// init container's or a container's name; an annotation with another
// value), or that an injected init container has. It errs on the side of
// the webhook: the engine reports a conflict only when the values differ,
// and only in the containers a preset targets. A policy compiled with
// Options.HandOff leaves such a pod to the webhook, whose merge is the
// same and whose warnings are its own.
var handOffExpr = `cel.bind(envK, ` + list("envK", "") + `, cel.bind(envFromK, ` + list("envFromK", "") + `, cel.bind(mountsK, ` + list("mountsK", "") + `, ` +
	`cel.bind(volumesK, ` + list("volumesK", "") + `, cel.bind(initsK, ` + list("initsK", "") + `, cel.bind(annK, ` + list("anns", "") + `.map(a, a[0]), ` +
	`[envK, envFromK, mountsK, volumesK, initsK, annK].exists(ks, lists.range(size(ks)).exists(j, ks.indexOf(ks[j]) != j)) || ` +
	`(has(object.spec.volumes) && object.spec.volumes.exists(o, o.name in volumesK)) || ` +
	`` + list("anns", "") + `.exists(a, a[0] in variables.ann && variables.ann[a[0]] != a[1]) || ` +
	`(has(object.spec.initContainers) ? object.spec.initContainers : []).exists(c, c.name in initsK || ` + ownCollides + `) || ` +
	`(has(object.spec.containers) ? object.spec.containers : []).exists(c, c.name in initsK || ` + ownCollides + `) || ` +
	list("inits", "") + `.exists(c, ` + ownCollides + `)))))))`

// ownCollides says whether a container c has an env name, envFrom source
// or mount path among the matching presets' (envK, envFromK, mountsK).
var ownCollides = `(has(c.env) && c.env.exists(o, o.name in envK)) || (has(c.envFrom) && c.envFrom.exists(o, ` + envFromKey + ` in envFromK)) || ` +
	`(has(c.volumeMounts) && c.volumeMounts.exists(o, o.mountPath in mountsK))`

// podOps are the operations on the pod's own fields: volumes and image
// pull secrets after the pod's own; annotations when absent, then
// podpreset.dev/applied when it changes.
var podOps = addEntries("volumes", "", "object.spec.volumes", `"/spec/volumes"`, "o.name", false) + " +\n" +
	addEntries("pulls", "", "object.spec.imagePullSecrets", `"/spec/imagePullSecrets"`, `(has(o.name) ? o.name : "")`, false) + " +\n" +
	fmt.Sprintf(`cel.bind(cand, %s, cel.bind(keys, cand.map(a, a[0]), cel.bind(keep, lists.range(size(keys)).filter(j, !(keys[j] in variables.ann) && keys.indexOf(keys[j]) == j).map(j, cand[j]) + `+
		`(variables.newApplied != variables.oldApplied ? [[%s, variables.newApplied]] : []), `+
		`size(keep) == 0 ? [] : (has(object.metadata.annotations) ? [] : [JSONPatch{op: "add", path: "/metadata/annotations", value: {}}]) + `+
		`keep.map(a, JSONPatch{op: "add", path: "/metadata/annotations/" + jsonpatch.escapeKey(a[0]), value: a[1]}))))`,
		list("anns", ""), quote(presets.AnnotationApplied))

// targetOps are the operations on one target container c at path p: what
// the matching presets that target it add to its env and envFrom (before
// its own) and volumeMounts (after).
var targetOps = func() string {
	cond := "!has(d.targets) || c.name in d.targets"
	return addEntries("env", cond, "c.env", `p + "/env"`, "o.name", true) + " + " +
		addEntries("envFrom", cond, "c.envFrom", `p + "/envFrom"`, envFromKey, true) + " + " +
		addEntries("mounts", cond, "c.volumeMounts", `p + "/volumeMounts"`, "o.mountPath", false)
}()

// containerOps are the operations on every init container and container;
// then the injected init containers go in before the pod's own, and get
// what the presets add to them (they are targets of every preset, as in
// the engine). The pod's own init containers are patched at their indices
// before the injected ones shift them.
var containerOps = fmt.Sprintf(`(has(object.spec.initContainers) ? lists.range(size(object.spec.initContainers)).map(i, cel.bind(c, object.spec.initContainers[i], cel.bind(p, "/spec/initContainers/" + string(i), %[1]s))).flatten() : []) +
(has(object.spec.containers) ? lists.range(size(object.spec.containers)).map(i, cel.bind(c, object.spec.containers[i], cel.bind(p, "/spec/containers/" + string(i), %[1]s))).flatten() : []) +
(has(object.spec.initContainers) ? lists.range(size(inits)).map(j, JSONPatch{op: "add", path: "/spec/initContainers/" + string(j), value: inits[j]}) : size(inits) == 0 ? [] : [JSONPatch{op: "add", path: "/spec/initContainers", value: inits}]) +
lists.range(size(inits)).map(i, cel.bind(c, inits[i], cel.bind(p, "/spec/initContainers/" + string(i), %[1]s))).flatten()`, targetOps)

// envFromKey is presets' key of an envFrom entry o of the pod's:
// (configMap name, secret name, prefix), as envFromCELKey writes a
// preset's.
const envFromKey = `((has(o.configMapRef) ? "c/" + (has(o.configMapRef.name) ? o.configMapRef.name : "") : "-") + "|" + ` +
	`(has(o.secretRef) ? "s/" + (has(o.secretRef.name) ? o.secretRef.name : "") : "-") + "|" + (has(o.prefix) ? o.prefix : ""))`

// envFromCELKey is envFromKey of a preset's envFrom entry.
func envFromCELKey(e *corev1.EnvFromSource) string {
	k := "-"
	if e.ConfigMapRef != nil {
		k = "c/" + e.ConfigMapRef.Name
	}
	if e.SecretRef != nil {
		k += "|s/" + e.SecretRef.Name
	} else {
		k += "|-"
	}
	return k + "|" + e.Prefix
}

// selectorCEL writes a label selector as a CEL condition on the label map
// m: every requirement holds.
func selectorCEL(sel labels.Selector, m string, b *strings.Builder) error {
	reqs, selectable := sel.Requirements()
	if !selectable {
		b.WriteString("false")
		return nil
	}
	if len(reqs) == 0 {
		b.WriteString("true")
		return nil
	}
	for i, r := range reqs {
		if i > 0 {
			b.WriteString(" && ")
		}
		key := quote(r.Key())
		var vals []string
		for _, v := range r.ValuesUnsorted() {
			vals = append(vals, quote(v))
		}
		in := "[" + strings.Join(vals, ", ") + "]"
		switch r.Operator() {
		case selection.In, selection.Equals, selection.DoubleEquals:
			fmt.Fprintf(b, "(%[1]s in %[2]s && %[2]s[%[1]s] in %[3]s)", key, m, in)
		case selection.NotIn, selection.NotEquals:
			fmt.Fprintf(b, "!(%[1]s in %[2]s && %[2]s[%[1]s] in %[3]s)", key, m, in)
		case selection.Exists:
			fmt.Fprintf(b, "(%s in %s)", key, m)
		case selection.DoesNotExist:
			fmt.Fprintf(b, "!(%s in %s)", key, m)
		default:
			return fmt.Errorf("operator %s is not compiled", r.Operator())
		}
	}
	return nil
}

// Names of the policies Plan writes.
const (
	namespacePolicyPrefix = "podpreset-ns-"
	clusterPolicyName     = "podpreset-cluster"
)

// NamespacePolicyName is the name of the policy serving namespace ns.
func NamespacePolicyName(ns string) string { return namespacePolicyPrefix + ns }

// AnnotationInputs on a policy identifies what it was compiled from (a
// hash of its presets' references and generations, and of the namespaces
// its binding leaves out): a webhook replica leaves a namespace's pods to
// a policy only once it sees the policy compiled from the presets it holds
// itself.
const AnnotationInputs = "podpreset.dev/inputs"

// compilerVersion is part of AnnotationInputs: it changes when what the
// compiler writes for the same presets changes (2: auto mode's policies
// hand off to the webhook the pods it would warn about).
const compilerVersion = 2

// Layout is which policy serves which namespace, and from what inputs.
type Layout struct {
	// byNS are each namespace's PodPresets, by name; cluster the
	// ClusterPodPresets, by name; others the namespaces the cluster
	// policy leaves out.
	byNS    map[string][]*presets.Preset
	cluster []*presets.Preset
	others  []string
	inputs  map[string]string // by policy name
}

// NewLayout arranges presets as Plan compiles them, leaving out the
// namespaces in exclude (and kube-system).
func NewLayout(ps []*presets.Preset, exclude ...string) *Layout {
	l := &Layout{byNS: map[string][]*presets.Preset{}, inputs: map[string]string{}}
	for _, p := range ps {
		r := p.Ref()
		switch {
		case r.Kind == v1alpha1.KindClusterPodPreset:
			l.cluster = append(l.cluster, p)
		case slices.Contains(exclude, r.Namespace) || r.Namespace == presets.SystemNamespace:
		default:
			l.byNS[r.Namespace] = append(l.byNS[r.Namespace], p)
		}
	}
	byName := func(a, b *presets.Preset) int { return strings.Compare(a.Ref().Name, b.Ref().Name) }
	slices.SortFunc(l.cluster, byName)
	for ns, own := range l.byNS {
		slices.SortFunc(own, byName)
		l.inputs[NamespacePolicyName(ns)] = inputs(append(slices.Clone(own), l.cluster...), nil)
	}
	l.others = append(slices.Sorted(maps.Keys(l.byNS)), exclude...)
	if len(l.cluster) > 0 {
		l.inputs[clusterPolicyName] = inputs(l.cluster, l.others)
	}
	return l
}

// Serving returns the policy that would serve pods of namespace ns, and
// its inputs; empty when none would (no preset can reach them).
func (l *Layout) Serving(ns string) (name, in string) {
	if ns == presets.SystemNamespace {
		return "", ""
	}
	if _, ok := l.byNS[ns]; ok {
		name = NamespacePolicyName(ns)
	} else if slices.Contains(l.others, ns) || len(l.cluster) == 0 {
		return "", ""
	} else {
		name = clusterPolicyName
	}
	return name, l.inputs[name]
}

// inputs hashes what a policy is compiled from: each preset's reference
// (kind, namespace, name, generation: what Check and the compiler read is
// the spec, which the generation versions) and whether it is refused, in
// order, and the namespaces its binding leaves out.
func inputs(ps []*presets.Preset, others []string) string {
	h := sha256.New()
	// The compiler's version: a policy an older one wrote is rewritten.
	fmt.Fprintf(h, "compiler %d\n", compilerVersion)
	for _, p := range ps {
		r := p.Ref()
		fmt.Fprintf(h, "%s/%s/%s@%d %v\n", r.Kind, r.Namespace, r.Name, r.Generation, p.Refused() != nil)
	}
	for _, ns := range others {
		fmt.Fprintf(h, "-%s\n", ns)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Plan compiles every preset of a cluster into policies such that at most
// one applies to any pod, so that their order never matters: one per
// namespace that has PodPresets, holding them and every ClusterPodPreset
// (whose namespaceSelector is a condition in CEL), and, when there are
// ClusterPodPresets, one for every other namespace holding those. Presets
// of the namespaces in exclude (the webhook's own) are left out, and so are
// those namespaces. Any preset Check refuses fails the plan, naming it.
func Plan(ps []*presets.Preset, exclude ...string) ([]Policy, error) {
	out, errs := plan(ps, exclude, true)
	return out, errors.Join(errs...)
}

// PlanServable is Plan for the webhook's auto mode: the policies of the
// namespaces whose presets all compile (a ClusterPodPreset that does not
// compile leaves every namespace to the webhook), and the refusals. They
// are compiled with Options.HandOff: a pod whose merge the webhook would
// warn about is the webhook's.
func PlanServable(ps []*presets.Preset, exclude ...string) ([]Policy, []error) {
	return plan(ps, exclude, false)
}

func plan(ps []*presets.Preset, exclude []string, strict bool) ([]Policy, []error) {
	l := NewLayout(ps, exclude...)
	// The CLI's policies (strict) have no webhook behind them; the
	// webhook's own hand off what it would warn about.
	opts := Options{HandOff: !strict}
	refusals := func(list []*presets.Preset) []error {
		var errs []error
		for _, p := range list {
			if p.Refused() == nil {
				if err := Check(p); err != nil {
					errs = append(errs, err)
				}
			}
		}
		return errs
	}
	clusterErrs := refusals(l.cluster)
	var errs []error
	var servable []string
	for _, ns := range slices.Sorted(maps.Keys(l.byNS)) {
		if e := refusals(l.byNS[ns]); len(e) > 0 {
			errs = append(errs, e...)
		} else {
			servable = append(servable, ns)
		}
	}
	errs = append(errs, clusterErrs...)
	if len(clusterErrs) > 0 || strict && len(errs) > 0 {
		return nil, errs
	}
	var out []Policy
	for _, ns := range servable {
		pol, err := Compile(NamespacePolicyName(ns), append(slices.Clone(l.byNS[ns]), l.cluster...),
			&metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, pol)
	}
	if len(l.cluster) > 0 {
		var sel *metav1.LabelSelector
		if len(l.others) > 0 {
			sel = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: l.others}}}
		}
		pol, err := Compile(clusterPolicyName, l.cluster, sel, opts)
		if err != nil {
			errs = append(errs, err)
		} else {
			out = append(out, pol)
		}
	}
	for _, p := range out {
		in := l.inputs[p.Policy.Name]
		p.Policy.Annotations = map[string]string{AnnotationInputs: in}
		p.Binding.Annotations = map[string]string{AnnotationInputs: in}
	}
	return out, errs
}
