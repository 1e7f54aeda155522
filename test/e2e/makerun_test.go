package e2e

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMakeRun runs what `make run` runs, with --once, on a control plane and
// a node of its own, and checks that every example's pods ran and reported
// what the presets gave them: the README's first command keeps working.
func TestMakeRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./hack/localrun", "--once")
	cmd.Dir = cp.Root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./hack/localrun --once: %v\n%s", err, out)
	}
	for _, secret := range []string{"example-only-not-a-secret", "example-only-change-me"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("make run printed a secret value (%s)", secret)
		}
	}
	for _, want := range []string{
		"databases/mysql  (PodPreset/mysql@1)",
		"render-config    init container: Completed (exit 0) before the others started",
		`MYSQL_ENGINE="InnoDB"`,
		`text="[mysqld]\nport=3306\n`,
		"functions/figlet  (ClusterPodPreset/faas-openfaas@1)",
		"functions/hello-00001  (ClusterPodPreset/faas-knative@1)",
		`KONG_PG_PASSWORD="sha256:`,
		`LOG_LEVEL="debug"`,
		"(PodPreset/prometheus-metrics@1,ClusterPodPreset/logging-standard@1)",
		`ORDERS_DB_HOST="orders-db.orders.svc" ORDERS_DB_PASSWORD="sha256:`,
		"ConfigMap orders/podpreset-orders-config  apps.orders.db.host",
		"Secret orders/podpreset-orders-config  secret.data.orders.db.password",
		// --admission-mode=auto: the API server serves every example but
		// orders, whose preset reads Consul and Vault.
		"databases    MutatingAdmissionPolicy podpreset-ns-databases",
		"shop         MutatingAdmissionPolicy podpreset-ns-shop",
		"functions    MutatingAdmissionPolicy podpreset-cluster",
		"orders       the webhook",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make run printed no %q:\n%s", want, out)
		}
	}
	// Pods of those namespaces went through their policies: the webhook
	// left them alone, and counted it.
	m := regexp.MustCompile(`counters \(podpreset_admission_total\): (\d+) pod admissions left to a policy`).FindSubmatch(out)
	if len(m) < 2 || string(m[1]) == "0" {
		t.Errorf("make run shows no pod served by a policy:\n%s", out)
	}
}
