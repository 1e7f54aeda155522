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
	if strings.Contains(string(out), "example-only-not-a-secret") {
		t.Error("make run printed a Vault value")
	}
	for _, want := range []string{
		"databases/mysql  (PodPreset/mysql@1)",
		"functions/figlet  (ClusterPodPreset/faas-openfaas@1)",
		"functions/hello-00001  (ClusterPodPreset/faas-knative@1)",
		"KONG_PG_PASSWORD=<from a reference>",
		"LOG_LEVEL=debug",
		"(PodPreset/prometheus-metrics@1,ClusterPodPreset/logging-standard@1)",
		"ORDERS_DB_HOST=<from a reference> ORDERS_DB_PASSWORD=<from a reference>",
		"ConfigMap orders/podpreset-orders-config  apps.orders.db.host",
		"Secret orders/podpreset-orders-config  secret.data.orders.db.password",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make run printed no %q:\n%s", want, out)
		}
	}
}
