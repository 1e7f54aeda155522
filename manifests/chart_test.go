package manifests

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// helmLabels are the labels the chart adds to every object's metadata that
// the kustomize install does not have.
var helmLabels = []string{"app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version", "helm.sh/chart"}

// byKindName keys objects by kind and name, for comparison, as JSON reads
// them.
func byKindName(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, o := range objs {
		out[o.GetKind()+"/"+o.GetName()] = asJSON(t, o.Object)
	}
	return out
}

// asJSON is v as JSON reads it (every number a float64, whoever decoded
// it).
func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestChartIsTheKustomizeInstall: with default values, a release named
// podpreset in podpreset-system renders exactly what
// `kubectl kustomize manifests/default` does, but for the labels Helm adds
// (app.kubernetes.io/managed-by, instance, version, helm.sh/chart), the
// Namespace (helm install --create-namespace makes it) and the CRDs, which
// are in crds/ as Helm wants, byte for byte the generated ones.
func TestChartIsTheKustomizeInstall(t *testing.T) {
	objs, err := RenderChart("podpreset", "podpreset-system", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		labels := o.GetLabels()
		for _, l := range helmLabels {
			if labels[l] == "" {
				t.Errorf("%s %s lacks Helm's label %s", o.GetKind(), o.GetName(), l)
			}
			delete(labels, l)
		}
		o.SetLabels(labels)
	}
	got := byKindName(t, objs)

	var want []*unstructured.Unstructured
	for _, r := range build(t, "default").Resources() {
		if r.GetKind() == "Namespace" || r.GetKind() == "CustomResourceDefinition" {
			continue
		}
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, &unstructured.Unstructured{Object: m})
	}
	if diff := cmp.Diff(byKindName(t, want), got); diff != "" {
		t.Errorf("chart (+) against manifests/default (-):\n%s", diff)
	}

	crds, err := ChartCRDs()
	if err != nil {
		t.Fatal(err)
	}
	generated, err := filepath.Glob("crd/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range generated {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		names = append(names, filepath.Base(f))
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if string(crds[filepath.Base(f)]) != string(b) {
			t.Errorf("crds/%s in the chart is not %s (make manifests copies it)", filepath.Base(f), f)
		}
	}
	if len(crds) != len(names) {
		t.Errorf("the chart's CRDs %v, the generated ones %v", slices.Sorted(maps.Keys(crds)), names)
	}
}

// TestChartValues: every documented combination renders, and each value
// reaches its object.
func TestChartValues(t *testing.T) {
	for name := range ChartValueCases {
		t.Run(name, func(t *testing.T) {
			objs, err := RenderChartCase(name, "podpreset", "podpreset-system")
			if err != nil {
				t.Fatal(err)
			}
			rendered := map[string]string{}
			for _, o := range objs {
				b, err := yaml.Marshal(o.Object)
				if err != nil {
					t.Fatal(err)
				}
				rendered[o.GetKind()+"/"+o.GetName()] = string(b)
			}
			want := map[string][]string{
				"defaults":                  {"Deployment/podpreset-webhook: --cert-mode=self", "ClusterRole/podpreset-edit: deletecollection"},
				"cert-manager":              {"Deployment/podpreset-webhook: --cert-mode=external", "Deployment/podpreset-webhook: secretName: podpreset-webhook-tls", "Certificate/podpreset-webhook: podpreset-webhook-service.podpreset-system.svc", "MutatingWebhookConfiguration/podpreset-webhook: cert-manager.io/inject-ca-from: podpreset-system/podpreset-webhook"},
				"strict, pinned, scheduled": {"Deployment/podpreset-webhook: image: ghcr.io/podpreset/podpreset-webhook@sha256:0123", "Deployment/podpreset-webhook: replicas: 3", "Deployment/podpreset-webhook: priorityClassName: system-cluster-critical", "Deployment/podpreset-webhook: dedicated", "Deployment/podpreset-webhook: kubernetes.io/arch", "Deployment/podpreset-webhook: value: 210MiB", "Deployment/podpreset-webhook: - -v=1", "Deployment/podpreset-webhook: --admission-log-level=0", "Deployment/podpreset-webhook: --admission-mode=auto", "Deployment/podpreset-webhook: name: registry", "MutatingWebhookConfiguration/podpreset-webhook: failurePolicy: Fail", "MutatingWebhookConfiguration/podpreset-webhook: timeoutSeconds: 10", "MutatingWebhookConfiguration/podpreset-webhook: monitoring", "PodDisruptionBudget/podpreset-webhook: minAvailable: 2"},
				"sources":                   {"Deployment/podpreset-sources: --role=sources", "Deployment/podpreset-webhook: --role=webhook", "ConfigMap/podpreset-sources: apps/{{ .Namespace }}/", "Deployment/podpreset-sources: secretName: podpreset-sources-credentials", "Deployment/podpreset-sources: replicas: 1"},
				"policies and monitoring":   {"PodPresetPolicy/platform: registry.example.com/platform/", "ServiceMonitor/podpreset: release: prometheus", "Service/podpreset-metrics: targetPort: metrics", "PrometheusRule/podpreset: alert: PodPresetWebhookFailingOpen", "PrometheusRule/podpreset: up{job=\"podpreset-metrics\"}", "PrometheusRule/podpreset: '{{ $value | humanize }}", "ConfigMap/podpreset-dashboard: grafana_dashboard: \"1\"", "ConfigMap/podpreset-dashboard: podpreset_admission_total"},
			}[name]
			for _, w := range want {
				obj, text, _ := strings.Cut(w, ": ")
				if !strings.Contains(rendered[obj], text) {
					t.Errorf("%s has no %q:\n%s", obj, text, rendered[obj])
				}
			}
			if name == "strict, pinned, scheduled" {
				for _, role := range []string{"ClusterRole/podpreset-view", "ClusterRole/podpreset-edit"} {
					if _, ok := rendered[role]; ok {
						t.Errorf("userRoles false still renders %s", role)
					}
				}
			}
		})
	}
}

// TestChartRefusesBadValues: a value the chart cannot honour is an error
// that names it, not a broken install.
func TestChartRefusesBadValues(t *testing.T) {
	for values, want := range map[string]string{
		`certificates: {mode: manual}`:                        `certificates.mode "manual": must be self or cert-manager`,
		`webhook: {failurePolicy: Sometimes}`:                 `webhook.failurePolicy "Sometimes": must be Ignore or Fail`,
		`webhook: {timeoutSeconds: 60}`:                       `webhook.timeoutSeconds 60: must be between 1 and 30`,
		`admissionMode: policy`:                               `admissionMode "policy": must be webhook or auto`,
		`presetPolicies: [{spec: {clusterPodPresets: true}}]`: `presetPolicies[].name is required`,
	} {
		vals := map[string]any{}
		if err := yaml.Unmarshal([]byte(values), &vals); err != nil {
			t.Fatal(err)
		}
		_, err := RenderChart("podpreset", "podpreset-system", vals)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("values %s: error %v, want one saying %q", values, err, want)
		}
	}
}

// TestChartLint: helm lint (Helm's own linter) finds nothing above INFO,
// with the defaults and with every documented combination.
func TestChartLint(t *testing.T) {
	for name := range ChartValueCases {
		vals := map[string]any{}
		if err := yaml.Unmarshal([]byte(ChartValueCases[name]), &vals); err != nil {
			t.Fatal(err)
		}
		l := lint.All(ChartDir(), vals, "podpreset-system", false)
		for _, m := range l.Messages {
			if m.Severity > support.InfoSev {
				t.Errorf("%s: helm lint: %s", name, m)
			}
		}
	}
}

// TestMonitoringHasOneSource: the alert rules are rules.yaml (which
// promtool tests): the kustomize PrometheusRule, the chart's and the chart's
// copies of the rules and the dashboard say the same.
func TestMonitoringHasOneSource(t *testing.T) {
	var rules map[string]any
	readYAMLFile(t, "monitoring/rules.yaml", &rules)
	for _, f := range []string{"rules.yaml", "dashboard.json"} {
		orig, err := os.ReadFile(filepath.Join("monitoring", f))
		if err != nil {
			t.Fatal(err)
		}
		copied, err := os.ReadFile(filepath.Join("helm", "podpreset", "files", f))
		if err != nil || string(copied) != string(orig) {
			t.Errorf("helm/podpreset/files/%s is not monitoring/%s (%v): make manifests copies it", f, f, err)
		}
	}
	specOf := func(objs []*unstructured.Unstructured, where string) map[string]any {
		for _, o := range objs {
			if o.GetKind() == "PrometheusRule" {
				spec, _ := o.Object["spec"].(map[string]any)
				return spec
			}
		}
		t.Fatalf("no PrometheusRule in %s", where)
		return nil
	}
	var kustomized []*unstructured.Unstructured
	for _, r := range build(t, "monitoring").Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		kustomized = append(kustomized, &unstructured.Unstructured{Object: m})
	}
	charted, err := RenderChartCase("policies and monitoring", "podpreset", "podpreset-system")
	if err != nil {
		t.Fatal(err)
	}
	want := asJSON(t, rules)
	for where, objs := range map[string][]*unstructured.Unstructured{"manifests/monitoring": kustomized, "the chart": charted} {
		got := asJSON(t, specOf(objs, where))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("the PrometheusRule of %s is not rules.yaml (make manifests):\n%s", where, diff)
		}
	}
}

// TestDashboardPicksItsDataSource: the dashboard names no data source and
// no UID of a Grafana it was made on: every query reads the data source
// variable.
func TestDashboardPicksItsDataSource(t *testing.T) {
	b, err := os.ReadFile("monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        *string `json:"uid"`
		Templating struct {
			List []struct{ Name, Type, Query string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title      string         `json:"title"`
			Type       string         `json:"type"`
			Datasource map[string]any `json:"datasource"`
			Targets    []struct {
				Datasource map[string]any `json:"datasource"`
				Expr       string         `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID != nil {
		t.Errorf("the dashboard has a uid (%q): Grafana gives one on import", *dash.UID)
	}
	if !slices.ContainsFunc(dash.Templating.List, func(v struct{ Name, Type, Query string }) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Errorf("no datasource variable of type prometheus: %+v", dash.Templating.List)
	}
	want := map[string]any{"type": "prometheus", "uid": "${datasource}"}
	queries := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if !cmp.Equal(p.Datasource, want) {
			t.Errorf("panel %q reads data source %v", p.Title, p.Datasource)
		}
		for _, q := range p.Targets {
			queries++
			if !cmp.Equal(q.Datasource, want) || q.Expr == "" {
				t.Errorf("panel %q: a query on %v: %q", p.Title, q.Datasource, q.Expr)
			}
		}
	}
	if queries < 20 {
		t.Errorf("only %d queries", queries)
	}
}

func readYAMLFile(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
