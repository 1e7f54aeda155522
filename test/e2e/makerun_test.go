package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMakeRun runs what `make run` runs, with --once, on a control plane of
// its own, and checks that every example's pods are shown with their
// presets: the README's first command keeps working.
func TestMakeRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./hack/localrun", "--once")
	cmd.Dir = cp.Root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./hack/localrun --once: %v\n%s", err, out)
	}
	for _, want := range []string{
		"databases/mysql  (PodPreset/mysql@1)",
		"functions/figlet  (ClusterPodPreset/faas-openfaas@1)",
		"functions/hello-00001  (ClusterPodPreset/faas-knative@1)",
		"KONG_PG_PASSWORD=<from a reference>",
		"LOG_LEVEL=debug",
		"(PodPreset/prometheus-metrics@1,ClusterPodPreset/logging-standard@1)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make run printed no %q:\n%s", want, out)
		}
	}
}
