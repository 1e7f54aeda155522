package bench

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/admissionpolicy"
	"github.com/podpreset/podpreset/presets/presetstest"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// The sizes of a run; every loop is bounded by them and by loopLimit.
var (
	rounds        = flag.Int("rounds", 5, "interleaved rounds of every case")
	seqPods       = flag.Int("seq-pods", 60, "pods per case per round, created one at a time, one case after another (the CPU seconds)")
	mixedPods     = flag.Int("mixed-pods", 100, "pods per case per round, created one at a time, the cases taking turns pod by pod (the latency percentiles)")
	parPods       = flag.Int("par-pods", 240, "pods per case per round and client count, created by parallel clients")
	scalePods     = flag.Int("scale-pods", 40, "pods per point of the scale curve per round")
	policyPresets = flag.Int("policy-presets", 1000, "presets compiled into the policy of the compiled-policy case (5 match the pod)")
	scale         = flag.Bool("scale", true, "measure the scale curve (1, 5, 10 matching of 10, 1,000, 10,000 presets)")
	policyScale   = flag.Bool("policy-scale", true, "measure the compiled policy's scale curve (1, 5, 10 matching of 10 and 1,000 presets: webhook, policy, auto mode's policy, pre-merged)")
)

// loopLimit bounds any one loop of creations in time.
const loopLimit = 3 * time.Minute

// caseSpec is one way of creating the benchmark's pod.
type caseSpec struct {
	id, name, ns string // id prefixes the case's pod names
	pod          func(name string) *corev1.Pod
	// presets is how many presets each created pod must show as applied:
	// a pod the webhook failed on (failurePolicy Ignore) fails the run
	// rather than count as a fast creation.
	presets int
	// annotated: each created pod must carry the one-annotation webhook's
	// annotation.
	annotated bool
}

// check says whether a created pod shows the presets its case gives it.
func (c caseSpec) check(p *corev1.Pod) error {
	if got := strings.Count(p.Annotations[presets.AnnotationApplied], "PodPreset/"); got != c.presets {
		return fmt.Errorf("%s: pod %s shows %d presets applied, want %d", c.name, p.Name, got, c.presets)
	}
	if _, ok := p.Annotations[annotatedKey]; ok != c.annotated {
		return fmt.Errorf("%s: pod %s has the one-annotation webhook's annotation: %v, want %v", c.name, p.Name, ok, c.annotated)
	}
	return nil
}

// BenchmarkAdmission creates the benchmark's pod (presetstest.BenchPod,
// 5 of 1,000 presets match it) through the API server in seven cases, in
// interleaved rounds, and prints latency percentiles, throughput at 1, 8
// and 32 clients, CPU seconds per 1,000 pods and the ratios the README
// quotes; then the scale curves. Run it with `make bench-e2e`.
//
// The latencies come from pods the cases create in turn, one pod each
// (-mixed-pods per case per round), in an order shuffled every turn: this
// machine's speed drifts by more than the differences measured, within a
// round too, and taking turns pod by pod gives every case the same drift.
// The compiled policy stays out of the turns (its pods load the API server
// enough to slow the next case's); its latencies are from the run below. CPU seconds need a case to run
// alone for a while (/proc counts in 10 ms ticks): they come from a run
// of -seq-pods pods per case, one case after another. Throughput ratios
// are the median of each round's ratio.
func BenchmarkAdmission(b *testing.B) {
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	apiPID, etcdPID, err := cp.ServerPIDs()
	if err != nil {
		b.Fatal(err)
	}
	pids := map[string]int{"kube-apiserver": apiPID, "etcd": etcdPID, "webhook": cp.ReplicaPID(0)}

	noop := startNoopWebhook(b)
	nsNone := makeNamespace(b, cl, "bench-none", map[string]string{"podpreset.dev/ignore": "true"})
	nsNoop := makeNamespace(b, cl, "bench-noop", map[string]string{"podpreset.dev/ignore": "true", noopLabel: "true"})
	nsPP := makeNamespace(b, cl, "bench-podpreset", nil)
	installNoop(b, cl, noop, "noop", "/mutate", noopLabel)
	// The floor of any mutation: the same server, answering with a patch
	// of one annotation.
	nsAnn := makeNamespace(b, cl, "bench-annotate", map[string]string{"podpreset.dev/ignore": "true", annotateLabel: "true"})
	installNoop(b, cl, noop, "annotate", "/annotate", annotateLabel)
	createPresets(b, cl, presetstest.BenchPresets(nsPP, 1000))
	merged := preMerged(b, nsNone)
	// The compiled policy's namespace is one the webhook is never called
	// for (podpreset.dev/ignore=true); its binding selects it by name, the
	// rest of Compile's binding as is.
	nsPol := makeNamespace(b, cl, "bench-policy", map[string]string{"podpreset.dev/ignore": "true"})
	installPolicy(b, cl, nsPol)

	cases := []caseSpec{
		{id: "none", name: "no webhook called", ns: nsNone, pod: benchPod(nsNone)},
		{id: "noop", name: "do-nothing webhook", ns: nsNoop, pod: benchPod(nsNoop)},
		{id: "nothing", name: "podpreset, nothing matches", ns: nsPP, pod: func(name string) *corev1.Pod {
			p := benchPod(nsPP)(name)
			p.Labels["app"] = "matched-by-none"
			return p
		}},
		{id: "injected", name: "podpreset, 5 presets injected", ns: nsPP, pod: benchPod(nsPP), presets: 5},
		{id: "merged", name: "pre-merged pod, no webhook", ns: nsNone, presets: 5, pod: func(name string) *corev1.Pod {
			p := merged.DeepCopy()
			p.Name = name
			return p
		}},
		{id: "annotate", name: "one-annotation webhook", ns: nsAnn, pod: benchPod(nsAnn), annotated: true},
		{id: "policy", name: fmt.Sprintf("compiled policy (%d presets), 5 injected, no webhook", *policyPresets), ns: nsPol, pod: benchPod(nsPol), presets: 5},
	}
	// The podpreset cases must do what they say: check one pod of each.
	checkCases(b, cl, cases)

	for b.Loop() {
		seq, blocked := map[string][]time.Duration{}, map[string][]time.Duration{}
		cpu := map[string]map[string]time.Duration{}
		created := map[string]int{}
		par := map[int]map[string][]float64{}
		// Warm every path up.
		for _, c := range cases {
			createSeq(b, cl, c, "warm", 20)
		}
		clean(b, cl, nsNone, nsNoop, nsPP, nsAnn, nsPol)
		for r := range *rounds {
			for _, c := range rotate(cases, r) {
				before := readCPU(b, pids)
				blocked[c.name] = append(blocked[c.name], createSeq(b, cl, c, fmt.Sprintf("s%d", r), *seqPods)...)
				addCPU(cpu, c.name, before, readCPU(b, pids))
				created[c.name] += *seqPods
			}
			clean(b, cl, nsNone, nsNoop, nsPP, nsAnn, nsPol)
			// The latencies: the webhook's cases and their baselines take
			// turns pod by pod, in an order shuffled every turn (so that
			// no case always follows the same one), so that every case's
			// pods meet the machine in the same states. The compiled
			// policy, whose pods cost the API server three times the
			// others', stays out of the turns: it would slow whichever
			// case came next.
			rng := rand.New(rand.NewPCG(1, uint64(r)))
			turns := cases[:len(cases)-1]
			for i := range *mixedPods {
				for _, k := range rng.Perm(len(turns)) {
					c := turns[k]
					seq[c.name] = append(seq[c.name], createSeq(b, cl, c, fmt.Sprintf("m%d-%d", r, i), 1)...)
				}
			}
			clean(b, cl, nsNone, nsNoop, nsPP, nsAnn, nsPol)
		}
		for _, clients := range []int{1, 8, 32} {
			par[clients] = map[string][]float64{}
			for r := range *rounds {
				for _, c := range rotate(cases, r) {
					par[clients][c.name] = append(par[clients][c.name], createPar(b, cl, c, fmt.Sprintf("p%d-%d", clients, r), *parPods, clients))
				}
				clean(b, cl, nsNone, nsNoop, nsPP, nsAnn, nsPol)
			}
		}
		seq[cases[len(cases)-1].name] = blocked[cases[len(cases)-1].name]
		report(b, cases, seq, blocked, par, cpu, created)
	}
	if *scale {
		scaleCurve(b, cl)
	}
	if *policyScale {
		policyCurve(b, cl, apiPID)
	}
}

// benchPod returns a maker of the benchmark's pod in ns, named.
func benchPod(ns string) func(name string) *corev1.Pod {
	return func(name string) *corev1.Pod {
		p := presetstest.BenchPod(ns)
		p.GenerateName, p.Name = "", name
		return p
	}
}

// noopLabel marks the namespace whose pods the do-nothing webhook is
// called for.
const noopLabel = "bench.podpreset.dev/noop"

// annotateLabel marks the namespace whose pods the one-annotation webhook
// is called for; annotatedKey is the annotation it adds.
const (
	annotateLabel = "bench.podpreset.dev/annotate"
	annotatedKey  = "bench.podpreset.dev/mutated"
)

// annotatePatch is the one-annotation webhook's answer's patch, base64 as
// an AdmissionReview carries it (the benchmark's pod has no annotations).
var annotatePatch = base64.StdEncoding.EncodeToString([]byte(`[{"op":"add","path":"/metadata/annotations","value":{"` + annotatedKey + `":"true"}}]`))

// startNoopWebhook serves the floors: an HTTPS webhook that reads the
// review's UID and allows the pod, on HTTP/1.1 like podpreset's server; on
// /annotate, it also adds one annotation (what any mutating webhook makes
// the API server do: apply a patch, decode the pod again, run the
// mutating admission plugins once more).
func startNoopWebhook(b *testing.B) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rv struct {
			Request struct {
				UID string `json:"uid"`
			} `json:"request"`
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		if err == nil {
			err = json.Unmarshal(body, &rv)
		}
		if err != nil || rv.Request.UID == "" {
			http.Error(w, "no review", http.StatusBadRequest)
			return
		}
		noopCalls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/annotate" {
			fmt.Fprintf(w, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":%q,"allowed":true,"patchType":"JSONPatch","patch":%q}}`, rv.Request.UID, annotatePatch)
			return
		}
		fmt.Fprintf(w, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":%q,"allowed":true}}`, rv.Request.UID)
	}))
	srv.EnableHTTP2 = false
	srv.StartTLS()
	b.Cleanup(srv.Close)
	return srv
}

// installNoop registers the test's webhook at path for the pods of the
// namespaces labelled label, as podpreset's pod webhook is registered, and
// waits until it is called for namespace bench-<name>.
func installNoop(b *testing.B, cl client.Client, srv *httptest.Server, name, path, label string) {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if _, err := x509.ParseCertificate(srv.Certificate().Raw); err != nil {
		b.Fatal(err)
	}
	none := admissionregistrationv1.SideEffectClassNone
	fail := admissionregistrationv1.Fail
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-" + name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    name + ".bench.podpreset.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To(srv.URL + path), CABundle: ca},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{label: "true"}},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](10),
		}},
	}
	if err := cl.Create(b.Context(), mwc); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cl.Delete(context.Background(), mwc) })
	// The API server's webhook informer takes a moment: wait until a
	// dry-run pod reaches the webhook.
	waitFor(b, 20*time.Second, func() error {
		before := noopCalls.Load()
		p := presetstest.BenchPod("bench-" + name)
		p.GenerateName, p.Name = "", "probe"
		if err := cl.Create(b.Context(), p, client.DryRunAll); err != nil {
			return err
		}
		if noopCalls.Load() == before {
			return fmt.Errorf("the %s webhook was not called", name)
		}
		return nil
	})
}

// noopCalls counts the reviews the do-nothing webhook answered.
var noopCalls atomic.Int64

func makeNamespace(b *testing.B, cl client.Client, name string, labels map[string]string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := cl.Create(b.Context(), ns); err != nil {
		b.Fatal(err)
	}
	return name
}

// createPresets creates presets (of one namespace) with 8 clients and waits
// until the webhook's index holds them and their statuses are written.
func createPresets(b *testing.B, cl client.Client, pps []*v1alpha1.PodPreset) {
	work := make(chan *v1alpha1.PodPreset)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pp := range work {
				if err := cl.Create(context.Background(), pp); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for _, pp := range pps {
		work <- pp
	}
	close(work)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("creating presets: %v", err)
	}
	if err := cp.WaitForPresets(b.Context()); err != nil {
		b.Fatal(err)
	}
	// The webhook's leader then writes each preset's Accepted condition:
	// measure nothing until it is done, or its writes are in the figures.
	ns := pps[0].Namespace
	waitFor(b, 5*time.Minute, func() error {
		var list v1alpha1.PodPresetList
		if err := cl.List(b.Context(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		pending := 0
		for _, pp := range list.Items {
			if !slices.ContainsFunc(pp.Status.Conditions, func(c metav1.Condition) bool { return c.Type == v1alpha1.ConditionAccepted }) {
				pending++
			}
		}
		if pending > 0 {
			return fmt.Errorf("%d of %d presets in %s have no Accepted condition yet", pending, len(list.Items), ns)
		}
		return nil
	})
}

// preMerged is the benchmark pod with the 5 presets merged in by the
// engine, as the webhook would: the "same content, no webhook" baseline.
func preMerged(b *testing.B, ns string) *corev1.Pod {
	ps := loadPresets(b, presetstest.BenchPresets(ns, *policyPresets))
	res := presets.Apply(presetstest.BenchPod(ns), presets.Namespace{Name: ns}, presets.NewSet(ps...))
	if len(res.Applied) != 5 {
		b.Fatalf("the pre-merged pod got %d presets, want 5", len(res.Applied))
	}
	p := res.Pod.DeepCopy()
	p.GenerateName = ""
	return p
}

// installPolicy compiles the benchmark's presets (-policy-presets), as if
// in ns, into a MutatingAdmissionPolicy bound to ns, and waits until it
// applies.
func installPolicy(b *testing.B, cl client.Client, ns string) {
	ps := loadPresets(b, presetstest.BenchPresets(ns, *policyPresets))
	installCompiled(b, cl, "podpreset-bench", ns, ps, benchPod(ns)("policy-probe"), 5, admissionpolicy.Options{})
}

// checkCases creates one pod of each case and checks what it got: the
// podpreset cases their presets (or none), the others none but their own.
func checkCases(b *testing.B, cl client.Client, cases []caseSpec) {
	for i, c := range cases {
		p := c.pod("check-" + strconv.Itoa(i))
		if err := cl.Create(b.Context(), p); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
		if err := c.check(p); err != nil {
			b.Fatal(err)
		}
		if got, want := len(p.Spec.Containers[0].Env), 5+4*c.presets; got != want {
			b.Fatalf("%s: the pod has %d env vars, want %d", c.name, got, want)
		}
	}
}

// createSeq creates n pods of a case one at a time and returns each
// creation's latency.
func createSeq(b *testing.B, cl client.Client, c caseSpec, tag string, n int) []time.Duration {
	out := make([]time.Duration, 0, n)
	deadline := time.Now().Add(loopLimit)
	for i := range n {
		p := c.pod(fmt.Sprintf("%s-%s-%d", c.id, tag, i))
		t0 := time.Now()
		if err := cl.Create(b.Context(), p); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
		out = append(out, time.Since(t0))
		if err := c.check(p); err != nil {
			b.Fatal(err)
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d pods took over %s", c.name, i+1, loopLimit)
		}
	}
	return out
}

// createPar creates n pods of a case from clients goroutines and returns
// pods per second.
func createPar(b *testing.B, cl client.Client, c caseSpec, tag string, n, clients int) float64 {
	var next atomic.Int64
	var failed atomic.Value
	deadline := time.Now().Add(loopLimit)
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || time.Now().After(deadline) {
					return
				}
				p := c.pod(fmt.Sprintf("%s-%s-%d", c.id, tag, i))
				err := cl.Create(context.Background(), p)
				if err == nil {
					err = c.check(p)
				}
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("%s: %v", c.name, err)
	}
	if time.Now().After(deadline) {
		b.Fatalf("%s: %d pods from %d clients took over %s", c.name, n, clients, loopLimit)
	}
	return float64(n) / elapsed.Seconds()
}

// clean deletes the pods of the namespaces (not timed).
func clean(b *testing.B, cl client.Client, namespaces ...string) {
	for _, ns := range namespaces {
		if err := cl.DeleteAllOf(b.Context(), &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0)); err != nil {
			b.Fatal(err)
		}
	}
}

// rotate starts round r at case r, so that no case always runs first.
func rotate(cases []caseSpec, r int) []caseSpec {
	r %= len(cases)
	return append(slices.Clone(cases[r:]), cases[:r]...)
}

// readCPU reads each process's user and system CPU time from /proc.
func readCPU(b *testing.B, pids map[string]int) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		// Fields after the command name, which is in parentheses:
		// utime and stime are the 12th and 13th.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[name] = time.Duration(ut+st) * time.Second / clockTicks
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on Linux.
const clockTicks = 100

func addCPU(acc map[string]map[string]time.Duration, name string, before, after map[string]time.Duration) {
	if acc[name] == nil {
		acc[name] = map[string]time.Duration{}
	}
	for k := range after {
		acc[name][k] += after[k] - before[k]
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// report prints the tables and the ratios, and reports the ratios as
// benchmark metrics.
func report(b *testing.B, cases []caseSpec, seq, blocked map[string][]time.Duration, par map[int]map[string][]float64,
	cpu map[string]map[string]time.Duration, created map[string]int) {
	none, noop, nothing, injected, merged, annotate, pol := cases[0].name, cases[1].name, cases[2].name, cases[3].name, cases[4].name, cases[5].name, cases[6].name
	p50 := func(c string) float64 { return ms(percentile(seq[c], 0.5)) }
	blockedP50 := func(c string) float64 { return ms(percentile(blocked[c], 0.5)) }
	fmt.Printf("\nAdmission, %d rounds, interleaved; latencies of %d sequential pods per case per round, the cases but the compiled policy taking turns pod by pod "+
		"(the compiled policy's: of the %d below, one case after another); CPU of %d per case per round, one case after another; %d per case per round and client count in parallel\n\n",
		*rounds, *mixedPods, *seqPods, *seqPods, *parPods)
	fmt.Println("| case | p50 ms | p90 ms | p99 ms | p50 vs none | pods/s, 1 client | 8 clients | 32 clients | CPU s per 1,000 pods: API server | etcd | webhook |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, c := range cases {
		per := func(proc string) string {
			return fmt.Sprintf("%.2f", cpu[c.name][proc].Seconds()*1000/float64(created[c.name]))
		}
		wh := per("webhook")
		if !strings.HasPrefix(c.name, "podpreset") {
			wh = "–"
		}
		vsNone := p50(c.name) / p50(none)
		if c.name == pol {
			vsNone = blockedP50(pol) / blockedP50(none)
		}
		fmt.Printf("| %s | %.1f | %.1f | %.1f | %.2f | %.0f | %.0f | %.0f | %s | %s | %s |\n", c.name,
			p50(c.name), ms(percentile(seq[c.name], 0.9)), ms(percentile(seq[c.name], 0.99)), vsNone,
			median(par[1][c.name]), median(par[8][c.name]), median(par[32][c.name]), per("kube-apiserver"), per("etcd"), wh)
	}
	expected := p50(merged) * p50(noop) / p50(none)
	// Throughput ratios pair the two cases' runs of the same round (the
	// machine's speed drifts between rounds, less within one): the median
	// of the rounds' ratios.
	paired := func(clients int, a, b string) float64 {
		rs := make([]float64, len(par[clients][a]))
		for r := range rs {
			rs[r] = par[clients][a][r] / par[clients][b][r]
		}
		return median(rs)
	}
	ratios := []struct {
		name, unit string
		v          float64
	}{
		{"nothing matches / do-nothing webhook, p50", "nothing/noop-p50", p50(nothing) / p50(noop)},
		{"nothing matches / do-nothing webhook, throughput at 8 clients", "nothing/noop-8c", paired(8, nothing, noop)},
		{"nothing matches / do-nothing webhook, throughput at 32 clients", "nothing/noop-32c", paired(32, nothing, noop)},
		{"5 injected / (pre-merged × do-nothing ÷ none), p50", "injected/expected-p50", p50(injected) / expected},
		{"5 injected / pre-merged, throughput at 8 clients", "injected/merged-8c", paired(8, injected, merged)},
		{"one-annotation webhook / do-nothing webhook, p50 (the floor of any mutation)", "annotate/noop-p50", p50(annotate) / p50(noop)},
		{"5 injected / (pre-merged × one-annotation ÷ none), p50", "injected/expected-mutating-p50", p50(injected) / (p50(merged) * p50(annotate) / p50(none))},
		{"compiled policy / pre-merged, p50 (one case after another)", "policy/merged-p50", blockedP50(pol) / blockedP50(merged)},
		{"compiled policy / pre-merged, throughput at 8 clients", "policy/merged-8c", paired(8, pol, merged)},
		{"compiled policy / 5 injected by the webhook, p50 (one case after another)", "policy/injected-p50", blockedP50(pol) / blockedP50(injected)},
	}
	fmt.Println()
	for _, r := range ratios {
		fmt.Printf("%-70s %.3f\n", r.name, r.v)
		b.ReportMetric(r.v, r.unit)
	}
}

// scaleCurve measures the sequential p50 of a pod that 1, 5 or 10 presets
// match, and of one that none matches, in namespaces of 10, 1,000 and
// 10,000 presets, in interleaved rounds.
func scaleCurve(b *testing.B, cl client.Client) {
	sizes := []int{10, 1000, 10000}
	matching := []string{"0", "1", "5", "10"}
	lat := map[string][]time.Duration{}
	var namespaces []string
	for _, n := range sizes {
		ns := makeNamespace(b, cl, fmt.Sprintf("bench-scale-%d", n), nil)
		namespaces = append(namespaces, ns)
		createPresets(b, cl, presetstest.BenchPresetsMatching(ns, n))
	}
	for r := range *rounds {
		for i, n := range sizes {
			for j := range matching {
				k := matching[(j+r)%len(matching)]
				presets, _ := strconv.Atoi(k)
				c := caseSpec{id: "m" + k, name: fmt.Sprintf("%d/%s", n, k), ns: namespaces[i], presets: presets, pod: func(name string) *corev1.Pod {
					p := presetstest.BenchPod(namespaces[i])
					p.GenerateName, p.Name = "", name
					p.Labels[presetstest.LabelMatching] = k
					return p
				}}
				lat[c.name] = append(lat[c.name], createSeq(b, cl, c, fmt.Sprintf("r%d-%s", r, k), *scalePods)...)
			}
		}
		clean(b, cl, namespaces...)
	}
	fmt.Printf("\nScale curve: sequential p50 ms, %d rounds of %d pods per point\n\n", *rounds, *scalePods)
	fmt.Println("| presets in the namespace | none match | 1 matches | 5 match | 10 match |")
	fmt.Println("|---|---|---|---|---|")
	for _, n := range sizes {
		row := fmt.Sprintf("| %d |", n)
		for _, k := range matching {
			row += fmt.Sprintf(" %.1f |", ms(percentile(lat[fmt.Sprintf("%d/%s", n, k)], 0.5)))
		}
		fmt.Println(row)
	}
}

// waitFor retries f until it returns nil or the time is up.
func waitFor(b *testing.B, timeout time.Duration, f func() error) {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
