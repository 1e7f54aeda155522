package manifests

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// ChartDir is the Helm chart's directory.
func ChartDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "helm", "podpreset")
}

// RenderChart renders the Helm chart as `helm template` does (Helm's own
// packages, no helm binary): the objects of its templates, in Helm's
// install order, for a release of this name in this namespace, with these
// values over the chart's defaults. The CRDs (crds/) are not among them:
// Helm installs them before, as they are.
func RenderChart(release, namespace string, values map[string]any) ([]*unstructured.Unstructured, error) {
	chart, err := loader.Load(ChartDir())
	if err != nil {
		return nil, fmt.Errorf("loading the chart: %w", err)
	}
	vals, err := chartutil.ToRenderValues(chart, values, chartutil.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true, Revision: 1}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("the values: %w", err)
	}
	files, err := engine.Render(chart, vals)
	if err != nil {
		return nil, err
	}
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name) // as helm install does: text for people
		}
	}
	_, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, m := range manifests {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(m.Content), &u.Object); err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
	return out, nil
}

// ChartCRDs returns the chart's CRDs as files (crds/), by name.
func ChartCRDs() (map[string][]byte, error) {
	chart, err := loader.Load(ChartDir())
	if err != nil {
		return nil, fmt.Errorf("loading the chart: %w", err)
	}
	out := map[string][]byte{}
	for _, c := range chart.CRDObjects() {
		out[filepath.Base(c.Filename)] = slices.Clone(c.File.Data)
	}
	return out, nil
}

// ChartValueCases are the documented values combinations (values.yaml):
// the chart's tests render and lint each, and the e2e tier dry-runs each on
// the API server.
var ChartValueCases = map[string]string{
	"defaults": ``,
	"cert-manager": `
certificates: {mode: cert-manager}`,
	"strict, pinned, scheduled": `
image: {digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", pullPolicy: Always}
imagePullSecrets: [{name: registry}]
replicas: 3
resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 256Mi}}
goMemLimit: 210MiB
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: platform, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}]}]}}}
priorityClassName: system-cluster-critical
podDisruptionBudget: {minAvailable: 2}
webhook: {failurePolicy: Fail, timeoutSeconds: 10, excludedNamespaces: [kube-system, kube-public, monitoring]}
logging: {verbosity: 1, format: text}
extraArgs: [--admission-log-level=0]
admissionMode: auto
userRoles: false`,
	"sources": `
sources: {enabled: true, replicas: 1}`,
	"policies and monitoring": `
presetPolicies:
  - name: platform
    spec:
      namespaceSelector: {matchLabels: {tier: platform}}
      initContainers: {allowedImages: ["registry.example.com/platform/"]}
monitoring:
  serviceMonitor: {enabled: true, labels: {release: prometheus}}
  prometheusRule: {enabled: true, labels: {release: prometheus}}
  dashboard: {enabled: true}`,
}

// RenderChartCase renders one of ChartValueCases for a release of this
// name in this namespace.
func RenderChartCase(name, release, namespace string) ([]*unstructured.Unstructured, error) {
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(ChartValueCases[name]), &vals); err != nil {
		return nil, fmt.Errorf("values %s: %w", name, err)
	}
	return RenderChart(release, namespace, vals)
}
