// Command monitoring writes manifests/monitoring/prometheusrule.yaml, the
// Prometheus Operator's PrometheusRule holding the alert rules of
// manifests/monitoring/rules.yaml (the file promtool tests), and copies the
// rules and the dashboard into the Helm chart's files/. make manifests runs
// it; make verify fails when its output is out of date.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

const header = `# Generated from rules.yaml by make manifests (hack/monitoring): edit
# rules.yaml, its tests (tests/) and docs/operations.md, not this file.
`

func main() {
	if err := run("manifests"); err != nil {
		fmt.Fprintln(os.Stderr, "monitoring:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	mon := filepath.Join(dir, "monitoring")
	rules, err := os.ReadFile(filepath.Join(mon, "rules.yaml"))
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := yaml.UnmarshalStrict(rules, &spec); err != nil {
		return fmt.Errorf("rules.yaml: %w", err)
	}
	rule := map[string]any{
		"apiVersion": "monitoring.coreos.com/v1",
		"kind":       "PrometheusRule",
		"metadata": map[string]any{
			"name":      "podpreset",
			"namespace": "podpreset-system",
			"labels":    map[string]any{"app.kubernetes.io/name": "podpreset", "app.kubernetes.io/part-of": "podpreset"},
		},
		"spec": spec,
	}
	out, err := yaml.Marshal(rule)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mon, "prometheusrule.yaml"), append([]byte(header), out...), 0o644); err != nil {
		return err
	}
	files := filepath.Join(dir, "helm", "podpreset", "files")
	if err := os.MkdirAll(files, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"rules.yaml", "dashboard.json"} {
		b, err := os.ReadFile(filepath.Join(mon, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(files, f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
