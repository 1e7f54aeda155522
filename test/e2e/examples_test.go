package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/test/cluster"
)

// TestExamples applies every example in manifests/examples with the real
// kubectl, presets first, then workloads, and checks the pods they make.
func TestExamples(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(cp.Root, "manifests", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(cp.Root, "manifests", "examples", e.Name()))
		}
	}
	cases := map[string]struct {
		// pods are the pods to wait for, by namespace and labels.
		podNS     string
		podLabels map[string]string
		check     func(t *testing.T, pod corev1.Pod)
	}{
		"mysql": {
			podNS: "databases", podLabels: map[string]string{"app": "mysql"},
			check: func(t *testing.T, pod corev1.Pod) {
				init := pod.Spec.InitContainers[0]
				wantEnv(t, init, map[string]string{"MYSQL_DB_PORT": "3306", "SOCKET_FILE": "/var/run/mysqld/mysqld.sock", "MYSQL_DATA_DIR": "/var/lib/mysql", "MYSQL_ENGINE": "InnoDB"})
				mysql := pod.Spec.Containers[0]
				if names := envNames(mysql); strings.Join(names, ",") != "MYSQL_DB_PORT,SOCKET_FILE,MYSQL_DATA_DIR,MYSQL_ENGINE,MYSQL_ROOT_PASSWORD" {
					t.Errorf("mysql env order %v: injected variables must come first", names)
				}
				wantMount(t, init, "/etc/mysql/conf.d")
				wantMount(t, mysql, "/etc/mysql/conf.d")
			},
		},
		"logging": {
			podNS: "payments", podLabels: map[string]string{"app": "ledger"},
			check: func(t *testing.T, pod corev1.Pod) {
				wantEnv(t, pod.Spec.Containers[0], map[string]string{"LOG_FORMAT": "json", "LOG_LEVEL": "debug", "LOG_TIMESTAMP_FORMAT": "rfc3339"})
			},
		},
		"metrics": {
			podNS: "shop", podLabels: map[string]string{"app": "cart"},
			check: func(t *testing.T, pod corev1.Pod) {
				wantEnv(t, pod.Spec.Containers[0], map[string]string{"METRICS_PORT": "9102", "METRICS_PATH": "/metrics"})
				for k, v := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9102", "prometheus.io/path": "/metrics"} {
					if pod.Annotations[k] != v {
						t.Errorf("annotation %s = %q, want %q", k, pod.Annotations[k], v)
					}
				}
			},
		},
		"faas": {
			podNS: "functions",
			check: func(t *testing.T, pod corev1.Pod) {
				switch pod.Name {
				case "figlet":
					wantEnv(t, pod.Spec.Containers[0], map[string]string{"read_timeout": "30s", "write_timeout": "30s", "exec_timeout": "30s", "LOG_FORMAT": "json"})
					if pod.Annotations["prometheus.io/scrape"] != "true" {
						t.Errorf("figlet: no scrape annotation: %v", pod.Annotations)
					}
				case "hello-00001":
					wantEnv(t, pod.Spec.Containers[0], map[string]string{"FUNCTION_TIMEOUT": "30s", "LOG_FORMAT": "json"})
					if env := pod.Spec.Containers[1].Env; len(env) != 0 {
						t.Errorf("queue-proxy is not a target, yet got %v", env)
					}
				default:
					t.Errorf("unexpected pod %s", pod.Name)
				}
			},
		},
		"orders": {
			podNS: "orders", podLabels: map[string]string{"app": "orders"},
			check: func(t *testing.T, pod corev1.Pod) {
				c := pod.Spec.Containers[0]
				refs := map[string]string{}
				for _, e := range c.Env {
					switch {
					case e.Value != "":
						t.Errorf("%s has a value in the pod spec", e.Name)
					case e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil:
						refs[e.Name] = "ConfigMap/" + e.ValueFrom.ConfigMapKeyRef.Name + "/" + e.ValueFrom.ConfigMapKeyRef.Key
					case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
						refs[e.Name] = "Secret/" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
					}
				}
				want := map[string]string{
					"ORDERS_DB_HOST":     "ConfigMap/podpreset-orders-config/apps.orders.db.host",
					"ORDERS_DB_PASSWORD": "Secret/podpreset-orders-config/secret.data.orders.db.password",
				}
				if !maps.Equal(refs, want) {
					t.Errorf("env references %v, want %v", refs, want)
				}
				if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil {
					t.Fatalf("envFrom %+v", c.EnvFrom)
				}
				configMapData(t, "orders", "podpreset-orders-config", 20*time.Second, hasValue("apps.orders.db.host", "orders-db.orders.svc"))
				configMapData(t, "orders", c.EnvFrom[0].ConfigMapRef.Name, 20*time.Second, hasValue("FEATURE_FLAGS", "express-checkout"))
				secretData(t, "orders", "podpreset-orders-config", 20*time.Second, func(d map[string][]byte) error {
					if len(d["secret.data.orders.db.password"]) == 0 {
						return fmt.Errorf("the password is not materialised")
					}
					return nil
				})
			},
		},
		"kong": {
			podNS: "gateway", podLabels: map[string]string{"app": "kong"},
			check: func(t *testing.T, pod corev1.Pod) {
				c := pod.Spec.Containers[0]
				wantEnv(t, c, map[string]string{"KONG_DATABASE": "postgres", "KONG_PG_HOST": "postgres.gateway.svc"})
				for _, e := range c.Env {
					if e.Name == "KONG_PG_PASSWORD" {
						if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
							e.ValueFrom.SecretKeyRef.Name != "kong-postgres" || e.ValueFrom.SecretKeyRef.Key != "password" {
							t.Errorf("KONG_PG_PASSWORD = %+v, want a secretKeyRef to kong-postgres/password", e)
						}
						return
					}
				}
				t.Error("no KONG_PG_PASSWORD")
			},
		},
	}
	if len(dirs) != len(cases) {
		t.Fatalf("%d example directories, %d checked: every example needs a case here", len(dirs), len(cases))
	}
	for _, dir := range dirs {
		name := filepath.Base(dir)
		tc, ok := cases[name]
		if !ok {
			t.Errorf("example %s has no case", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Cleanup(func() {
				_, _, _ = cp.Kubectl(context.Background(), nil, "delete", "--ignore-not-found", "--wait=false", "-f", dir)
			})
			// Values in Consul and Vault, for the examples that read them.
			if seed := filepath.Join(dir, "seed.sh"); fileExists(seed) {
				if err := cluster.Seed(t.Context(), seed, consulSrv.Addr, vaultSrv.Addr, vaultSrv.RootToken); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := cp.ApplyExample(t.Context(), dir); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			var pods []corev1.Pod
			if tc.podLabels != nil {
				pods = waitForPods(t, tc.podNS, tc.podLabels, 1)
			} else {
				var list corev1.PodList
				if err := k8s.List(t.Context(), &list, client.InNamespace(tc.podNS)); err != nil {
					t.Fatal(err)
				}
				pods = list.Items
			}
			if len(pods) == 0 {
				t.Fatal("no pods")
			}
			for _, p := range pods {
				tc.check(t, p)
			}
		})
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func envNames(c corev1.Container) []string {
	var out []string
	for _, e := range c.Env {
		out = append(out, e.Name)
	}
	return out
}

func wantEnv(t *testing.T, c corev1.Container, want map[string]string) {
	t.Helper()
	got := envOf(c)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("container %s: %s = %q, want %q (env %v)", c.Name, k, got[k], v, got)
		}
	}
}

func wantMount(t *testing.T, c corev1.Container, path string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return
		}
	}
	t.Errorf("container %s has no mount at %s", c.Name, path)
}
