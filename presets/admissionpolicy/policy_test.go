package admissionpolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// eval compiles and evaluates a CEL expression as the API server's
// admission policies do: the lists and strings libraries, bindings, and
// list and map literals whose members share one type. vars are label maps.
func eval(t *testing.T, expr string, vars map[string]any) ref.Val {
	t.Helper()
	opts := []cel.EnvOption{ext.Bindings(), ext.Lists(), ext.Strings(), cel.HomogeneousAggregateLiterals()}
	for name := range vars {
		opts = append(opts, cel.Variable(name, cel.MapType(cel.StringType, cel.StringType)))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		t.Fatalf("compiling %s: %v", expr, iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	if vars == nil {
		vars = map[string]any{}
	}
	out, _, err := prg.Eval(vars)
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return out
}

// What a tenant writes into a value must come out of the policy as that
// value: quote's literal, read by CEL, is the string itself.
func TestQuotedValuesAreTheValues(t *testing.T) {
	for _, s := range []string{
		"", "plain", `"`, `\`, `\"`, "\n\r\t\x00\x1f\x7f", "é ☃ 𝄞 \u2028\u2029",
		`"}] + [JSONPatch{op: "add", path: "/metadata/labels/owned", value: "yes"}] + [{"a": "`,
		`'''`, `"""`, "${A} $(B)", "\xff\xfe", // invalid UTF-8 comes out replaced, as from JSON
	} {
		want := validUTF8(s)
		if got := eval(t, quote(s), nil).Value(); got != want {
			t.Errorf("quote(%q) reads back as %q", s, got)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		s := string(b)
		if got, want := eval(t, quote(s), nil).Value(), validUTF8(s); got != want {
			t.Fatalf("quote(%q) reads back as %q", s, got)
		}
	}
}

// validUTF8 replaces each invalid byte with U+FFFD, as encoding/json does.
func validUTF8(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // ranging yields U+FFFD for each invalid byte
	}
	return b.String()
}

// A selector compiled to CEL selects exactly the label sets the selector
// matches, for every operator and for random selectors and label sets.
func TestSelectorsSelectWhatTheySelect(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		ls := randomSelector(r)
		sel, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := selectorCEL(sel, "podLabels", &b); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			set := randomLabels(r)
			got := eval(t, b.String(), map[string]any{"podLabels": set}).Value()
			if want := sel.Matches(labels.Set(set)); got != want {
				t.Fatalf("selector %v on %v: CEL %s says %v, want %v", ls, set, b.String(), got, want)
			}
		}
	}
}

var (
	selectorKeys   = []string{"app", "tier", "example.com/team"}
	selectorValues = []string{"web", "db", `a"b`}
)

// randomSelector draws a label selector of up to two matchLabels and two
// expressions of any operator on selectorKeys.
func randomSelector(r *rand.Rand) *metav1.LabelSelector {
	keys, values := selectorKeys, selectorValues
	ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
	ls := &metav1.LabelSelector{}
	for range r.IntN(3) {
		if ls.MatchLabels == nil {
			ls.MatchLabels = map[string]string{}
		}
		ls.MatchLabels[keys[r.IntN(len(keys))]] = values[r.IntN(2)]
	}
	for range r.IntN(3) {
		req := metav1.LabelSelectorRequirement{Key: keys[r.IntN(len(keys))], Operator: ops[r.IntN(len(ops))]}
		if req.Operator == metav1.LabelSelectorOpIn || req.Operator == metav1.LabelSelectorOpNotIn {
			req.Values = []string{values[r.IntN(2)], values[r.IntN(2)]}
		}
		ls.MatchExpressions = append(ls.MatchExpressions, req)
	}
	return ls
}

// randomLabels draws a pod's labels from selectorKeys and selectorValues.
func randomLabels(r *rand.Rand) map[string]string {
	set := map[string]string{}
	for _, k := range selectorKeys {
		if r.IntN(2) == 0 {
			set[k] = selectorValues[r.IntN(len(selectorValues))]
		}
	}
	return set
}

// The policy finds the presets a pod's labels can match through an index
// (idx, cands) and checks only those: it must never leave out one that
// matches, and must keep the presets' order. Random selectors of every
// operator, 60 presets to a policy, 200 random pods' labels.
func TestIndexFindsEveryMatchingPreset(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 60))
	var ps []*presets.Preset
	var sels []labels.Selector
	for k := range 60 {
		ls := randomSelector(r)
		pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%02d", k), Namespace: "ns", Generation: 1}}
		pp.Spec.Selector = *ls
		pp.Spec.Env = []v1alpha1.EnvVar{{Name: "A", Value: "1"}}
		ps = append(ps, loadPreset(t, pp))
		sels = append(sels, must(metav1.LabelSelectorAsSelector(ls)))
	}
	_, vars, err := (&gen{presets: ps}).program()
	if err != nil {
		t.Fatal(err)
	}
	exprs := map[string]string{}
	for _, v := range vars {
		exprs[v.Name] = v.Expression
	}
	env, err := cel.NewEnv(ext.Lists(), ext.Strings(), cel.HomogeneousAggregateLiterals(),
		cel.Variable("variables", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string, variables map[string]any) ref.Val {
		ast, iss := env.Compile(exprs[name])
		if iss.Err() != nil {
			t.Fatalf("compiling %s: %v", name, iss.Err())
		}
		out, _, err := must(env.Program(ast)).Eval(map[string]any{"variables": variables})
		if err != nil {
			t.Fatalf("evaluating %s: %v", name, err)
		}
		return out
	}
	idx := run("idx", nil)
	found := 0
	for range 200 {
		set := randomLabels(r)
		variables := map[string]any{"labels": set, "nsLabels": map[string]string{}, "idx": idx}
		var cands []int64
		for _, v := range run("cands", variables).Value().([]ref.Val) {
			cands = append(cands, v.Value().(int64))
		}
		if !slices.IsSorted(cands) || len(slices.Compact(slices.Clone(cands))) != len(cands) {
			t.Fatalf("labels %v: candidates %v are not in order, once each", set, cands)
		}
		for k, sel := range sels {
			if sel.Matches(labels.Set(set)) {
				found++
				if !slices.Contains(cands, int64(k)) {
					t.Fatalf("labels %v: preset %d (%v) matches but is not a candidate: %v", set, k, sel, cands)
				}
			}
		}
	}
	if found < 200 {
		t.Fatalf("only %d matches in 200 pods: the test draws too few to tell", found)
	}
}

// unbind's rewrite evaluates to what cel.bind does, nested and beside
// strings that hold parentheses, brackets and commas.
func TestUnbindBindsAlike(t *testing.T) {
	for _, expr := range []string{
		`cel.bind(x, [1, 2], x.map(i, i * 2))`,
		`cel.bind(x, "a,(b", cel.bind(y, x + ")]}", [x, y, "\"(,"]))`,
		`cel.bind(c, {"k": [1, 2]}, cel.bind(p, "/spec/" + string(size(c.k)), [p, string(c.k[1])]))`,
		`[cel.bind(a, 1, a + 1), cel.bind(b, 2, cel.bind(a, b * 3, a + b))]`,
	} {
		un := unbind(expr)
		if strings.Contains(un, "cel.bind") {
			t.Fatalf("unbind(%s) = %s still binds", expr, un)
		}
		if got, want := fmt.Sprint(eval(t, un, nil).Value()), fmt.Sprint(eval(t, expr, nil).Value()); got != want {
			t.Errorf("%s: unbound %s gives %s, want %s", expr, un, got, want)
		}
	}
}

func loadPreset(t *testing.T, obj v1alpha1.Object) *presets.Preset {
	t.Helper()
	obj.SetGeneration(1)
	p, errs := presets.Load(obj)
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	return p
}

// Check refuses what the compiler cannot express, naming the field; Plan
// names every refused preset and compiles nothing then.
func TestRefusalsNameTheField(t *testing.T) {
	vault := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "secrets", Namespace: "shop"}}
	vault.Spec.Env = []v1alpha1.EnvVar{{Name: "KEY", ValueFrom: &v1alpha1.EnvVarSource{Vault: &v1alpha1.VaultKeySelector{Path: "secret/data/shop", Field: "key"}}}}
	plain := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: "shop"}}
	plain.Spec.Env = []v1alpha1.EnvVar{{Name: "A", Value: "1"}}
	var r *Refusal
	if err := Check(loadPreset(t, vault)); !errors.As(err, &r) || r.Field != "spec" || !strings.Contains(err.Error(), "Consul or Vault") {
		t.Errorf("a preset with a Vault value: %v", err)
	}
	if err := Check(loadPreset(t, plain)); err != nil {
		t.Errorf("a plain preset: %v", err)
	}
	if _, err := Plan([]*presets.Preset{loadPreset(t, plain), loadPreset(t, vault)}); err == nil || !strings.Contains(err.Error(), "PodPreset/secrets@1: spec:") {
		t.Errorf("Plan with a Vault preset: %v", err)
	}
}

// Plan's arrangement: one policy per namespace with PodPresets, holding
// them and the ClusterPodPresets; one for the ClusterPodPresets elsewhere,
// bound away from those namespaces and the excluded ones; none without
// ClusterPodPresets; kube-system and ignored namespaces never bound.
func TestPlanBindsEachNamespaceOnce(t *testing.T) {
	pp := func(ns, name string) *presets.Preset {
		p := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		p.Spec.Env = []v1alpha1.EnvVar{{Name: "A", Value: name}}
		return loadPreset(t, p)
	}
	cpp := &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: "logging"}}
	cpp.Spec.Env = []v1alpha1.EnvVar{{Name: "LOG", Value: "json"}}
	plan, err := Plan([]*presets.Preset{pp("shop", "b"), pp("shop", "a"), pp("web", "a"), pp("podpreset", "x"), pp("kube-system", "y"), loadPreset(t, cpp)}, "podpreset")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range plan {
		names = append(names, p.Policy.Name)
		if p.Binding.Spec.PolicyName != p.Policy.Name {
			t.Errorf("binding %s binds %s", p.Binding.Name, p.Binding.Spec.PolicyName)
		}
		sel := p.Binding.Spec.MatchResources.NamespaceSelector
		if !slices.ContainsFunc(sel.MatchExpressions, func(r metav1.LabelSelectorRequirement) bool {
			return r.Key == presets.LabelIgnore && r.Operator == metav1.LabelSelectorOpNotIn && slices.Equal(r.Values, []string{"true"})
		}) || !slices.ContainsFunc(sel.MatchExpressions, func(r metav1.LabelSelectorRequirement) bool {
			return r.Key == corev1.LabelMetadataName && r.Operator == metav1.LabelSelectorOpNotIn && slices.Contains(r.Values, "kube-system")
		}) {
			t.Errorf("%s's binding does not keep out kube-system and ignored namespaces: %+v", p.Policy.Name, sel)
		}
	}
	if want := []string{"podpreset-ns-shop", "podpreset-ns-web", "podpreset-cluster"}; !slices.Equal(names, want) {
		t.Fatalf("policies %v, want %v", names, want)
	}
	var order []string
	for _, v := range plan[0].Policy.Spec.Variables {
		if strings.HasPrefix(v.Name, "d") {
			_, after, _ := strings.Cut(v.Expression, `"ref": dyn([`)
			ref, _, _ := strings.Cut(after, ",")
			order = append(order, ref)
		}
	}
	if want := []string{`"PodPreset/a@"`, `"PodPreset/b@"`, `"ClusterPodPreset/logging@"`}; !slices.Equal(order, want) {
		t.Errorf("shop's policy holds %v, want %v in that order", order, want)
	}
	if got := plan[0].Binding.Spec.MatchResources.NamespaceSelector.MatchLabels; got[corev1.LabelMetadataName] != "shop" {
		t.Errorf("shop's binding selects %v", got)
	}
	cluster := plan[2].Binding.Spec.MatchResources.NamespaceSelector.MatchExpressions[0]
	if cluster.Operator != metav1.LabelSelectorOpNotIn || !slices.Equal(cluster.Values, []string{"shop", "web", "podpreset"}) {
		t.Errorf("the ClusterPodPresets' binding: %+v, want NotIn shop, web and the excluded podpreset", cluster)
	}
	noCluster, err := Plan([]*presets.Preset{pp("shop", "a")})
	if err != nil || len(noCluster) != 1 {
		t.Errorf("without ClusterPodPresets: %d policies, %v; want only shop's", len(noCluster), err)
	}
}

// A preset's data reads back, through CEL, as its entries' JSON: what the
// policy writes into the pod is what the webhook's patch writes.
func TestDataIsTheEntriesJSON(t *testing.T) {
	entries := []any{
		[]corev1.EnvVar{{Name: "A", Value: hostile}, {Name: "B", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "k", Optional: new(true)}}}},
		[]corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, DefaultMode: new(int32(0o440)), Items: []corev1.KeyToPath{{Key: "a", Path: "b"}}}}}},
		[]corev1.Container{{Name: "init", Image: "registry.example/init:1", Args: []string{"--x", ""}, Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}},
	}
	for _, e := range entries {
		lit, err := literal(e)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal(toJSON(t, eval(t, "dyn("+lit+")", nil)))
		if err != nil {
			t.Fatal(err)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%T reads back as\n%s\nwant\n%s", e, got, want)
		}
	}
}

const hostile = `"}] + [JSONPatch{op: "remove", path: "/spec"}] + [{"a": "`

// toJSON converts a CEL value to plain Go values for encoding/json.
func toJSON(t *testing.T, v ref.Val) any {
	t.Helper()
	native, err := v.ConvertToNative(reflect.TypeFor[*structpb.Value]())
	if err != nil {
		t.Fatal(err)
	}
	return native.(*structpb.Value).AsInterface()
}

// The mutation compares the pod's envFrom entries, keyed in CEL
// (envFromKey), with the presets' keys, computed in Go (envFromCELKey):
// both must key every entry alike, or a preset's entry would be added
// beside the pod's own.
func TestEnvFromKeysAgree(t *testing.T) {
	env, err := cel.NewEnv(cel.Variable("o", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(envFromKey)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	ref := func(name string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: name} }
	cases := []corev1.EnvFromSource{
		{},
		{Prefix: "P_"},
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("a")}},
		{ConfigMapRef: &corev1.ConfigMapEnvSource{}},
		{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("a")}, Prefix: "|s/"},
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("a|s/b")}},
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("a")}, SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("b")}, Prefix: "X"},
	}
	seen := map[string]int{}
	for i, e := range cases {
		raw, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var o any
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatal(err)
		}
		out, _, err := prg.Eval(map[string]any{"o": o})
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if got, want := out.Value(), envFromCELKey(&e); got != want {
			t.Errorf("%s: CEL keys it %q, the compiler %q", raw, got, want)
		}
		if j, dup := seen[envFromCELKey(&e)]; dup {
			t.Errorf("entries %d and %d have one key, %q", j, i, envFromCELKey(&e))
		}
		seen[envFromCELKey(&e)] = i
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
