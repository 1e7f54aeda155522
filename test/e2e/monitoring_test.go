package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// TestMonitoringMetricsExist: every metric that the Grafana dashboard and
// the alert rules (manifests/monitoring) read is on a running webhook's
// /metrics or on the API server's, after what would make it appear: a pod
// the webhook mutates, and a pod admitted through a webhook that cannot be
// called (one with failurePolicy Ignore, one with Fail). `up` is
// Prometheus's own.
func TestMonitoringMetricsExist(t *testing.T) {
	ctx := t.Context()
	// A pod through podpreset, and one through two webhooks that answer
	// nothing: the API server counts a fail-open and a rejection.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring-probe", Labels: map[string]string{"monitoring-probe": "true"}}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, testPod("through-podpreset", ns.Name, nil)); err != nil {
		t.Fatal(err)
	}
	nowhere := func(name string, policy admissionregistrationv1.FailurePolicyType) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name: name, AdmissionReviewVersions: []string{"v1"}, SideEffects: ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy: &policy, TimeoutSeconds: ptr.To[int32](2),
			ClientConfig:      admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1/nowhere")},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"monitoring-probe": "true"}},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
		}
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "monitoring-probe"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{nowhere("ignore.probe.podpreset.dev", admissionregistrationv1.Ignore), nowhere("fail.probe.podpreset.dev", admissionregistrationv1.Fail)}}
	if err := k8s.Create(ctx, mwc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), mwc); _ = k8s.Delete(context.Background(), ns) })
	eventually(t, 30*time.Second, func() error {
		err := k8s.Create(ctx, testPod("nowhere", ns.Name, nil))
		if err == nil || !strings.Contains(err.Error(), "fail.probe.podpreset.dev") {
			return fmt.Errorf("a pod through the webhooks that answer nothing: %v", err)
		}
		return nil
	})

	have := map[string]bool{"up": true}
	webhookMetrics, err := cp.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	apiMetrics, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, page := range []string{webhookMetrics, string(apiMetrics)} {
		for _, line := range strings.Split(page, "\n") {
			// # TYPE name type; a histogram's series are name_bucket, _sum
			// and _count.
			f := strings.Fields(line)
			if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
				have[f[2]] = true
				if f[3] == "histogram" || f[3] == "summary" {
					have[f[2]+"_bucket"], have[f[2]+"_sum"], have[f[2]+"_count"] = true, true, true
				}
			}
		}
	}

	exprs := map[string]string{} // expression → where
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	readYAML(t, filepath.Join(cp.Root, "manifests", "monitoring", "rules.yaml"), &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs[r.Expr] = "alert " + r.Alert
		}
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(filepath.Join(cp.Root, "manifests", "monitoring", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			exprs[target.Expr] = "panel " + p.Title
		}
	}
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions in the rules and the dashboard", len(exprs))
	}
	used := 0
	for _, e := range slices.Sorted(maps.Keys(exprs)) {
		for _, name := range metricNames(e) {
			used++
			if !have[name] {
				t.Errorf("%s reads %s, which neither the webhook nor the API server exposes: %s", exprs[e], name, e)
			}
		}
	}
	t.Logf("%d expressions, %d metric reads, all exposed", len(exprs), used)
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// metricNames returns the metric names a PromQL expression reads: its
// identifiers that are not functions or aggregations (followed by "("),
// keywords, label names (inside {} or the list after by, without, on,
// ignoring, group_left and group_right), durations, variables or strings.
func metricNames(expr string) []string {
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true,
		// aggregations, whose "(" may come after a by or without list
		"sum": true, "min": true, "max": true, "avg": true, "count": true, "group": true, "stddev": true, "stdvar": true,
		"topk": true, "bottomk": true, "quantile": true, "count_values": true, "limitk": true, "limit_ratio": true}
	labelLists := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	isStart := func(c byte) bool { return c == '_' || c == ':' || (c|0x20) >= 'a' && (c|0x20) <= 'z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	var names []string
	depth := 0 // inside {} or []
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' {
					j++
				}
				j++
			}
			i = j + 1
		case c == '{' || c == '[':
			depth++
			i++
		case c == '}' || c == ']':
			depth--
			i++
		case c == '$' || c >= '0' && c <= '9' || c == '.':
			// a variable, a number or a duration's digits and unit
			i++
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') {
				i++
			}
		case isStart(c):
			j := i
			for j < len(expr) && isPart(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\n') {
				k++
			}
			call := k < len(expr) && expr[k] == '('
			switch {
			case depth > 0 || keywords[word]:
			case labelLists[word]:
				if call { // skip the label list
					for k < len(expr) && expr[k] != ')' {
						k++
					}
					j = k + 1
				}
			case !call:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	return names
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (source) (increase(podpreset_source_reads_total{result="error"}[5m])) > 0 unless sum by (source) (increase(podpreset_source_reads_total{result!="error"}[5m])) > 0`: {"podpreset_source_reads_total", "podpreset_source_reads_total"},
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket{name="a.b"}[$__rate_interval])))`:                                                                                      {"x_bucket"},
		`min by (certificate) (podpreset_certificate_expiry_timestamp_seconds) - time() < 14 * 86400`:                                                                               {"podpreset_certificate_expiry_timestamp_seconds"},
		`sum(up{job="podpreset-metrics"}) == 0 or absent(up{job="podpreset-metrics"})`:                                                                                              {"up", "up"},
		`a / on (x) group_left (y) b offset 5m`: {"a", "b"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%s) = %v, want %v", expr, got, want)
		}
	}
}
