package node

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// admissionState says, when a test that waits for the webhook gives up,
// what the admission path looked like at that moment: each webhook pod
// (readiness, address, restarts, its last log lines and its admission
// counters), the Service's endpoints as the API server routes to them, and
// the API server's last lines about calling webhooks (failing open, say).
// The logs printed at the tier's end are those of the pods then, which a
// later test may have replaced.
func admissionState(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var b strings.Builder
	b.WriteString("--- the admission path now:\n")
	var pods corev1.PodList
	if err := k8s.List(ctx, &pods, client.InNamespace(installNS), client.MatchingLabels{"app.kubernetes.io/name": "podpreset"}); err != nil {
		fmt.Fprintf(&b, "listing the webhook's pods: %v\n", err)
	}
	for _, p := range pods.Items {
		ready := false
		for _, c := range p.Status.Conditions {
			ready = ready || c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
		}
		restarts := int32(0)
		for _, c := range p.Status.ContainerStatuses {
			restarts += c.RestartCount
		}
		fmt.Fprintf(&b, "pod %s: phase %s, ready %v, IP %s, restarts %d, deleting %v\n", p.Name, p.Status.Phase, ready, p.Status.PodIP, restarts, p.DeletionTimestamp != nil)
		if p.Status.PodIP != "" {
			b.WriteString(counters(ctx, p.Status.PodIP))
		}
		if out, _, err := cp.Kubectl(ctx, nil, "logs", "-n", installNS, p.Name, "--all-containers", "--tail", "15"); err == nil {
			fmt.Fprintf(&b, "  last log lines:\n%s\n", indent(out))
		}
	}
	var slices discoveryv1.EndpointSliceList
	if err := k8s.List(ctx, &slices, client.InNamespace(installNS)); err != nil {
		fmt.Fprintf(&b, "listing EndpointSlices: %v\n", err)
	}
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			fmt.Fprintf(&b, "endpoint slice %s: %v ready %v serving %v terminating %v\n", s.Name, e.Addresses,
				deref(e.Conditions.Ready), deref(e.Conditions.Serving), deref(e.Conditions.Terminating))
		}
	}
	var api []string
	for line := range strings.Lines(logs.String()) {
		if strings.HasPrefix(line, "[kube-apiserver]") && strings.Contains(strings.ToLower(line), "webhook") {
			api = append(api, strings.TrimRight(line, "\n"))
		}
	}
	fmt.Fprintf(&b, "the API server's last lines about webhooks:\n%s\n", indent(strings.Join(api[max(0, len(api)-15):], "\n")))
	return b.String()
}

// counters are a webhook pod's admission counters, from its metrics port.
func counters(ctx context.Context, ip string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(ip, "8080")+"/metrics", nil)
	if err != nil {
		return "  metrics: " + err.Error() + "\n"
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "  metrics: " + err.Error() + "\n"
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		for _, m := range []string{"podpreset_admission_total", "podpreset_presets_cached", "podpreset_namespace_reads_total", "podpreset_admission_waits_total", "podpreset_leader "} {
			if strings.HasPrefix(sc.Text(), m) {
				fmt.Fprintf(&b, "  %s\n", sc.Text())
			}
		}
	}
	return b.String()
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

func deref(b *bool) any {
	if b == nil {
		return "unset"
	}
	return *b
}
