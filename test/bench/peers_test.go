package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/podpreset/podpreset/presets/presetstest"
	"github.com/podpreset/podpreset/test/cluster"
)

// kyvernoLabel marks the namespace whose pods Kyverno's webhooks are
// called for (the kyverno ConfigMap's webhooks namespaceSelector).
const kyvernoLabel = "bench.podpreset.dev/kyverno"

// BenchmarkPeers sets Kyverno (bin/kyverno, built by
// hack/peers/build-kyverno.sh; `make bench-peers`) beside podpreset on the
// same control plane: its admission controller runs out of cluster, and a
// ClusterPolicy of 5 mutate rules injects what the 5 matching presets
// inject (every rule's env, mount and volume; envFrom, which a strategic
// merge patch replaces rather than merges, as each rule's cumulative list),
// so the pods end up with the same content. It prints sequential latency
// and throughput at 8 clients, interleaved with podpreset and with no
// webhook.
func BenchmarkPeers(b *testing.B) {
	root, err := filepath.Abs("../..")
	if err != nil {
		b.Fatal(err)
	}
	kyverno := filepath.Join(root, "bin", "kyverno")
	if _, err := os.Stat(kyverno); err != nil {
		b.Fatalf("bin/kyverno is missing: run hack/peers/build-kyverno.sh (make bench-peers does): %v", err)
	}
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = -1, 0
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	startKyverno(b, root, kyverno)

	nsNone := makeNamespace(b, cl, "peers-none", map[string]string{"podpreset.dev/ignore": "true"})
	nsPP := makeNamespace(b, cl, "peers-podpreset", nil)
	nsKyv := makeNamespace(b, cl, "peers-kyverno", map[string]string{"podpreset.dev/ignore": "true", kyvernoLabel: "true"})
	createPresets(b, cl, presetstest.BenchPresets(nsPP, 1000))
	createKyvernoPolicy(b, cl, nsKyv)

	cases := []caseSpec{
		{id: "none", name: "no webhook called", ns: nsNone, pod: benchPod(nsNone)},
		{id: "podpreset", name: "podpreset, 5 presets injected", ns: nsPP, pod: benchPod(nsPP), presets: 5},
		{id: "kyverno", name: "Kyverno 1.19.1, 5 mutate rules", ns: nsKyv, pod: benchPod(nsKyv)},
	}
	// Kyverno's pods must get what podpreset's get.
	waitFor(b, 60*time.Second, func() error {
		p := benchPod(nsKyv)("probe")
		if err := cl.Create(b.Context(), p, client.DryRunAll); err != nil {
			return err
		}
		return sameContent(p, cases, cl, nsPP)
	})

	for b.Loop() {
		seq := map[string][]time.Duration{}
		par := map[string][]float64{}
		for _, c := range cases {
			createSeq(b, cl, c, "warm", 10)
		}
		clean(b, cl, nsNone, nsPP, nsKyv)
		for r := range *rounds {
			for _, c := range rotate(cases, r) {
				seq[c.name] = append(seq[c.name], createSeq(b, cl, c, fmt.Sprintf("s%d", r), *seqPods)...)
			}
			for _, c := range rotate(cases, r) {
				par[c.name] = append(par[c.name], createPar(b, cl, c, fmt.Sprintf("p%d", r), *parPods, 8))
			}
			clean(b, cl, nsNone, nsPP, nsKyv)
		}
		fmt.Printf("\nPeers, %d rounds, interleaved; %d sequential pods and %d pods from 8 clients per case per round\n\n", *rounds, *seqPods, *parPods)
		fmt.Println("| case | p50 ms | p90 ms | p99 ms | pods/s, 8 clients |")
		fmt.Println("|---|---|---|---|---|")
		for _, c := range cases {
			fmt.Printf("| %s | %.1f | %.1f | %.1f | %.0f |\n", c.name, ms(percentile(seq[c.name], 0.5)), ms(percentile(seq[c.name], 0.9)),
				ms(percentile(seq[c.name], 0.99)), median(par[c.name]))
		}
		p50 := func(c string) float64 { return ms(percentile(seq[c], 0.5)) }
		pp, kyv := cases[1].name, cases[2].name
		fmt.Printf("\nKyverno / podpreset, p50 %.2f; podpreset / Kyverno, throughput at 8 clients %.2f\n", p50(kyv)/p50(pp), median(par[pp])/median(par[kyv]))
		b.ReportMetric(p50(kyv)/p50(pp), "kyverno/podpreset-p50")
		b.ReportMetric(median(par[pp])/median(par[kyv]), "podpreset/kyverno-8c")
	}
}

// sameContent checks that a pod Kyverno mutated holds what podpreset gives
// the same pod: as many env vars, envFrom entries and mounts in every
// container, and as many volumes.
func sameContent(kyv *corev1.Pod, cases []caseSpec, cl client.Client, nsPP string) error {
	want := cases[1].pod("probe")
	want.Namespace = nsPP
	if err := cl.Create(context.Background(), want, client.DryRunAll); err != nil {
		return err
	}
	count := func(p *corev1.Pod) string {
		var parts []string
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			parts = append(parts, fmt.Sprintf("%s: env %d, envFrom %d, mounts %d", c.Name, len(c.Env), len(c.EnvFrom), len(c.VolumeMounts)))
		}
		return strings.Join(parts, "; ") + fmt.Sprintf("; volumes %d", len(p.Spec.Volumes))
	}
	if got, w := count(kyv), count(want); got != w {
		return fmt.Errorf("Kyverno's pod has %s; podpreset's %s", got, w)
	}
	return nil
}

// startKyverno installs Kyverno's CRDs and its configuration, and runs its
// admission controller out of cluster on a loopback port, its webhooks
// limited to the namespaces labelled kyvernoLabel.
func startKyverno(b *testing.B, root, binary string) {
	crds := filepath.Join(root, "_output", "peers", "kyverno-src", "config", "crds")
	if _, _, err := cp.Kubectl(b.Context(), nil, "apply", "--server-side", "-R", "-f", crds); err != nil {
		b.Fatalf("installing Kyverno's CRDs: %v", err)
	}
	ns := `apiVersion: v1
kind: Namespace
metadata:
  name: kyverno
  labels: {podpreset.dev/ignore: "true"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kyverno, namespace: kyverno}
data:
  webhooks: '[{"namespaceSelector":{"matchLabels":{"` + kyvernoLabel + `":"true"}}}]'
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kyverno-metrics, namespace: kyverno}
`
	if _, _, err := cp.Kubectl(b.Context(), strings.NewReader(ns), "apply", "-f", "-"); err != nil {
		b.Fatalf("Kyverno's namespace and configuration: %v", err)
	}
	port, metrics := freePort(b), freePort(b)
	var logs cluster.Buffer
	// What its Deployment would set.
	env := []string{"KYVERNO_NAMESPACE=kyverno", "KYVERNO_SERVICEACCOUNT_NAME=kyverno", "KYVERNO_DEPLOYMENT=kyverno",
		"KYVERNO_POD_NAME=kyverno-bench", "INIT_CONFIG=kyverno", "METRICS_CONFIG=kyverno-metrics"}
	proc, err := cp.StartBinary(b.Context(), "kyverno", binary, &logs, env,
		"--kubeconfig="+cp.Kubeconfig,
		"--serverIP=127.0.0.1:"+strconv.Itoa(port), "--webhookServerHost=127.0.0.1", "--webhookServerPort="+strconv.Itoa(port),
		"--caSecretName=kyverno-svc.kyverno.svc.kyverno-tls-ca", "--tlsSecretName=kyverno-svc.kyverno.svc.kyverno-tls-pair",
		"--metricsHost=127.0.0.1", "--metricsPort="+strconv.Itoa(metrics), "--controllerRuntimeMetricsAddress=0",
		"--admissionReports=false", "--autoMemLimitEnabled=false", "--clientRateLimitQPS=300", "--clientRateLimitBurst=300",
		"--omitEvents=PolicyApplied,PolicyViolation,PolicySkipped,PolicyError", "--disableLogColor")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = proc.Stop()
		if b.Failed() {
			b.Logf("Kyverno's log:\n%s", tail(logs.String(), 4000))
		}
	})
}

// createKyvernoPolicy creates the ClusterPolicy with a rule for each of
// the 5 presets that match the benchmark pod, selecting it the same way.
func createKyvernoPolicy(b *testing.B, cl client.Client, ns string) {
	var rules []any
	var envFrom []any
	for _, pp := range presetstest.BenchPresets(ns, 1000) {
		if pp.Spec.Selector.MatchLabels["app"] != "web" {
			continue
		}
		var env, mounts []any
		for _, e := range pp.Spec.Env {
			env = append(env, map[string]any{"name": e.Name, "value": e.Value})
		}
		for _, m := range pp.Spec.VolumeMounts {
			mounts = append(mounts, map[string]any{"name": m.Name, "mountPath": m.MountPath})
		}
		cm := pp.Spec.Volumes[0].ConfigMap.Name
		envFrom = append(envFrom, map[string]any{"configMapRef": map[string]any{"name": pp.Spec.EnvFrom[0].ConfigMapRef.Name}})
		ctr := map[string]any{"(name)": "*", "env": env, "envFrom": append([]any{}, envFrom...), "volumeMounts": mounts}
		rules = append(rules, map[string]any{
			"name": pp.Name,
			"match": map[string]any{"any": []any{map[string]any{"resources": map[string]any{
				"kinds": []any{"Pod"}, "operations": []any{"CREATE"}, "namespaces": []any{ns},
				"selector": map[string]any{"matchLabels": map[string]any{"app": "web", "tier": "frontend"}},
			}}}},
			"mutate": map[string]any{"patchStrategicMerge": map[string]any{"spec": map[string]any{
				"volumes":        []any{map[string]any{"name": cm, "configMap": map[string]any{"name": cm}}},
				"initContainers": []any{ctr},
				"containers":     []any{ctr},
			}}},
		})
	}
	policy := map[string]any{
		"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
		"metadata": map[string]any{"name": "bench-presets"},
		"spec":     map[string]any{"admission": true, "background": false, "rules": rules},
	}
	raw, err := yaml.Marshal(policy)
	if err != nil {
		b.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &u.Object); err != nil {
		b.Fatal(err)
	}
	// Kyverno validates its policies with its own webhook: retry while it
	// starts.
	waitFor(b, 90*time.Second, func() error { return cl.Create(b.Context(), u.DeepCopy()) })
}

func freePort(b *testing.B) int {
	p, err := cluster.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
