package e2e

import (
	"context"
	cryptorand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/admissionpolicy"
	"github.com/podpreset/podpreset/presets/policy"
	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/test/cluster"
)

// policyCase is one differential case: presets and a pod.
type policyCase struct {
	name string
	pps  []*v1alpha1.PodPreset
	cpps []*v1alpha1.ClusterPodPreset
	pod  *corev1.Pod
	// nsLabels are the labels of the pod's namespace (both twins get them).
	nsLabels map[string]string
}

// TestAdmissionModeAuto runs the webhook with --admission-mode=auto: the
// leader compiles a namespace's presets into its policy, the webhook
// leaves that namespace's pods to the API server (counted as "policy")
// while they still get their presets, a change to a preset reaches pods
// through the rewritten policy, a deleted preset's policy is retired and
// deleted, a namespace whose preset takes a value from Consul stays
// with the webhook, webhook mode removes the policies, and an uninstall
// (the webhook stopped, its MutatingWebhookConfiguration deleted) leaves
// none: they are owned by that configuration.
func TestAdmissionModeAuto(t *testing.T) {
	ctx := t.Context()
	if err := cp.StopWebhook(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cp.StopWebhook()
		_ = cp.StartWebhook(context.Background(), webhookBin, &webhookLog, webhookArgs...)
	})
	t.Cleanup(func() {
		if t.Failed() {
			for line := range strings.SplitSeq(webhookLog.String(), "\n") {
				if strings.Contains(line, "admission-policies") || strings.Contains(line, "admission polic") {
					t.Log(line)
				}
			}
		}
	})
	// The leader compiles the presets of every namespace, those of earlier
	// tests' namespaces still being deleted too: this test runs before
	// the differential one, which leaves hundreds.
	if err := cp.StartWebhook(ctx, webhookBin, &webhookLog, append(slices.Clone(webhookArgs), "--admission-mode=auto")...); err != nil {
		t.Fatal(err)
	}
	plain, sourced := namespace(t, nil), namespace(t, nil)
	labels := map[string]string{"app": "web"}
	pp := podPreset("settings", plain, labels, env("LEVEL", "1"))
	createPreset(t, pp)
	fromConsul := podPreset("consul", sourced, labels)
	fromConsul.Spec.Env = []v1alpha1.EnvVar{{Name: "DB_HOST", ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: "apps/" + sourced + "/db/host"}}}}
	createPreset(t, fromConsul)

	policyName := admissionpolicy.NamespacePolicyName(plain)
	policyOf := func(name string) (*admissionregistrationv1.MutatingAdmissionPolicy, error) {
		var pol admissionregistrationv1.MutatingAdmissionPolicy
		return &pol, k8s.Get(ctx, client.ObjectKey{Name: name}, &pol)
	}
	levelIn := func(ns string) string {
		pod, err := dryRun(ctx, testPod("probe", ns, labels), ns)
		if err != nil {
			t.Fatal(err)
		}
		return envOf(pod.Spec.Containers[0])["LEVEL"] + "|" + pod.Annotations[presets.AnnotationApplied]
	}
	eventually(t, time.Minute, func() error {
		if _, err := policyOf(policyName); err != nil {
			return err
		}
		before := counters(t)[`podpreset_admission_total{result="policy"}`]
		if got := levelIn(plain); got != "1|PodPreset/settings@1" {
			return fmt.Errorf("a pod in %s got %q", plain, got)
		}
		if after := counters(t)[`podpreset_admission_total{result="policy"}`]; after != before+1 {
			return fmt.Errorf("the webhook counted %v admissions left to the policy, want 1", after-before)
		}
		return nil
	})
	// A pod the webhook would warn about is the webhook's: the policy
	// hands it off, and the warning is the webhook's own.
	own := testPod("own", plain, labels)
	own.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "LEVEL", Value: "own"}}
	before := counters(t)[`podpreset_admission_total{result="injected"}`]
	got, warns, err := dryRunWarnings(ctx, own, plain)
	if err != nil {
		t.Fatal(err)
	}
	if env, applied := envOf(got.Spec.Containers[0])["LEVEL"], got.Annotations[presets.AnnotationApplied]; env != "own" || applied != "PodPreset/settings@1" {
		t.Errorf("a pod with its own LEVEL got LEVEL=%q, applied %q", env, applied)
	}
	want := `podpreset: PodPreset/settings@1: spec.containers[name=app].env[name=LEVEL]: kept {"name":"LEVEL","value":"own"} (the pod's own), dropped {"name":"LEVEL","value":"1"}`
	if diff := cmp.Diff([]string{want}, warns); diff != "" {
		t.Errorf("a conflict in a namespace a policy serves: warnings (-want +got):\n%s", diff)
	}
	if after := counters(t)[`podpreset_admission_total{result="injected"}`]; after != before+1 {
		t.Errorf("the webhook merged %v pods with a conflict, want 1 (the policy hands them off)", after-before)
	}
	if _, warns, err := dryRunWarnings(ctx, testPod("plain", plain, labels), plain); err != nil || len(warns) > 0 {
		t.Errorf("a pod with no conflict: warnings %q, %v", warns, err)
	}

	pol, err := policyOf(policyName)
	if err != nil {
		t.Fatal(err)
	}
	if pol.Labels[admissionpolicy.LabelManagedBy] != admissionpolicy.ManagedBy || pol.Annotations[admissionpolicy.AnnotationInputs] == "" {
		t.Errorf("the policy's labels %v, annotations %v", pol.Labels, pol.Annotations)
	}

	// The namespace whose preset reads Consul stays with the webhook.
	if _, err := policyOf(admissionpolicy.NamespacePolicyName(sourced)); !apierrors.IsNotFound(err) {
		t.Errorf("a policy for the namespace with a Consul preset: %v", err)
	}
	before = counters(t)[`podpreset_admission_total{result="injected"}`]
	pod, err := dryRun(ctx, testPod("probe", sourced, labels), sourced)
	if err != nil {
		t.Fatal(err)
	}
	if got := pod.Annotations[presets.AnnotationApplied]; got != "PodPreset/consul@1" {
		t.Errorf("a pod in the Consul namespace got applied %q", got)
	}
	if after := counters(t)[`podpreset_admission_total{result="injected"}`]; after != before+1 {
		t.Errorf("the webhook injected %v pods in the Consul namespace, want 1", after-before)
	}

	// A change reaches pods through the rewritten policy.
	eventually(t, 10*time.Second, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pp), pp); err != nil {
			return err
		}
		pp.Spec.Env = []v1alpha1.EnvVar{env("LEVEL", "2")}
		return k8s.Update(ctx, pp)
	})
	eventually(t, 30*time.Second, func() error {
		if got := levelIn(plain); got != "2|PodPreset/settings@2" {
			return fmt.Errorf("after the change a pod got %q", got)
		}
		return nil
	})

	// A deleted preset: its policy is retired (every replica serves the
	// namespace again), then deleted; no pod gets the preset meanwhile or
	// after.
	if err := k8s.Delete(ctx, pp); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if got := levelIn(plain); got != "|" {
			return fmt.Errorf("after the preset's deletion a pod got %q", got)
		}
		if _, err := policyOf(policyName); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the policy is still there: %v", err)
		}
		return nil
	})

	// Back in webhook mode, the leader removes every policy auto mode
	// wrote: left in force, one would apply presets as they were.
	again := podPreset("again", plain, labels, env("LEVEL", "3"))
	createPreset(t, again)
	eventually(t, time.Minute, func() error {
		_, err := policyOf(policyName)
		return err
	})
	if err := cp.StopWebhook(); err != nil {
		t.Fatal(err)
	}
	if err := cp.StartWebhook(ctx, webhookBin, &webhookLog, webhookArgs...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		var list admissionregistrationv1.MutatingAdmissionPolicyList
		if err := k8s.List(ctx, &list, client.MatchingLabels{admissionpolicy.LabelManagedBy: admissionpolicy.ManagedBy}); err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d policies left after the switch back to webhook mode", len(list.Items))
		}
		return nil
	})
	if got := levelIn(plain); got != "3|PodPreset/again@1" {
		t.Errorf("in webhook mode again a pod got %q", got)
	}

	// Uninstalling from auto mode: the policies and bindings are owned by
	// the MutatingWebhookConfiguration (--webhook-config-name), which an
	// uninstall deletes with the Deployment; the garbage collector then
	// deletes them, and nothing applies the presets any more.
	if err := cp.StopWebhook(); err != nil {
		t.Fatal(err)
	}
	if err := cp.StartWebhook(ctx, webhookBin, &webhookLog, append(slices.Clone(webhookArgs), "--admission-mode=auto")...); err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := k8s.Get(ctx, client.ObjectKey{Name: cluster.WebhookConfigName}, &mwc); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, func() error {
		pol, err := policyOf(policyName)
		if err != nil {
			return err
		}
		var b admissionregistrationv1.MutatingAdmissionPolicyBinding
		if err := k8s.Get(ctx, client.ObjectKey{Name: policyName}, &b); err != nil {
			return err
		}
		for _, o := range []client.Object{pol, &b} {
			refs := o.GetOwnerReferences()
			if len(refs) != 1 || refs[0].APIVersion != "admissionregistration.k8s.io/v1" || refs[0].Kind != "MutatingWebhookConfiguration" ||
				refs[0].Name != mwc.Name || refs[0].UID != mwc.UID {
				return fmt.Errorf("%T %s is owned by %+v, want MutatingWebhookConfiguration %s (uid %s)", o, o.GetName(), refs, mwc.Name, mwc.UID)
			}
		}
		if got := levelIn(plain); got != "3|PodPreset/again@1" {
			return fmt.Errorf("in auto mode again a pod got %q", got)
		}
		return nil
	})
	if err := cp.StopWebhook(); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, &mwc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // before the webhook restarts (cleanups run last first)
		back := &admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: mwc.Name, Labels: mwc.Labels, Annotations: mwc.Annotations}, Webhooks: mwc.Webhooks}
		if err := k8s.Create(context.Background(), back); err != nil {
			t.Errorf("putting MutatingWebhookConfiguration %s back: %v", mwc.Name, err)
		}
	})
	eventually(t, time.Minute, func() error {
		managed := client.MatchingLabels{admissionpolicy.LabelManagedBy: admissionpolicy.ManagedBy}
		var policies admissionregistrationv1.MutatingAdmissionPolicyList
		var bindings admissionregistrationv1.MutatingAdmissionPolicyBindingList
		if err := k8s.List(ctx, &policies, managed); err != nil {
			return err
		}
		if err := k8s.List(ctx, &bindings, managed); err != nil {
			return err
		}
		if n, m := len(policies.Items), len(bindings.Items); n+m > 0 {
			return fmt.Errorf("%d policies and %d bindings left after the uninstall", n, m)
		}
		return nil
	})
	if got := levelIn(plain); got != "|" {
		t.Errorf("after the uninstall a pod got %q", got)
	}
}

// TestPolicyStoresWhatTheWebhookStores is issue 14's differential proof:
// each generated case's presets are created in a namespace the webhook
// serves, and compiled (admissionpolicy) into a policy bound to a twin
// namespace the webhook has no preset for; the case's pod is created
// (server-side dry run) in both, and the two pods the API server would
// store must be equal in every field but the namespace. The generator
// draws names and values from small alphabets, so that keys collide
// between the pod and the presets and between presets: conflicts, targets,
// opt-outs, a podpreset.dev/applied the pod already has.
func TestPolicyStoresWhatTheWebhookStores(t *testing.T) {
	const generated = 240
	r := rand.New(rand.NewPCG(14, 2026))
	all := fixedPolicyCases(t)
	fixed := len(all)
	for i := range generated {
		all = append(all, genPolicyCase(r, i))
	}
	runDifferential(t, all, fixed)
	t.Logf("%d fixed cases (the examples, the CLI's golden cases and the engine's) and %d generated", fixed, generated)
}

// runDifferential creates every case on both sides, waits until both serve
// them all, and compares the pods.
func runDifferential(t *testing.T, all []policyCase, fixed int) {
	ctx := t.Context()
	start := time.Now()
	phase := func(what string) {
		t.Logf("%s: %.1fs", what, time.Since(start).Seconds())
		start = time.Now()
	}
	// A PodPresetPolicy lets the cases' PodPresets inject init containers
	// (the default policy allows none): the generated cases' images from
	// registry.example/, the engine cases' busybox and other.
	inits := &v1alpha1.PodPresetPolicy{ObjectMeta: metav1.ObjectMeta{Name: "e2e-admission-policy-inits"}, Spec: v1alpha1.PodPresetPolicySpec{
		NamespaceSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "podpreset.dev/case", Operator: metav1.LabelSelectorOpExists}}},
		InitContainers:    v1alpha1.InitContainerPolicy{AllowedImages: []string{"registry.example/", "busybox", "other"}},
	}}
	create(t, inits)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), inits) })
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(inits), inits); err != nil { // as defaulted
		t.Fatal(err)
	}
	checker := &policy.Checker{Policies: must(policy.NewSet(*inits))}
	probeNS := namespace(t, map[string]string{"podpreset.dev/case": "probe"})
	eventually(t, 20*time.Second, func() error {
		pp := podPreset("probe", probeNS, nil, env("A", "1"))
		pp.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "registry.example/init:1"}}
		return k8s.Create(ctx, pp, client.DryRunAll)
	})
	type twin struct {
		c        policyCase
		web, pol string // namespaces
		sentinel string
		handOff  bool // auto mode's policy serves it too
	}
	var twins []*twin
	var policies [][]admissionpolicy.Policy // by case, in creation order
	for i, c := range all {
		tw := &twin{c: c, web: namespace(t, withLabel(c.nsLabels, "podpreset.dev/case", "w"+strconv.Itoa(i))),
			pol: namespace(t, withLabel(c.nsLabels, "podpreset.dev/case", "p"+strconv.Itoa(i)))}
		checker.Namespaces = func(string) map[string]string { return withLabel(c.nsLabels, "podpreset.dev/case", "w") }
		// A sentinel preset that no case pod matches tells when each side
		// serves the case's presets.
		sentinel := podPreset("zz-sentinel", tw.web, map[string]string{"probe": strconv.Itoa(i)}, env("SENTINEL", "1"))
		var loaded []*presets.Preset
		for _, pp := range append(slices.Clone(c.pps), sentinel) {
			pp := pp.DeepCopy()
			pp.Namespace = tw.web
			createFresh(t, pp)
			loaded = append(loaded, load(t, pp, checker))
		}
		for k, cpp := range c.cpps {
			// The webhook's preset selects the webhook's namespace of the
			// case, its twin the policy's, each besides what its own
			// selector asks of the namespace's labels.
			cpp := cpp.DeepCopy()
			cpp.Name = fmt.Sprintf("e2e-policy-%d-%d-%s", i, k, cpp.Name)
			sel := cpp.Spec.NamespaceSelector
			cpp.Spec.NamespaceSelector = *withMatchLabel(sel, "podpreset.dev/case", "w"+strconv.Itoa(i))
			createFresh(t, cpp)
			t.Cleanup(func() { _ = k8s.Delete(context.Background(), cpp) })
			twinCPP := cpp.DeepCopy()
			twinCPP.Spec.NamespaceSelector = *withMatchLabel(sel, "podpreset.dev/case", "p"+strconv.Itoa(i))
			loaded = append(loaded, load(t, twinCPP, checker))
		}
		slices.SortStableFunc(loaded, func(a, b *presets.Preset) int {
			if ka, kb := a.Ref().Kind == v1alpha1.KindClusterPodPreset, b.Ref().Kind == v1alpha1.KindClusterPodPreset; ka != kb {
				if ka {
					return 1
				}
				return -1
			}
			return cmpString(a.Ref().Name, b.Ref().Name)
		})
		// Two policies serve the policy side: the one kubectl podpreset
		// compile writes, and the one auto mode writes (HandOff), for pods
		// labelled labelHandOff. The latter is created first: the API
		// server's policy source sees policies and bindings in the order
		// they are created, so once the former serves (the probes below),
		// so does the latter. (A probe of its own cannot tell: a pod it
		// leaves alone may be one it hands off.) Each policy costs the
		// API server about 0.3 s to store: auto mode's is compiled for the
		// fixed cases and every third generated one
		// (TestHandOffCoversEveryConflict checks the rest of the argument
		// in process).
		name := "podpreset-e2e-" + tw.pol
		policies = append(policies, nil)
		tw.handOff = i < fixed || (i-fixed)%3 == 0
		for _, handOff := range []bool{true, false} {
			if handOff && !tw.handOff {
				continue
			}
			name, op := name, metav1.LabelSelectorOpDoesNotExist
			if handOff {
				name, op = name+"-h", metav1.LabelSelectorOpExists
			}
			pol, err := admissionpolicy.Compile(name, loaded, &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: tw.pol}}, admissionpolicy.Options{HandOff: handOff})
			if err != nil {
				t.Fatalf("case %d (%s): compiling: %v", i, c.name, err)
			}
			pol.Binding.Spec.MatchResources.ObjectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: labelHandOff, Operator: op}}}
			policies[len(policies)-1] = append(policies[len(policies)-1], pol)
			t.Cleanup(func() {
				_ = k8s.Delete(context.Background(), pol.Binding)
				_ = k8s.Delete(context.Background(), pol.Policy)
			})
		}
		tw.sentinel = strconv.Itoa(i)
		twins = append(twins, tw)
	}
	// One at a time: the API server compiles each policy as it stores it
	// (about 0.3 s each here), and a burst at once (hundreds, or even
	// three at a time) left some without effect for over 30 s (the API
	// server's policy source catching up).
	phase("namespaces and presets created, policies compiled")
	n := 0
	for _, pols := range policies {
		for _, pol := range pols {
			create(t, pol.Policy)
			create(t, pol.Binding)
			n++
		}
	}
	phase(strconv.Itoa(n) + " policies created")
	// Both sides serve every case before any is compared.
	for _, tw := range twins {
		// The probe is the case's pod labelled for the sentinel: valid
		// where the case's pod is. A pod the API server refuses on both
		// sides (a CLI case's pod may lack what a real pod needs) cannot
		// tell; it is given a few seconds.
		probe := tw.c.pod.DeepCopy()
		probe.Labels = withLabel(probe.Labels, "probe", tw.sentinel)
		probe.Annotations = nil // no opt-out
		if tw.c.nsLabels[presets.LabelIgnore] == "true" {
			continue // neither side serves the namespace
		}
		for _, ns := range []string{tw.web, tw.pol} {
			invalidSince := time.Time{}
			eventually(t, 30*time.Second, func() error {
				got, err := dryRun(ctx, probe, ns)
				if apierrors.IsInvalid(err) {
					if invalidSince.IsZero() {
						invalidSince = time.Now()
					}
					if time.Since(invalidSince) > 3*time.Second {
						return nil
					}
					return err
				}
				if err != nil {
					return err
				}
				if a := got.Annotations[presets.AnnotationApplied]; !strings.Contains(a, "PodPreset/zz-sentinel@1") {
					side := "webhook"
					if ns == tw.pol {
						side = "policy"
					}
					return fmt.Errorf("%s: a probe in %s (the %s side) got %q, not the sentinel preset", tw.c.name, ns, side, a)
				}
				return nil
			})
		}
	}
	// The pods as stored with no preset at all: what a policy that hands
	// a pod off leaves.
	bareNS := namespace(t, nil)
	phase("both sides serve every case")
	compared, changed, refused, injectedInits := 0, 0, 0, 0
	checked, warned, handedOff, quietHandOffs, autoMerged := 0, 0, 0, 0, 0
	for i, tw := range twins {
		var web, pol *corev1.Pod
		var warns []string
		var werr, perr error
		for attempt := range 2 {
			web, warns, werr = dryRunWarnings(ctx, tw.c.pod, tw.web)
			pol, perr = dryRun(ctx, tw.c.pod, tw.pol)
			if (werr == nil) == (perr == nil) || attempt == 1 {
				break
			}
			time.Sleep(2 * time.Second) // a side that was not serving yet
		}
		switch {
		case werr != nil && perr != nil && apierrors.IsInvalid(werr) && apierrors.IsInvalid(perr):
			refused++ // the API server refuses the pod either way
			compared++
			continue
		case werr != nil:
			t.Errorf("case %d (%s): webhook side: %v (policy side: %v)", i, tw.c.name, werr, perr)
			continue
		case perr != nil:
			t.Errorf("case %d (%s): policy side: %v", i, tw.c.name, perr)
			continue
		}
		normalise(web, pol)
		if diff := cmp.Diff(web, pol); diff != "" {
			t.Errorf("case %d (%s): the pod with the policy differs from the pod with the webhook (-webhook +policy):\n%s\npresets: %s",
				i, tw.c.name, diff, describeCase(tw.c))
		}
		compared++
		if web.Annotations[presets.AnnotationApplied] != tw.c.pod.Annotations[presets.AnnotationApplied] {
			changed++
		}
		if len(web.Spec.InitContainers) > len(tw.c.pod.Spec.InitContainers) {
			injectedInits++
		}
		// Auto mode's policy: a pod the webhook warns about must come out
		// of it untouched (the webhook, next, merges it and warns); any
		// other, untouched or merged as the other policy merges it.
		if !tw.handOff {
			continue
		}
		checked++
		labelled := tw.c.pod.DeepCopy()
		labelled.Labels = withLabel(labelled.Labels, labelHandOff, "true")
		hand, herr := dryRun(ctx, labelled, tw.pol)
		bare, berr := dryRun(ctx, labelled, bareNS)
		if herr != nil || berr != nil {
			t.Errorf("case %d (%s): the hand-off policy's side: %v; with no preset: %v", i, tw.c.name, herr, berr)
			continue
		}
		normalise(hand, bare)
		for _, p := range []*corev1.Pod{hand, bare} {
			if delete(p.Labels, labelHandOff); len(p.Labels) == 0 {
				p.Labels = nil // as the case's pod had them
			}
		}
		untouched := cmp.Equal(hand, bare)
		if len(warns) > 0 {
			warned++
			if !untouched {
				t.Errorf("case %d (%s): the webhook warns %q, and auto mode's policy did not leave the pod to it (-untouched +policy):\n%s\npresets: %s",
					i, tw.c.name, warns, cmp.Diff(bare, hand), describeCase(tw.c))
			}
		} else if diff := cmp.Diff(pol, hand); diff != "" && !untouched {
			t.Errorf("case %d (%s): auto mode's policy merged the pod otherwise (-policy +auto mode's):\n%s\npresets: %s",
				i, tw.c.name, diff, describeCase(tw.c))
		}
		switch {
		case untouched && !cmp.Equal(pol, bare):
			handedOff++
			if len(warns) == 0 {
				quietHandOffs++ // a key collided, with an equal value
			}
		case !untouched:
			autoMerged++
		}
	}
	phase("compared")
	t.Logf("%d cases compared (%d pods the API server refuses on both sides), %d of them with presets applied, %d with injected init containers; "+
		"of the %d also created through auto mode's policy, the webhook warned about %d, and the policy left %d to the webhook (%d with no warning) and merged %d itself",
		compared, refused, changed, injectedInits, checked, warned, handedOff, quietHandOffs, autoMerged)
	if warned < checked/5 || autoMerged < checked/10 {
		t.Errorf("%d cases with warnings, %d merged by auto mode's policy: the cases no longer exercise the hand-off", warned, autoMerged)
	}
	if injectedInits < len(all)/20 {
		t.Errorf("only %d cases had init containers injected: the cases no longer exercise them", injectedInits)
	}
	if changed < len(all)/3 {
		t.Errorf("only %d of %d cases had presets applied: the cases no longer exercise the merge", changed, len(all))
	}
}

// createFresh creates a preset in a namespace created a moment before,
// retrying while the validating webhook's cache has not seen the
// namespace's labels yet (its PodPresetPolicy is selected by them; without
// them the defaults refuse an injected init container).
func createFresh(t *testing.T, obj client.Object) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		// obj takes the stored object (its generation) once created.
		if err := k8s.Create(t.Context(), obj); !apierrors.IsAlreadyExists(err) {
			return err
		}
		return k8s.Get(t.Context(), client.ObjectKeyFromObject(obj), obj)
	})
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// load compiles a preset as the webhook does: generation 1 when unset,
// checked against the default preset policy (a refused preset is loaded,
// refused, and the compiler leaves it out as the webhook does).
func load(t *testing.T, obj v1alpha1.Object, checker *policy.Checker) *presets.Preset {
	t.Helper()
	if obj.GetGeneration() == 0 {
		obj.SetGeneration(1)
	}
	p, errs := presets.Load(obj, checker)
	if p == nil || p.Refused() != nil && p.Refused().Reason == v1alpha1.ReasonInvalid {
		t.Fatalf("loading %s: %v", obj.GetName(), errs.ToAggregate())
	}
	return p
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func withLabel(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range labels {
		out[a] = b
	}
	return out
}

func withMatchLabel(sel metav1.LabelSelector, k, v string) *metav1.LabelSelector {
	out := sel.DeepCopy()
	out.MatchLabels = withLabel(out.MatchLabels, k, v)
	return out
}

// labelHandOff on a pod selects, on the policy side of the differential
// test, the policy compiled for auto mode (Options.HandOff).
const labelHandOff = "podpreset.dev/e2e-handoff"

// normalise clears what differs between two namespaces' pods.
func normalise(pods ...*corev1.Pod) {
	for _, p := range pods {
		p.Namespace, p.UID, p.CreationTimestamp, p.ManagedFields = "", "", metav1.Time{}, nil
	}
}

// dryRunWarnings is dryRun, with the podpreset warnings the API server
// sent back.
func dryRunWarnings(ctx context.Context, pod *corev1.Pod, ns string) (*corev1.Pod, []string, error) {
	c, w, err := warningClient()
	if err != nil {
		return nil, nil, err
	}
	for range 3 {
		w.take()
		p := pod.DeepCopy()
		p.Namespace = ns
		if err = c.Create(ctx, p, client.DryRunAll); err == nil {
			return p, slices.DeleteFunc(w.take(), func(m string) bool { return !strings.HasPrefix(m, "podpreset: ") }), nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, nil, err
}

// dryRun creates the pod in ns with a server-side dry run, retrying a
// moment while the API server is busy, and returns what it would store.
func dryRun(ctx context.Context, pod *corev1.Pod, ns string) (*corev1.Pod, error) {
	var err error
	for range 3 {
		p := pod.DeepCopy()
		p.Namespace = ns
		if err = k8s.Create(ctx, p, client.DryRunAll); err == nil {
			return p, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, err
}

func describeCase(c policyCase) string {
	s := ""
	for _, pp := range c.pps {
		s += fmt.Sprintf("\n  PodPreset %s: %+v", pp.Name, pp.Spec)
	}
	for _, cpp := range c.cpps {
		s += fmt.Sprintf("\n  ClusterPodPreset %s: %+v", cpp.Name, cpp.Spec.PodPresetSpec)
	}
	return s
}

// genPolicyCase draws a case: a pod and one to three presets, with names
// and values from alphabets of two to four so that they collide.
func genPolicyCase(r *rand.Rand, i int) policyCase {
	of := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	genEnv := func() []corev1.EnvVar {
		return draw(r, 4, func(e corev1.EnvVar) string { return e.Name }, func() corev1.EnvVar {
			e := corev1.EnvVar{Name: of("A", "B", "C", "D")}
			if r.IntN(4) == 0 {
				e.ValueFrom = &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: of("x", "y")}, Key: "k"}}
			} else {
				// Values a tenant would write to break out of a CEL
				// string literal are just values.
				e.Value = of("1", "2", "1", "2", hostileCEL, "\\\n\t\u00e9\u2028$(A)")
			}
			return e
		})
	}
	genEnvFrom := func() []corev1.EnvFromSource {
		return draw(r, 3, envFromKeyOf, func() corev1.EnvFromSource {
			e := corev1.EnvFromSource{Prefix: of("", "P_")}
			if r.IntN(3) == 0 {
				e.SecretRef = &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: of("x", "y")}}
			} else {
				e.ConfigMapRef = &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: of("x", "y")}}
				if r.IntN(3) == 0 {
					e.ConfigMapRef.Optional = new(true)
				}
			}
			return e
		})
	}
	genMounts := func() []corev1.VolumeMount {
		return draw(r, 3, func(m corev1.VolumeMount) string { return m.MountPath }, func() corev1.VolumeMount {
			return corev1.VolumeMount{Name: of("v1", "v2"), MountPath: of("/a", "/b", "/c"), ReadOnly: r.IntN(3) == 0}
		})
	}
	genVolumes := func() []corev1.Volume {
		return draw(r, 3, func(v corev1.Volume) string { return v.Name }, func() corev1.Volume {
			v := corev1.Volume{Name: of("v1", "v2", "v3"), VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
			if r.IntN(2) == 0 {
				v.VolumeSource = corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: of("x", "y")}}}
			}
			return v
		})
	}
	container := func(name string) corev1.Container {
		return corev1.Container{Name: name, Image: "registry.example/" + name + ":1", Env: genEnv(), EnvFrom: genEnvFrom(), VolumeMounts: genMounts()}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "generated-" + strconv.Itoa(i), Labels: map[string]string{"app": of("web", "api")}}}
	pod.Spec.Containers = []corev1.Container{container("app")}
	if r.IntN(2) == 0 {
		pod.Spec.Containers = append(pod.Spec.Containers, container("side"))
	}
	if r.IntN(2) == 0 {
		pod.Spec.InitContainers = []corev1.Container{container(of("init", "setup"))}
	}
	// Volumes the pod's own mounts need exist (the API server validates the
	// pod), and the presets' mounts name volumes the presets add.
	pod.Spec.Volumes = genVolumes()
	for _, v := range []string{"v1", "v2"} {
		if !slices.ContainsFunc(pod.Spec.Volumes, func(x corev1.Volume) bool { return x.Name == v }) {
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: v, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		}
	}
	for range r.IntN(3) {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		k := of("k1", "k2", presets.AnnotationApplied)
		v := of("1", "2")
		if k == presets.AnnotationApplied {
			v = of("PodPreset/a@0", "ClusterPodPreset/b@3, PodPreset/x@1", "")
		}
		pod.Annotations[k] = v
	}
	if r.IntN(8) == 0 {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[of(presets.AnnotationExclude, presets.AnnotationExcludeLegacy)] = of("true", "false")
	}
	for range r.IntN(2) {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: of("r1", "r2")})
	}
	spec := func(cluster bool) v1alpha1.PodPresetSpec {
		var s v1alpha1.PodPresetSpec
		switch r.IntN(4) {
		case 1:
			s.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
		case 2:
			s.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}
		case 3:
			s.Selector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"api"}}}}
		}
		if r.IntN(3) == 0 {
			s.Containers = []string{of("app", "side", "setup", "init")}
		}
		for _, e := range genEnv() {
			ve := v1alpha1.EnvVar{Name: e.Name, Value: e.Value}
			if e.ValueFrom != nil {
				ve.ValueFrom = &v1alpha1.EnvVarSource{EnvVarSource: *e.ValueFrom}
			}
			s.Env = append(s.Env, ve)
		}
		for _, e := range genEnvFrom() {
			s.EnvFrom = append(s.EnvFrom, v1alpha1.EnvFromSource{EnvFromSource: e})
		}
		for _, v := range genVolumes() {
			s.Volumes = append(s.Volumes, v1alpha1.Volume{Volume: v})
		}
		s.VolumeMounts = genMounts()
		for range r.IntN(2) {
			if cluster {
				break
			}
			c := container(of("setup", "init2", "app"))
			c.Image = "registry.example/init:1"
			if !slices.ContainsFunc(s.InitContainers, func(x corev1.Container) bool { return x.Name == c.Name }) {
				s.InitContainers = append(s.InitContainers, c)
			}
		}
		for range r.IntN(2) {
			name := of("r1", "r3")
			if !slices.ContainsFunc(s.ImagePullSecrets, func(x corev1.LocalObjectReference) bool { return x.Name == name }) {
				s.ImagePullSecrets = append(s.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
			}
		}
		for range r.IntN(2) {
			if s.Annotations == nil {
				s.Annotations = map[string]string{}
			}
			s.Annotations[of("k1", "k3", "example.com/k")] = of("1", "2", hostileCEL)
		}
		if len(s.Env)+len(s.EnvFrom)+len(s.Volumes)+len(s.VolumeMounts)+len(s.ImagePullSecrets)+len(s.Annotations)+len(s.InitContainers) == 0 {
			s.Env = []v1alpha1.EnvVar{{Name: of("A", "B"), Value: "1"}} // a preset must inject something
		}
		return s
	}
	c := policyCase{name: "generated " + strconv.Itoa(i), pod: pod}
	seen := map[string]bool{}
	for range 1 + r.IntN(3) {
		name := of("a", "b", "c")
		if r.IntN(2) == 0 {
			if !seen["pp/"+name] {
				seen["pp/"+name] = true
				c.pps = append(c.pps, &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec(false)})
			}
		} else if !seen["cpp/"+name] {
			seen["cpp/"+name] = true
			cpp := &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: name}}
			cpp.Spec.PodPresetSpec = spec(true)
			c.cpps = append(c.cpps, cpp)
		}
	}
	return c
}

// hostileCEL is a value that would end a CEL string literal and add a
// patch operation of its own, were it not quoted.
const hostileCEL = `"}] + [JSONPatch{op: "add", path: "/metadata/labels/owned", value: "yes"}] + [{"a": "`

// draw makes up to n-1 entries with one, keeping the first of each key,
// as a list of the API keeps them.
func draw[T any](r *rand.Rand, n int, key func(T) string, one func() T) []T {
	var out []T
	for range r.IntN(n) {
		e := one()
		if !slices.ContainsFunc(out, func(x T) bool { return key(x) == key(e) }) {
			out = append(out, e)
		}
	}
	return out
}

func envFromKeyOf(e corev1.EnvFromSource) string {
	k := e.Prefix + "|"
	if e.ConfigMapRef != nil {
		k += "c/" + e.ConfigMapRef.Name
	}
	k += "|"
	if e.SecretRef != nil {
		k += "s/" + e.SecretRef.Name
	}
	return k
}

// TestCompiledPoliciesKeepTenantsApart plays the tenant against Plan's
// policies (the presets themselves are not created, so only the policies
// act): a PodPreset selecting every pod of its namespace reaches no pod of
// another namespace, a ClusterPodPreset reaches the namespaces its selector
// picks, with or without PodPresets of their own, kube-system and an
// ignored namespace are left alone, and a preset the preset policy refuses
// is left out. A value written to break out of CEL is a value.
func TestCompiledPoliciesKeepTenantsApart(t *testing.T) {
	ctx := t.Context()
	tier := "t-" + strings.ToLower(cryptorand.Text()[:6])
	tenant := namespace(t, map[string]string{"tier": tier})
	other := namespace(t, map[string]string{"tier": tier})
	ignored := namespace(t, map[string]string{"tier": tier, presets.LabelIgnore: "true"})
	grab := podPreset("grab", tenant, nil, env("TENANT", hostileCEL))
	platform := &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: "e2e-platform-" + tier}}
	platform.Spec.NamespaceSelector = metav1.LabelSelector{MatchLabels: map[string]string{"tier": tier}}
	platform.Spec.Env = []v1alpha1.EnvVar{env("PLATFORM", "1")}
	// A preset the default preset policy refuses (the node's root file
	// system): the validating webhook fails open, so it can reach the
	// cluster; compiled, it must be left out as the webhook leaves it out.
	root := podPreset("root", tenant, nil)
	root.Spec.Volumes = []v1alpha1.Volume{{Volume: corev1.Volume{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}}
	checker := &policy.Checker{Policies: must(policy.NewSet())}
	refused := load(t, root, checker)
	if refused.Refused() == nil {
		t.Fatal("the default preset policy accepts a hostPath volume")
	}
	plan, err := admissionpolicy.Plan([]*presets.Preset{load(t, grab, checker), refused, load(t, platform, checker)})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range plan {
		names = append(names, p.Policy.Name)
		create(t, p.Policy)
		create(t, p.Binding)
		t.Cleanup(func() {
			_ = k8s.Delete(context.Background(), p.Binding)
			_ = k8s.Delete(context.Background(), p.Policy)
		})
	}
	if want := []string{admissionpolicy.NamespacePolicyName(tenant), "podpreset-cluster"}; !slices.Equal(names, want) {
		t.Fatalf("policies %v, want %v", names, want)
	}
	envIn := func(ns string) (map[string]string, string) {
		pod, err := dryRun(ctx, testPod("victim", ns, map[string]string{"app": "web"}), ns)
		if err != nil {
			t.Fatalf("creating a pod in %s: %v", ns, err)
		}
		if pod.Labels["owned"] != "" {
			t.Errorf("a value broke out of its CEL string in %s: the pod is labelled owned=%s", ns, pod.Labels["owned"])
		}
		for _, v := range pod.Spec.Volumes {
			if v.HostPath != nil {
				t.Errorf("a pod in %s got the refused preset's hostPath volume %s", ns, v.Name)
			}
		}
		return envOf(pod.Spec.Containers[0]), pod.Annotations[presets.AnnotationApplied]
	}
	eventually(t, 20*time.Second, func() error {
		if got, _ := envIn(tenant); got["TENANT"] != hostileCEL || got["PLATFORM"] != "1" {
			return fmt.Errorf("the tenant's pod got %v", got)
		}
		if got, _ := envIn(other); got["PLATFORM"] != "1" {
			return fmt.Errorf("the other namespace's pod got %v", got)
		}
		return nil
	})
	if got, applied := envIn(tenant); applied != "PodPreset/grab@1,ClusterPodPreset/"+platform.Name+"@1" {
		t.Errorf("the tenant's pod: applied %q, env %v", applied, got)
	}
	for _, ns := range []string{other, ignored, "kube-system"} {
		got, applied := envIn(ns)
		if _, ok := got["TENANT"]; ok {
			t.Errorf("the tenant's preset reached a pod in %s: %v", ns, got)
		}
		want := ""
		if ns == other {
			want = "ClusterPodPreset/" + platform.Name + "@1"
		}
		if applied != want {
			t.Errorf("a pod in %s: applied %q, want %q", ns, applied, want)
		}
	}
}
