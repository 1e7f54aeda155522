package node

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/test/cluster"
)

// startSources starts Consul and Vault on the node's address and
// installs the sources overlay: the webhook with --role=webhook, and the
// sources controller as the Deployment of manifests/sources, from the same
// image.
func startSources(t *testing.T) (*consulapi.KV, string, *vaultapi.Client) {
	t.Helper()
	s, err := cp.StartLocalSources(t.Context(), &logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	cc := consulapi.DefaultConfig()
	cc.Address = s.Consul.Addr
	cl, err := consulapi.NewClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Install(t.Context(), cluster.LocalSourcesInstall, webhookDeploy, "podpreset-sources"); err != nil {
		t.Fatal(err)
	}
	installed = cluster.LocalSourcesInstall
	return cl.KV(), s.Consul.Addr, s.VaultClient
}

// TestSourcesReachRunningPods: Consul and Vault values, materialised by
// the sources controller running as a Deployment on the node, reach the
// processes of running containers, and Consul changes reach them without
// a restart.
func TestSourcesReachRunningPods(t *testing.T) {
	kv, consulAddr, vl := startSources(t)
	put := func(k, v string) {
		t.Helper()
		if _, err := kv.Put(&consulapi.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("the orders example", func(t *testing.T) {
		if err := cluster.Seed(t.Context(), filepath.Join(cp.Root, "manifests", "examples", "orders", "seed.sh"), consulAddr, vl.Address(), vl.Token()); err != nil {
			t.Fatal(err)
		}
		// The orders namespace's tenancy.
		applyExample(t, "orders")
		secret, err := vl.KVv2("secret").Get(t.Context(), "orders/db")
		if err != nil {
			t.Fatal(err)
		}
		pod := podOf(t, "orders", map[string]string{"app": "orders"})
		report(t, "orders", pod, "orders", wantEnv(map[string]string{
			"ORDERS_DB_HOST": "orders-db.orders.svc", "LOG_LEVEL": "info", "FEATURE_FLAGS": "express-checkout",
			"ORDERS_DB_PASSWORD": digestOf([]byte(secret.Data["password"].(string))),
		}))
	})

	ns := namespace(t, nil)
	labels := map[string]string{"app": "configured"}
	base := "apps/" + ns + "/"
	put(base+"mode", "blue")
	put(base+"conf/app.yaml", "color: blue\n")
	password := "node-" + ns + "-password"
	if _, err := vl.KVv2("secret").Put(t.Context(), ns+"/db", map[string]any{"password": password}); err != nil {
		t.Fatal(err)
	}
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "configured", Namespace: ns}, Spec: v1alpha1.PodPresetSpec{
		Selector: metav1.LabelSelector{MatchLabels: labels},
		Env: []v1alpha1.EnvVar{
			{Name: "MODE", ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: base + "mode"}}},
			{Name: "DB_PASSWORD", ValueFrom: &v1alpha1.EnvVarSource{Vault: &v1alpha1.VaultKeySelector{Path: "secret/data/" + ns + "/db", Field: "password"}}},
		},
		Volumes: []v1alpha1.Volume{
			{Volume: corev1.Volume{Name: "conf"}, ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: base + "conf/"}},
			{Volume: corev1.Volume{Name: "tls"}, VaultPKI: &v1alpha1.VaultPKISource{Mount: "pki", Role: "web", CommonName: "web." + ns + ".svc", TTL: &metav1.Duration{Duration: time.Hour}}},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "conf", MountPath: "/etc/app"}, {Name: "tls", MountPath: "/etc/tls", ReadOnly: true}},
	}}
	if err := k8s.Create(t.Context(), pp); err != nil {
		t.Fatal(err)
	}
	// The pod waits for the materialised objects: the status says when
	// they are there.
	eventually(t, 60*time.Second, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pp), pp); err != nil {
			return err
		}
		for _, c := range pp.Status.Conditions {
			if c.Type == v1alpha1.ConditionSourcesReady && c.Status == metav1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("sources not ready: %+v", pp.Status)
	})
	waitForPreset(t, ns, labels, "PodPreset/configured@1")
	if err := k8s.Create(t.Context(), reportPod("first", ns, labels)); err != nil {
		t.Fatal(err)
	}
	lines := report(t, ns, "first", "app", func(lines []string) error {
		if !hasLine(lines, "tls /etc/tls ", "verified cn=web."+ns+".svc") {
			return fmt.Errorf("the certificate does not verify in the container:\n%s", strings.Join(lines, "\n"))
		}
		return wantEnv(map[string]string{"MODE": "blue", "DB_PASSWORD": digestOf([]byte(password))})(lines)
	})
	if !hasLine(lines, "file /etc/app/app.yaml ", `text="color: blue\n"`) {
		t.Errorf("the Consul file is not in the container:\n%s", strings.Join(lines, "\n"))
	}
	var first corev1.Pod
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "first"}, &first); err != nil {
		t.Fatal(err)
	}
	containerID := first.Status.ContainerStatuses[0].ContainerID

	// A Consul change reaches the running container's file, without a
	// restart (the kubelet refreshes ConfigMap volumes), and the env of
	// the next pod.
	changed := time.Now()
	put(base+"conf/app.yaml", "color: green\n")
	put(base+"mode", "green")
	report(t, ns, "first", "app", func(lines []string) error {
		if !hasLine(lines, "file /etc/app/app.yaml ", `text="color: green\n"`) {
			return fmt.Errorf("the file in the running container is not updated yet")
		}
		return nil
	})
	t.Logf("a Consul change reached the file in a running container in %s", time.Since(changed).Round(100*time.Millisecond))
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "first"}, &first); err != nil {
		t.Fatal(err)
	}
	if s := first.Status.ContainerStatuses[0]; s.RestartCount != 0 || s.ContainerID != containerID {
		t.Errorf("the container was restarted: %+v", s)
	}
	if err := k8s.Create(t.Context(), reportPod("second", ns, labels)); err != nil {
		t.Fatal(err)
	}
	report(t, ns, "second", "app", wantEnv(map[string]string{"MODE": "green"}))
}
