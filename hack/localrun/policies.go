package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/admissionpolicy"
	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/test/cluster"
)

// make run installs podpreset with --admission-mode=auto: the leader
// compiles the presets of every namespace it can into a
// MutatingAdmissionPolicy that the API server runs itself, and the webhook
// serves the rest (the orders example, whose preset reads Consul and
// Vault). Before an example's workloads are applied, make run waits until
// the policy that will serve its namespace is written from the presets it
// has just applied, so that the pods go through the policy; the summary
// says which namespaces a policy serves and what the webhook counted.

// policyClient is a client that knows presets and admission policies.
func policyClient(cfg *rest.Config) (client.Client, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: s})
}

// serving says which policy serves each namespace given the presets in
// the cluster now, as the webhook's leader arranges them (Layout, leaving
// out podpreset's own namespace as the webhook does), and with what
// inputs; empty when the webhook serves it: no preset reaches it, or one
// that does cannot be compiled (admissionpolicy.Check: its values come
// from Consul or Vault), which leaves the namespace to the webhook.
func serving(ctx context.Context, cl client.Client) (func(ns string) (name, in string), error) {
	var pps v1alpha1.PodPresetList
	var cpps v1alpha1.ClusterPodPresetList
	if err := cl.List(ctx, &pps); err != nil {
		return nil, err
	}
	if err := cl.List(ctx, &cpps); err != nil {
		return nil, err
	}
	var all []*presets.Preset
	load := func(obj v1alpha1.Object) {
		if p, errs := presets.Load(obj); len(errs) == 0 {
			all = append(all, p)
		}
	}
	for i := range pps.Items {
		load(&pps.Items[i])
	}
	for i := range cpps.Items {
		load(&cpps.Items[i])
	}
	l := admissionpolicy.NewLayout(all, cluster.InstallNamespace)
	return func(ns string) (string, string) {
		for _, p := range all {
			if r := p.Ref(); (r.Namespace == ns || r.Kind == v1alpha1.KindClusterPodPreset) && admissionpolicy.Check(p) != nil {
				return "", ""
			}
		}
		return l.Serving(ns)
	}, nil
}

// waitForPolicies waits (a minute at most) until the policy that serves
// each of namespaces, if one does, carries the inputs of the presets in
// the cluster now, then gives the API server a moment to load it. A
// namespace the webhook serves needs no wait; a policy that is late only
// means the webhook serves those pods, with the same result.
func waitForPolicies(ctx context.Context, cl client.Client, namespaces []string) error {
	serves, err := serving(ctx, cl)
	if err != nil {
		return err
	}
	waited := false
	for _, ns := range namespaces {
		name, in := serves(ns)
		if name == "" {
			continue
		}
		waited = true
		deadline := time.Now().Add(time.Minute)
		for !inForce(ctx, cl, name, in) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	if waited {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	return nil
}

// inForce says whether the policy and its binding carry inputs in.
func inForce(ctx context.Context, cl client.Client, name, in string) bool {
	var pol admissionregistrationv1.MutatingAdmissionPolicy
	var b admissionregistrationv1.MutatingAdmissionPolicyBinding
	return cl.Get(ctx, client.ObjectKey{Name: name}, &pol) == nil && pol.Annotations[admissionpolicy.AnnotationInputs] == in &&
		cl.Get(ctx, client.ObjectKey{Name: name}, &b) == nil && b.Annotations[admissionpolicy.AnnotationInputs] == in
}

// policySummary prints which namespaces a compiled policy serves (written
// from the presets in the cluster now) and which the webhook serves, and the webhook's admission counters (from
// each replica's metrics): pods it left to a policy, pods it injected
// itself; probes says whether those count make run's dry-run probes.
func policySummary(ctx context.Context, cl client.Client, namespaces, metrics []string, probes bool, out io.Writer) error {
	serves, err := serving(ctx, cl)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\nAdmission (--admission-mode=auto; bin/kubectl get mutatingadmissionpolicies):")
	for _, ns := range namespaces {
		switch name, in := serves(ns); {
		case name == "":
			fmt.Fprintf(out, "  %-12s the webhook: a preset there reads Consul or Vault, which a policy cannot\n", ns)
		case inForce(ctx, cl, name, in):
			fmt.Fprintf(out, "  %-12s MutatingAdmissionPolicy %s: the API server injects the presets itself\n", ns, name)
		default:
			fmt.Fprintf(out, "  %-12s the webhook, until the leader writes MutatingAdmissionPolicy %s\n", ns, name)
		}
	}
	counts := map[string]float64{}
	for _, m := range metrics {
		for line := range strings.Lines(m) {
			rest, ok := strings.CutPrefix(strings.TrimSpace(line), `podpreset_admission_total{result="`)
			if !ok {
				continue
			}
			result, value, ok := strings.Cut(rest, `"} `)
			var v float64
			if _, err := fmt.Sscan(value, &v); ok && err == nil {
				counts[result] += v
			}
		}
	}
	note := ""
	if probes {
		note = " (with the dry-run probes make run sends before each workload)"
	}
	fmt.Fprintf(out, "  The webhook's counters (podpreset_admission_total): %g pod admissions left to a policy, %g injected by the webhook%s.\n",
		counts["policy"], counts["injected"], note)
	return nil
}

// webhookMetrics reads each webhook pod's metrics (port 8080 on its pod
// address, which this machine routes to the node's bridge).
func webhookMetrics(ctx context.Context, cl client.Client) ([]string, error) {
	var pods corev1.PodList
	if err := cl.List(ctx, &pods, client.InNamespace(cluster.InstallNamespace),
		client.MatchingLabels{"app.kubernetes.io/component": "webhook"}); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pods.Items {
		if p.Status.PodIP == "" {
			continue
		}
		url := "http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/metrics"
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return nil, fmt.Errorf("the webhook's metrics: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("the webhook's metrics: %w", err)
		}
		out = append(out, string(b))
	}
	return out, nil
}
