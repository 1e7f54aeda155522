package bench

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/admissionpolicy"
	"github.com/podpreset/podpreset/presets/presetstest"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// policyCurve is the compiled-policy mode's scale curve (issue 14): the
// same pod, labelled so that 1, 5 or 10 presets match, and the same
// presets (presetstest.BenchPresetsMatching, 10 or 1,000 in the
// namespace), created three ways in interleaved rounds: through the
// webhook (the presets as PodPresets in a namespace it serves), through
// the presets compiled into a MutatingAdmissionPolicy (a namespace the
// webhook is never called for) as kubectl podpreset compile writes it and
// as auto mode writes it (Options.HandOff: it first checks that nothing in
// the pod conflicts; these pods have no conflict), and already merged by
// the engine, with no webhook and no policy (the baseline a policy is
// measured against). It
// prints sequential p50s, the ratios, and the API server's CPU seconds per
// 1,000 pods in each mode.
func policyCurve(b *testing.B, cl client.Client, apiPID int) {
	sizes := []int{10, 1000}
	matching := []int{1, 5, 10}
	modes := []string{"webhook", "policy", "auto", "pre-merged"}
	nsNone := makeNamespace(b, cl, "bench-pcurve-none", map[string]string{"podpreset.dev/ignore": "true"})
	type point struct {
		n, k int
		mode string
	}
	cases := map[point]caseSpec{}
	var namespaces []string
	for _, n := range sizes {
		nsW := makeNamespace(b, cl, fmt.Sprintf("bench-pcurve-webhook-%d", n), nil)
		nsP := makeNamespace(b, cl, fmt.Sprintf("bench-pcurve-policy-%d", n), map[string]string{"podpreset.dev/ignore": "true"})
		nsA := makeNamespace(b, cl, fmt.Sprintf("bench-pcurve-auto-%d", n), map[string]string{"podpreset.dev/ignore": "true"})
		namespaces = append(namespaces, nsW, nsP, nsA)
		createPresets(b, cl, presetstest.BenchPresetsMatching(nsW, n))
		ps := loadPresets(b, presetstest.BenchPresetsMatching(nsP, n))
		probe := benchPod(nsP)("policy-probe")
		probe.Labels[presetstest.LabelMatching] = "1"
		installCompiled(b, cl, fmt.Sprintf("podpreset-bench-curve-%d", n), nsP, ps, probe, 1, admissionpolicy.Options{})
		probe = benchPod(nsA)("auto-probe")
		probe.Labels[presetstest.LabelMatching] = "1"
		installCompiled(b, cl, fmt.Sprintf("podpreset-bench-curve-auto-%d", n), nsA, loadPresets(b, presetstest.BenchPresetsMatching(nsA, n)), probe, 1, admissionpolicy.Options{HandOff: true})
		for _, k := range matching {
			label := strconv.Itoa(k)
			pod := func(ns string) func(string) *corev1.Pod {
				return func(name string) *corev1.Pod {
					p := presetstest.BenchPod(ns)
					p.GenerateName, p.Name = "", name
					p.Labels[presetstest.LabelMatching] = label
					return p
				}
			}
			res := presets.Apply(pod(nsNone)(""), presets.Namespace{Name: nsNone}, presets.NewSet(loadPresets(b, presetstest.BenchPresetsMatching(nsNone, n))...))
			if len(res.Applied) != k {
				b.Fatalf("the pre-merged pod of %d/%d got %d presets", n, k, len(res.Applied))
			}
			merged := res.Pod.DeepCopy()
			id := fmt.Sprintf("c%d-%d", n, k)
			cases[point{n, k, "webhook"}] = caseSpec{id: id + "w", name: id + "w", ns: nsW, presets: k, pod: pod(nsW)}
			cases[point{n, k, "policy"}] = caseSpec{id: id + "p", name: id + "p", ns: nsP, presets: k, pod: pod(nsP)}
			cases[point{n, k, "auto"}] = caseSpec{id: id + "a", name: id + "a", ns: nsA, presets: k, pod: pod(nsA)}
			cases[point{n, k, "pre-merged"}] = caseSpec{id: id + "m", name: id + "m", ns: nsNone, presets: k, pod: func(name string) *corev1.Pod {
				p := merged.DeepCopy()
				p.GenerateName, p.Name = "", name
				return p
			}}
		}
	}
	namespaces = append(namespaces, nsNone)
	lat := map[point][]time.Duration{}
	apiCPU := map[point]time.Duration{}
	for _, c := range cases { // warm every path up, and check each
		createSeq(b, cl, c, "warm", 3)
	}
	clean(b, cl, namespaces...)
	pids := map[string]int{"kube-apiserver": apiPID}
	for r := range *rounds {
		for _, n := range sizes {
			for j := range matching {
				k := matching[(j+r)%len(matching)]
				for m := range modes {
					pt := point{n, k, modes[(m+r)%len(modes)]}
					before := readCPU(b, pids)
					lat[pt] = append(lat[pt], createSeq(b, cl, cases[pt], fmt.Sprintf("r%d", r), *scalePods)...)
					apiCPU[pt] += readCPU(b, pids)["kube-apiserver"] - before["kube-apiserver"]
				}
			}
		}
		clean(b, cl, namespaces...)
	}
	fmt.Printf("\nCompiled policy, scale curve: sequential p50 ms, %d rounds of %d pods per point, interleaved\n\n", *rounds, *scalePods)
	fmt.Println("| presets in the namespace | matching | webhook | policy | auto mode's policy | pre-merged | policy ÷ pre-merged | auto ÷ pre-merged | policy ÷ webhook | API server CPU s per 1,000 pods: webhook / policy / auto / pre-merged |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, n := range sizes {
		for _, k := range matching {
			p50 := func(mode string) float64 { return ms(percentile(lat[point{n, k, mode}], 0.5)) }
			cpu := func(mode string) string {
				pt := point{n, k, mode}
				return fmt.Sprintf("%.1f", apiCPU[pt].Seconds()*1000/float64(len(lat[pt])))
			}
			fmt.Printf("| %d | %d | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f | %s |\n", n, k, p50("webhook"), p50("policy"), p50("auto"), p50("pre-merged"),
				p50("policy")/p50("pre-merged"), p50("auto")/p50("pre-merged"), p50("policy")/p50("webhook"),
				strings.Join([]string{cpu("webhook"), cpu("policy"), cpu("auto"), cpu("pre-merged")}, " / "))
			b.ReportMetric(p50("policy")/p50("pre-merged"), fmt.Sprintf("policy/merged-p50-%d-%d", n, k))
		}
	}
}

// loadPresets compiles PodPresets as the webhook would.
func loadPresets(b *testing.B, pps []*v1alpha1.PodPreset) []*presets.Preset {
	var ps []*presets.Preset
	for _, pp := range pps {
		p, errs := presets.Load(pp)
		if len(errs) > 0 {
			b.Fatal(errs.ToAggregate())
		}
		ps = append(ps, p)
	}
	return ps
}

// installCompiled compiles ps into a MutatingAdmissionPolicy named name,
// bound to namespace ns by name, and waits until probe, created there by
// dry run, shows want presets applied.
func installCompiled(b *testing.B, cl client.Client, name, ns string, ps []*presets.Preset, probe *corev1.Pod, want int, opts admissionpolicy.Options) {
	byName := &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
	pol, err := admissionpolicy.Compile(name, ps, byName, opts)
	if err != nil {
		b.Fatal(err)
	}
	pol.Binding.Spec.MatchResources.NamespaceSelector = byName
	for _, obj := range []client.Object{pol.Policy, pol.Binding} {
		_ = cl.Delete(b.Context(), obj)
		if err := cl.Create(b.Context(), obj); err != nil {
			b.Fatalf("creating the compiled policy %s: %v", name, err)
		}
	}
	waitFor(b, time.Minute, func() error {
		p := probe.DeepCopy()
		if err := cl.Create(b.Context(), p, client.DryRunAll); err != nil {
			return err
		}
		if got := strings.Count(p.Annotations[presets.AnnotationApplied], "PodPreset/"); got != want {
			return fmt.Errorf("the compiled policy %s applied %d presets, want %d", name, got, want)
		}
		return nil
	})
}
