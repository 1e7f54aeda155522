package node

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// applyExample applies an example on the node (cluster.ApplyExampleOnNode:
// its workloads run the report image).
func applyExample(t *testing.T, name string) {
	t.Helper()
	if out, err := cp.ApplyExampleOnNode(t.Context(), filepath.Join(cp.Root, "manifests", "examples", name)); err != nil {
		t.Fatalf("applying example %s: %v\n%s", name, err, out)
	}
}

// podOf finds the running pod of a workload by its labels.
func podOf(t *testing.T, ns string, labels map[string]string) string {
	t.Helper()
	var name string
	eventually(t, 90*time.Second, func() error {
		var pods corev1.PodList
		if err := k8s.List(t.Context(), &pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				name = p.Name
				return nil
			}
		}
		return fmt.Errorf("no running pod labelled %v in %s yet (%d pods)", labels, ns, len(pods.Items))
	})
	return name
}

func digestOf(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// wantEnv checks that a report holds these variables with these values.
func wantEnv(want map[string]string) func([]string) error {
	return func(lines []string) error {
		got := envOf(lines)
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("%s is %q in the container, want %q", k, got[k], v)
			}
		}
		return nil
	}
}

// TestExamplesRunAndReport: every example of manifests/examples runs, and
// its containers report, in their own processes, what the presets gave
// them.
func TestExamplesRunAndReport(t *testing.T) {
	t.Run("mysql", func(t *testing.T) {
		applyExample(t, "mysql")
		var secret corev1.Secret
		if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: "databases", Name: "mysql-root"}, &secret); err != nil {
			t.Fatal(err)
		}
		lines := report(t, "databases", "mysql", "mysql", wantEnv(map[string]string{
			"MYSQL_DB_PORT": "3306", "SOCKET_FILE": "/var/run/mysqld/mysqld.sock", "MYSQL_DATA_DIR": "/var/lib/mysql", "MYSQL_ENGINE": "InnoDB",
			// The pod's own Secret reference, compared by digest.
			"MYSQL_ROOT_PASSWORD": digestOf(secret.Data["password"]),
		}))
		// The init container ran first and wrote my.ini from the injected
		// variables ($(VAR) expanded by the kubelet), into the volume the
		// preset injected, which the main container reads.
		want := `text="[mysqld]\nport=3306\nsocket=/var/run/mysqld/mysqld.sock\ndatadir=/var/lib/mysql\ndefault-storage-engine=InnoDB\n"`
		if !hasLine(lines, "file /etc/mysql/conf.d/my.ini ", want) {
			t.Errorf("the main container does not see the init container's my.ini:\n%s", strings.Join(lines, "\n"))
		}
		var p corev1.Pod
		if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: "databases", Name: "mysql"}, &p); err != nil {
			t.Fatal(err)
		}
		if s := p.Status.InitContainerStatuses; len(s) != 1 || s[0].State.Terminated == nil || s[0].State.Terminated.ExitCode != 0 ||
			s[0].State.Terminated.FinishedAt.After(p.Status.ContainerStatuses[0].State.Running.StartedAt.Time) {
			t.Errorf("init container %+v, main started %v", s, p.Status.ContainerStatuses)
		}
	})
	t.Run("kong", func(t *testing.T) {
		applyExample(t, "kong")
		var secret corev1.Secret
		if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: "gateway", Name: "kong-postgres"}, &secret); err != nil {
			t.Fatal(err)
		}
		pod := podOf(t, "gateway", map[string]string{"app": "kong"})
		report(t, "gateway", pod, "proxy", wantEnv(map[string]string{
			"KONG_DATABASE": "postgres", "KONG_PG_HOST": "postgres.gateway.svc",
			"KONG_PG_PASSWORD": digestOf(secret.Data["password"]),
		}))
	})
	t.Run("faas", func(t *testing.T) {
		applyExample(t, "faas")
		report(t, "functions", "figlet", "figlet", wantEnv(map[string]string{
			"read_timeout": "30s", "write_timeout": "30s", "exec_timeout": "30s", "LOG_FORMAT": "json"}))
		report(t, "functions", "hello-00001", "user-container", wantEnv(map[string]string{"FUNCTION_TIMEOUT": "30s", "LOG_FORMAT": "json"}))
		// The preset targets the user container only.
		report(t, "functions", "hello-00001", "queue-proxy", func(lines []string) error {
			if v, ok := envOf(lines)["FUNCTION_TIMEOUT"]; ok {
				return fmt.Errorf("queue-proxy got FUNCTION_TIMEOUT=%s", v)
			}
			return nil
		})
	})
	t.Run("logging, in every selected namespace", func(t *testing.T) {
		applyExample(t, "logging")
		pod := podOf(t, "payments", map[string]string{"app": "ledger"})
		// The pod's own LOG_LEVEL wins over the standard's.
		lines := report(t, "payments", pod, "ledger", wantEnv(map[string]string{"LOG_FORMAT": "json", "LOG_TIMESTAMP_FORMAT": "rfc3339"}))
		if lvl := envOf(lines)["LOG_LEVEL"]; lvl != "debug" {
			t.Errorf("LOG_LEVEL is %q, want the pod's own debug", lvl)
		}
		// Another namespace the standard selects, another workload.
		var ns corev1.Namespace
		if err := k8s.Get(t.Context(), client.ObjectKey{Name: "payments"}, &ns); err != nil {
			t.Fatal(err)
		}
		other := namespace(t, map[string]string{"team": ns.Labels["team"] + "-too"})
		if err := k8s.Create(t.Context(), reportPod("any", other, map[string]string{"app": "any"})); err != nil {
			t.Fatal(err)
		}
		report(t, other, "any", "app", wantEnv(map[string]string{"LOG_FORMAT": "json", "LOG_TIMESTAMP_FORMAT": "rfc3339"}))
	})
	t.Run("metrics", func(t *testing.T) {
		applyExample(t, "metrics")
		pod := podOf(t, "shop", map[string]string{"app": "cart"})
		report(t, "shop", pod, "cart", wantEnv(map[string]string{"METRICS_PORT": "9102", "METRICS_PATH": "/metrics"}))
		var p corev1.Pod
		if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: "shop", Name: pod}, &p); err != nil {
			t.Fatal(err)
		}
		if p.Annotations["prometheus.io/scrape"] != "true" {
			t.Errorf("annotations %v", p.Annotations)
		}
	})
}

// hasLine says whether a report has a line with this prefix that contains
// want.
func hasLine(lines []string, prefix, want string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, want) {
			return true
		}
	}
	return false
}
