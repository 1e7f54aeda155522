package e2e

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/certs"
	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/test/cluster"
)

func putConsul(t *testing.T, key, value string) {
	t.Helper()
	if _, err := consulKV.Put(&consulapi.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatalf("consul put %s: %v", key, err)
	}
}

func putVault(t *testing.T, path string, data map[string]any) {
	t.Helper()
	if _, err := vaultRoot.KVv2("secret").Put(t.Context(), path, data); err != nil {
		t.Fatalf("vault put secret/%s: %v", path, err)
	}
}

// secretValue is a random value that cannot appear anywhere by chance.
func secretValue(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "s3cr3t-" + hex.EncodeToString(b)
}

// configMapData waits until a materialised ConfigMap holds what ok wants.
func configMapData(t *testing.T, ns, name string, timeout time.Duration, ok func(map[string]string) error) map[string]string {
	t.Helper()
	var cm corev1.ConfigMap
	eventually(t, timeout, func() error {
		if err := k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, &cm); err != nil {
			return err
		}
		return ok(cm.Data)
	})
	return cm.Data
}

func secretData(t *testing.T, ns, name string, timeout time.Duration, ok func(map[string][]byte) error) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	eventually(t, timeout, func() error {
		if err := k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
			return err
		}
		return ok(s.Data)
	})
	return &s
}

func hasValue(key, want string) func(map[string]string) error {
	return func(d map[string]string) error {
		if d[key] != want {
			return fmt.Errorf("key %s is %q, want %q", key, d[key], want)
		}
		return nil
	}
}

// sourcesCondition waits for a preset's SourcesReady condition to have the
// status, and returns the preset's status.
func sourcesCondition(t *testing.T, obj client.Object, status metav1.ConditionStatus, timeout time.Duration) *v1alpha1.PodPresetStatus {
	t.Helper()
	var st *v1alpha1.PodPresetStatus
	eventually(t, timeout, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		switch o := obj.(type) {
		case *v1alpha1.PodPreset:
			st = &o.Status
		case *v1alpha1.ClusterPodPreset:
			st = &o.Status
		}
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionSourcesReady)
		if c == nil || c.Status != status {
			return fmt.Errorf("SourcesReady is %+v, want %s", c, status)
		}
		return nil
	})
	return st
}

func consulEnv(name, key string) v1alpha1.EnvVar {
	return v1alpha1.EnvVar{Name: name, ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: key}}}
}

func vaultEnv(name, path, field string) v1alpha1.EnvVar {
	return v1alpha1.EnvVar{Name: name, ValueFrom: &v1alpha1.EnvVarSource{Vault: &v1alpha1.VaultKeySelector{Path: path, Field: field}}}
}

// createSourcesPreset creates a preset and, if the test fails, logs its
// status (which never holds a value).
func createSourcesPreset(t *testing.T, obj client.Object) {
	t.Helper()
	createPreset(t, obj)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return
		}
		b, _ := json.MarshalIndent(obj.(interface{ GetObjectKind() schema.ObjectKind }), "", "  ")
		var v struct {
			Status json.RawMessage `json:"status"`
		}
		_ = json.Unmarshal(b, &v)
		t.Logf("%s status: %s", obj.GetName(), v.Status)
	})
}

// createPod creates a pod and returns it as stored.
func createPod(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	create(t, pod)
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pod), pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

func TestConsulValuesReachPods(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "shop"}
	base := "apps/" + ns + "/"
	putConsul(t, base+"db/host", "db-1.internal")
	putConsul(t, base+"env/LOG_LEVEL", "info")
	putConsul(t, base+"env/feature/new-checkout", "on")
	putConsul(t, base+"conf/app.yaml", "listen: 8080\n")
	putConsul(t, base+"conf/nested/extra.conf", "x=1\n")

	pp := podPreset("shop", ns, labels, consulEnv("DB_HOST", base+"db/host"))
	pp.Spec.EnvFrom = []v1alpha1.EnvFromSource{{ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: base + "env/"}}}
	pp.Spec.Volumes = []v1alpha1.Volume{{Volume: corev1.Volume{Name: "conf"}, ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: base + "conf/"}}}
	pp.Spec.VolumeMounts = []corev1.VolumeMount{{Name: "conf", MountPath: "/etc/shop"}}
	createSourcesPreset(t, pp)

	// The single key, in the preset's ConfigMap.
	configMapData(t, ns, "podpreset-shop", 20*time.Second, hasValue(presets.ConsulDataKey(base+"db/host"), "db-1.internal"))
	// A prefix as env vars: names mapped to C identifiers.
	envObj := presets.EnvFromObjectName("shop", presets.Source{Kind: presets.SourceConsulPrefix, Path: base + "env/"})
	configMapData(t, ns, envObj, 10*time.Second, func(d map[string]string) error {
		if d["LOG_LEVEL"] != "info" || d["feature_new_checkout"] != "on" || len(d) != 2 {
			return fmt.Errorf("env ConfigMap holds %v", d)
		}
		return nil
	})
	// A prefix as files.
	configMapData(t, ns, "podpreset-shop-vol-conf", 10*time.Second, func(d map[string]string) error {
		if d["app.yaml"] != "listen: 8080\n" || d["nested_extra.conf"] != "x=1\n" || len(d) != 2 {
			return fmt.Errorf("files ConfigMap holds %v", d)
		}
		return nil
	})
	sourcesCondition(t, pp, metav1.ConditionTrue, 10*time.Second)
	// kubectl get shows it.
	if out, _, err := cp.Kubectl(t.Context(), nil, "get", "podpresets", "-n", ns); err != nil || !strings.Contains(out, "SOURCES") || !strings.Contains(out, "Materialised") {
		t.Errorf("kubectl get podpresets: %v\n%s", err, out)
	}

	// A new pod gets references to them, not the values.
	waitForPreset(t, ns, labels, "PodPreset/shop@1")
	pod := createPod(t, testPod("web", ns, labels))
	c := pod.Spec.Containers[0]
	if i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "DB_HOST" }); i < 0 || c.Env[i].ValueFrom == nil ||
		c.Env[i].ValueFrom.ConfigMapKeyRef == nil || c.Env[i].ValueFrom.ConfigMapKeyRef.Name != "podpreset-shop" || c.Env[i].Value != "" {
		t.Errorf("DB_HOST in the pod: %+v", c.Env)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != envObj {
		t.Errorf("envFrom in the pod: %+v", c.EnvFrom)
	}
	if i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "conf" }); i < 0 ||
		pod.Spec.Volumes[i].ConfigMap == nil || pod.Spec.Volumes[i].ConfigMap.Name != "podpreset-shop-vol-conf" {
		t.Errorf("volumes in the pod: %+v", pod.Spec.Volumes)
	}

	// A change reaches the ConfigMap within 2 seconds (blocking queries).
	start := time.Now()
	putConsul(t, base+"db/host", "db-2.internal")
	configMapData(t, ns, "podpreset-shop", 2*time.Second, hasValue(presets.ConsulDataKey(base+"db/host"), "db-2.internal"))
	t.Logf("Consul change to ConfigMap: %s", time.Since(start).Round(time.Millisecond))

	// A new key under the prefix appears; a deleted one goes.
	putConsul(t, base+"env/TIMEOUT", "30s")
	if _, err := consulKV.Delete(base+"env/LOG_LEVEL", nil); err != nil {
		t.Fatal(err)
	}
	configMapData(t, ns, envObj, 5*time.Second, func(d map[string]string) error {
		if _, ok := d["LOG_LEVEL"]; ok || d["TIMEOUT"] != "30s" {
			return fmt.Errorf("env ConfigMap holds %v", d)
		}
		return nil
	})

	// An edit to a materialised object is repaired.
	var cm corev1.ConfigMap
	if err := k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "podpreset-shop"}, &cm); err != nil {
		t.Fatal(err)
	}
	cm.Data[presets.ConsulDataKey(base+"db/host")] = "edited-by-hand"
	if err := k8s.Update(t.Context(), &cm); err != nil {
		t.Fatal(err)
	}
	configMapData(t, ns, "podpreset-shop", 5*time.Second, hasValue(presets.ConsulDataKey(base+"db/host"), "db-2.internal"))

	// Deleting the preset deletes what it owns (the garbage collector).
	if err := k8s.Delete(t.Context(), pp); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		err := k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "podpreset-shop"}, &cm)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("ConfigMap podpreset-shop still there (%v)", err)
	})
}

func TestVaultSecretsReachPodsAndNeverLeak(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "pay"}
	password, apiKey, cert := secretValue(t), secretValue(t), secretValue(t)
	putVault(t, ns+"/db", map[string]any{"password": password, "user": "pay"})
	putVault(t, ns+"/api", map[string]any{"API_KEY": apiKey})
	if err := vaultRoot.KVv1("kv1").Put(t.Context(), ns+"/files", map[string]any{"client.pem": cert}); err != nil {
		t.Fatal(err)
	}
	logStart := len(webhookLog.String())

	pp := podPreset("pay", ns, labels, vaultEnv("DB_PASSWORD", "secret/data/"+ns+"/db", "password"))
	pp.Spec.EnvFrom = []v1alpha1.EnvFromSource{{Vault: &v1alpha1.VaultSecretSource{Path: "secret/data/" + ns + "/api"}}}
	pp.Spec.Volumes = []v1alpha1.Volume{{Volume: corev1.Volume{Name: "files"}, Vault: &v1alpha1.VaultSecretSource{Path: "kv1/" + ns + "/files"}}}
	pp.Spec.VolumeMounts = []corev1.VolumeMount{{Name: "files", MountPath: "/etc/pay", ReadOnly: true}}
	createSourcesPreset(t, pp)

	key := presets.VaultDataKey("secret/data/"+ns+"/db", "password")
	secretData(t, ns, "podpreset-pay", 20*time.Second, func(d map[string][]byte) error {
		if string(d[key]) != password {
			return errors.New("the password is not materialised yet")
		}
		return nil
	})
	envObj := presets.EnvFromObjectName("pay", presets.Source{Kind: presets.SourceVault, Path: "secret/data/" + ns + "/api"})
	secretData(t, ns, envObj, 10*time.Second, func(d map[string][]byte) error {
		if string(d["API_KEY"]) != apiKey {
			return errors.New("API_KEY is not materialised yet")
		}
		return nil
	})
	secretData(t, ns, "podpreset-pay-vol-files", 10*time.Second, func(d map[string][]byte) error {
		if string(d["client.pem"]) != cert {
			return errors.New("the KV v1 file is not materialised yet")
		}
		return nil
	})
	st := sourcesCondition(t, pp, metav1.ConditionTrue, 10*time.Second)
	if i := slices.IndexFunc(st.Sources, func(s v1alpha1.SourceStatus) bool { return s.Source == "vault:secret/data/"+ns+"/db" }); i < 0 || st.Sources[i].Version != "1" {
		t.Errorf("status sources: %+v (want KV v2 version 1)", st.Sources)
	}
	// Read again every second, written only when it changes.
	unchanged := secretData(t, ns, "podpreset-pay", time.Second, func(map[string][]byte) error { return nil })
	// Every Vault loop reads once a second; wait until the unchanged reads
	// since now are three times the loops that run (about three reads of
	// each secret), rather than guessing at the pace with a sleep.
	const unchangedReads = `podpreset_source_reads_total{result="unchanged",source="vault"}`
	reads0 := counters(t)[unchangedReads]
	eventually(t, 30*time.Second, func() error {
		c := counters(t)
		loops := c[`podpreset_source_watches{source="vault"}`]
		if n := c[unchangedReads] - reads0; loops < 3 || n < 3*loops {
			return fmt.Errorf("%v unchanged Vault reads by %v loops so far", n, loops)
		}
		return nil
	})
	if again := secretData(t, ns, "podpreset-pay", time.Second, func(map[string][]byte) error { return nil }); again.ResourceVersion != unchanged.ResourceVersion {
		t.Errorf("the Secret was rewritten without a change (resourceVersion %s, then %s)", unchanged.ResourceVersion, again.ResourceVersion)
	}

	// The pod gets references, and a sources hash once the status has
	// versions (the webhook's informer brings the status within moments).
	var pod *corev1.Pod
	eventually(t, 10*time.Second, func() error {
		probe := testPod("probe", ns, labels)
		if err := k8s.Create(t.Context(), probe, client.DryRunAll); err != nil {
			return err
		}
		if probe.Annotations[presets.AnnotationSourcesHash] == "" {
			return errors.New("no sources hash yet")
		}
		return nil
	})
	pod = createPod(t, testPod("pay", ns, labels))
	c := pod.Spec.Containers[0]
	if i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "DB_PASSWORD" }); i < 0 || c.Env[i].ValueFrom == nil ||
		c.Env[i].ValueFrom.SecretKeyRef == nil || c.Env[i].ValueFrom.SecretKeyRef.Name != "podpreset-pay" || c.Env[i].ValueFrom.SecretKeyRef.Key != key {
		t.Errorf("DB_PASSWORD in the pod is not a secretKeyRef to podpreset-pay/%s", key)
	}
	if h := pod.Annotations[presets.AnnotationSourcesHash]; len(h) != 32 {
		t.Errorf("%s = %q, want a 32-character hash", presets.AnnotationSourcesHash, h)
	}

	// A new version reaches the Secret on the next refresh (1s here), and
	// moves the hash.
	oldHash := pod.Annotations[presets.AnnotationSourcesHash]
	password2 := secretValue(t)
	putVault(t, ns+"/db", map[string]any{"password": password2, "user": "pay"})
	secretData(t, ns, "podpreset-pay", 10*time.Second, func(d map[string][]byte) error {
		if string(d[key]) != password2 {
			return errors.New("the new password is not materialised yet")
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		probe := testPod("probe", ns, labels)
		if err := k8s.Create(t.Context(), probe, client.DryRunAll); err != nil {
			return err
		}
		if h := probe.Annotations[presets.AnnotationSourcesHash]; h == oldHash || h == "" {
			return fmt.Errorf("the sources hash is still %q", h)
		}
		return nil
	})

	// No value anywhere but in the Secrets: not in the pod (spec and
	// annotations), not in the namespace's events, not in the preset, not
	// in the webhook's log.
	var events corev1.EventList
	if err := k8s.List(t.Context(), &events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pp), pp); err != nil {
		t.Fatal(err)
	}
	places := map[string]any{"the pod": pod, "the namespace's events": events.Items, "the preset": pp}
	for where, obj := range places {
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]string{"password": password, "new password": password2, "API key": apiKey, "KV v1 file": cert} {
			if strings.Contains(string(b), v) {
				t.Errorf("the %s is in %s", name, where)
			}
		}
	}
	logs := webhookLog.String()[logStart:]
	for name, v := range map[string]string{"password": password, "new password": password2, "API key": apiKey, "KV v1 file": cert} {
		if strings.Contains(logs, v) {
			t.Errorf("the %s is in the webhook's log", name)
		}
	}
	if !strings.Contains(logs, "pay") {
		t.Errorf("the webhook logged nothing about the pod: the log check would prove nothing")
	}
}

func TestVaultKubernetesAuthUsesTokenReview(t *testing.T) {
	// The webhook logs in with its service account token when it first
	// reads Vault; Vault checks the token with the control plane's
	// TokenReview API.
	ns := namespace(t, nil)
	putVault(t, ns+"/auth", map[string]any{"token": secretValue(t)})
	pp := podPreset("auth", ns, map[string]string{"app": "auth"}, vaultEnv("TOKEN", "secret/data/"+ns+"/auth", "token"))
	createSourcesPreset(t, pp)
	sourcesCondition(t, pp, metav1.ConditionTrue, 20*time.Second)
	eventually(t, 20*time.Second, func() error {
		if n := counters(t)[`podpreset_vault_logins_total{method="kubernetes",result="ok"}`]; n < 1 {
			return fmt.Errorf("no successful kubernetes login yet (%v)", n)
		}
		return nil
	})
	// The same login with another service account's token is refused, so
	// Vault really asks the API server and checks the binding.
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := serviceAccountToken(t.Context(), cs, cluster.WebhookNamespace, "someone-else")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vaultRoot.Logical().WriteWithContext(t.Context(), "auth/kubernetes/login", map[string]any{"role": "podpreset", "jwt": tok}); err == nil {
		t.Error("vault accepted another service account's token for the podpreset role")
	}
	if _, err := vaultRoot.Logical().WriteWithContext(t.Context(), "auth/kubernetes/login", map[string]any{"role": "podpreset", "jwt": tok[:len(tok)-4] + "AAAA"}); err == nil {
		t.Error("vault accepted a forged token")
	}
	// Tokens live 6s (14s at most) here: by now the webhook has renewed
	// its token, and logged in again when renewal was no longer possible.
	eventually(t, 30*time.Second, func() error {
		c := counters(t)
		if c[`podpreset_vault_token_renewals_total{result="ok"}`] < 1 || c[`podpreset_vault_logins_total{method="kubernetes",result="ok"}`] < 2 {
			return fmt.Errorf("renewals %v, logins %v", c[`podpreset_vault_token_renewals_total{result="ok"}`], c[`podpreset_vault_logins_total{method="kubernetes",result="ok"}`])
		}
		return nil
	})
}

func TestVaultPKICertificates(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "tls"}
	cn := "web." + ns + ".svc"
	pp := podPreset("tls", ns, labels)
	pp.Spec.Volumes = []v1alpha1.Volume{{Volume: corev1.Volume{Name: "tls"}, VaultPKI: &v1alpha1.VaultPKISource{
		Mount: "pki", Role: "web", CommonName: cn, AltNames: []string{"web." + ns + ".svc.cluster.local", "127.0.0.1"}, TTL: &metav1.Duration{Duration: 15 * time.Second}}}}
	issued0 := counters(t)["podpreset_vault_certificates_issued_total"]
	createSourcesPreset(t, pp)
	var first *x509.Certificate
	secretData(t, ns, "podpreset-tls-vol-tls", 20*time.Second, func(d map[string][]byte) error {
		first = parsePEMCert(d["tls.crt"])
		if first == nil || len(d["tls.key"]) == 0 || len(d["ca.crt"]) == 0 {
			return errors.New("no certificate yet")
		}
		return nil
	})
	ca, err := vaultRoot.Logical().ReadWithContext(t.Context(), "pki/cert/ca")
	if err != nil || ca == nil {
		t.Fatalf("reading the Vault CA: %v", err)
	}
	caPEM, _ := ca.Data["certificate"].(string)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatal("the Vault CA does not parse")
	}
	if _, err := first.Verify(x509.VerifyOptions{Roots: roots, DNSName: cn}); err != nil {
		t.Errorf("the certificate does not verify against Vault's PKI CA for %s: %v", cn, err)
	}
	if !slices.Contains(first.DNSNames, "web."+ns+".svc.cluster.local") || len(first.IPAddresses) != 1 || first.IPAddresses[0].String() != "127.0.0.1" {
		t.Errorf("names: DNS %v, IP %v", first.DNSNames, first.IPAddresses)
	}
	// Renewed at two thirds of its 15s lifetime (10s after it was issued:
	// Vault backdates NotBefore by 30s, which must not make it due at
	// once), before it expires.
	firstSeen := time.Now()
	var second *x509.Certificate
	secretData(t, ns, "podpreset-tls-vol-tls", 20*time.Second, func(d map[string][]byte) error {
		second = parsePEMCert(d["tls.crt"])
		if second == nil || second.SerialNumber.Cmp(first.SerialNumber) == 0 {
			return errors.New("not renewed yet")
		}
		return nil
	})
	if !second.NotBefore.Before(first.NotAfter) {
		t.Errorf("the new certificate (from %s) came after the old one expired (%s)", second.NotBefore, first.NotAfter)
	}
	if after := time.Since(firstSeen); after < 5*time.Second {
		t.Errorf("renewed %s after the first certificate appeared: too early for a 15s certificate", after.Round(time.Millisecond))
	}
	if n := counters(t)["podpreset_vault_certificates_issued_total"] - issued0; n > 3 {
		t.Errorf("%v certificates issued for one volume in about 15s", n)
	}
}

func parsePEMCert(b []byte) *x509.Certificate {
	if cs := certs.ParseBundle(b); len(cs) > 0 {
		return cs[0]
	}
	return nil
}

func TestSourcesTenancy(t *testing.T) {
	a, b := namespace(t, nil), namespace(t, map[string]string{"tenant": "b"})
	putVault(t, b+"/db", map[string]any{"password": secretValue(t)})
	pp := podPreset("steal", a, map[string]string{"app": "x"}, vaultEnv("P", "secret/data/"+b+"/db", "password"))
	err := k8s.Create(t.Context(), pp)
	if err == nil {
		t.Fatal("a PodPreset in namespace a reading namespace b's secret was accepted")
	}
	for _, want := range []string{"spec.env[0].valueFrom.vault", "secret/data/" + b + "/db", `"secret/data/` + a + `/*"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the rejection does not name %q: %v", want, err)
		}
	}
	pc := podPreset("steal", a, map[string]string{"app": "x"}, consulEnv("P", "apps/"+b+"/db/host"))
	if err := k8s.Create(t.Context(), pc); err == nil || !strings.Contains(err.Error(), `"apps/`+a+`/"`) {
		t.Errorf("a PodPreset reading another namespace's Consul key: %v", err)
	}
	// A ClusterPodPreset may, as the configuration allows it.
	cpp := &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: "db-" + b}}
	cpp.Spec.NamespaceSelector = metav1.LabelSelector{MatchLabels: map[string]string{"tenant": "b"}}
	cpp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
	cpp.Spec.Env = []v1alpha1.EnvVar{vaultEnv("P", "secret/data/"+b+"/db", "password")}
	createSourcesPreset(t, cpp)
	secretData(t, b, "podpreset-db-"+b, 20*time.Second, func(d map[string][]byte) error {
		if len(d[presets.VaultDataKey("secret/data/"+b+"/db", "password")]) == 0 {
			return errors.New("not materialised yet")
		}
		return nil
	})
	// Only in the namespaces it selects.
	var s corev1.Secret
	secretIn := func(ns string) error {
		return k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "podpreset-db-" + b}, &s)
	}
	if err := secretIn(a); !apierrors.IsNotFound(err) {
		t.Errorf("the ClusterPodPreset's Secret is in namespace a too (%v)", err)
	}
	// A namespace that comes to be selected gets it; one that stops being
	// selected loses it.
	label := func(ns string, labels map[string]string) {
		t.Helper()
		var n corev1.Namespace
		if err := k8s.Get(t.Context(), types.NamespacedName{Name: ns}, &n); err != nil {
			t.Fatal(err)
		}
		n.Labels = labels
		if err := k8s.Update(t.Context(), &n); err != nil {
			t.Fatal(err)
		}
	}
	label(a, map[string]string{"tenant": "b"})
	eventually(t, 10*time.Second, func() error { return secretIn(a) })
	label(a, nil)
	eventually(t, 10*time.Second, func() error {
		if err := secretIn(a); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the Secret is still in namespace a (%v)", err)
		}
		return nil
	})
	// Deleting the ClusterPodPreset deletes what it owns in every
	// namespace (the garbage collector follows the cluster-scoped owner).
	if err := k8s.Delete(t.Context(), cpp); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if err := secretIn(b); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the Secret is still in namespace b (%v)", err)
		}
		return nil
	})
}

// TestSourcesSurviveOutages stops Consul and Vault in turn: pods are still
// admitted with the last materialised values, the status says what is down
// and since when, and it clears when the server is back.
func TestSourcesSurviveOutages(t *testing.T) {
	ns := namespace(t, nil)
	labels := map[string]string{"app": "resilient"}
	base := "apps/" + ns + "/"
	putConsul(t, base+"mode", "normal")
	putVault(t, ns+"/db", map[string]any{"password": secretValue(t)})
	pp := podPreset("res", ns, labels, consulEnv("MODE", base+"mode"), vaultEnv("PASSWORD", "secret/data/"+ns+"/db", "password"))
	createSourcesPreset(t, pp)
	sourcesCondition(t, pp, metav1.ConditionTrue, 20*time.Second)
	waitForPreset(t, ns, labels, "PodPreset/res@1")

	t.Run("consul", func(t *testing.T) {
		// The status keeps whole seconds; Consul fails requests from the
		// moment it is told to stop.
		stoppedAt := time.Now().Truncate(time.Second)
		consulSrv.Halt()
		restarted := false
		t.Cleanup(func() {
			if !restarted {
				_ = consulSrv.Start(context.Background())
			}
		})
		sourcesCondition(t, pp, metav1.ConditionFalse, 20*time.Second)
		// A stopping agent first answers 500 (no leader), then nothing.
		eventually(t, 20*time.Second, func() error {
			if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pp), pp); err != nil {
				return err
			}
			src := sourceStatus(t, &pp.Status, "consul:"+base+"mode")
			if !strings.Contains(src.LastError, "consul unreachable") || src.LastErrorTime == nil || src.LastErrorTime.Time.Before(stoppedAt) {
				return fmt.Errorf("the status says %q since %v, want consul unreachable since the stop at %s", src.LastError, src.LastErrorTime, stoppedAt)
			}
			return nil
		})
		// Pods are admitted, with the references to the last values.
		pod := createPod(t, testPod("during-consul-outage", ns, labels))
		if !strings.Contains(pod.Annotations[presets.AnnotationApplied], "PodPreset/res@1") {
			t.Errorf("a pod created while Consul was down did not get the preset: %v", pod.Annotations)
		}
		configMapData(t, ns, "podpreset-res", time.Second, hasValue(presets.ConsulDataKey(base+"mode"), "normal"))
		// Consul comes back (empty: a dev server) and the key is written
		// again.
		// Not the test's context: Consul outlives the test.
		if err := consulSrv.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		restarted = true
		putConsul(t, base+"mode", "recovered")
		configMapData(t, ns, "podpreset-res", 20*time.Second, hasValue(presets.ConsulDataKey(base+"mode"), "recovered"))
		st := sourcesCondition(t, pp, metav1.ConditionTrue, 20*time.Second)
		if src := sourceStatus(t, st, "consul:"+base+"mode"); src.LastError != "" || src.LastErrorTime != nil {
			t.Errorf("the error did not clear: %+v", src)
		}
	})
	t.Run("webhook restart during a Consul outage", func(t *testing.T) {
		// A new leader that cannot read Consul leaves the materialised
		// values exactly as they are.
		var before corev1.ConfigMap
		if err := k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "podpreset-res"}, &before); err != nil {
			t.Fatal(err)
		}
		consulSrv.Halt()
		consulBack := false
		t.Cleanup(func() {
			if !consulBack {
				_ = consulSrv.Start(context.Background())
			}
		})
		if err := cp.StopWebhook(); err != nil {
			t.Fatal(err)
		}
		logFrom := len(webhookLog.String())
		t.Cleanup(func() {
			if t.Failed() {
				// What the new process did about this preset and its
				// errors (names and versions only: logs hold no value).
				for _, line := range strings.Split(webhookLog.String()[logFrom:], "\n") {
					if strings.Contains(line, ns) || strings.Contains(line, "error") || strings.Contains(line, "slow reconcile") ||
						strings.Contains(line, "throttling") {
						t.Log(line)
					}
				}
			}
		})
		if err := cp.StartWebhook(context.Background(), webhookBin, &webhookLog, webhookArgs...); err != nil {
			t.Fatal(err)
		}
		// The new leader reads the preset's Consul key, fails, and says so
		// in the status: waited for as a condition on this preset's own
		// status (other presets' failed reads say nothing of this one).
		eventually(t, 20*time.Second, func() error {
			if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pp), pp); err != nil {
				return err
			}
			src := sourceStatus(t, &pp.Status, "consul:"+base+"mode")
			c := meta.FindStatusCondition(pp.Status.Conditions, v1alpha1.ConditionSourcesReady)
			if !strings.Contains(src.LastError, "consul unreachable") || c == nil || c.Status != metav1.ConditionFalse {
				return fmt.Errorf("the new leader's status says %q, SourcesReady %+v; want consul unreachable and False", src.LastError, c)
			}
			return nil
		})
		var after corev1.ConfigMap
		if err := k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "podpreset-res"}, &after); err != nil {
			t.Fatal(err)
		}
		if after.ResourceVersion != before.ResourceVersion || !maps.Equal(after.Data, before.Data) {
			t.Errorf("the new leader changed the ConfigMap while Consul was down: %v, then %v", before.Data, after.Data)
		}
		pod := createPod(t, testPod("after-restart", ns, labels))
		if !strings.Contains(pod.Annotations[presets.AnnotationApplied], "PodPreset/res@1") {
			t.Errorf("a pod created after the restart did not get the preset: %v", pod.Annotations)
		}
		if err := consulSrv.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		consulBack = true
		putConsul(t, base+"mode", "after-restart")
		configMapData(t, ns, "podpreset-res", 20*time.Second, hasValue(presets.ConsulDataKey(base+"mode"), "after-restart"))
		sourcesCondition(t, pp, metav1.ConditionTrue, 20*time.Second)
	})
	t.Run("vault", func(t *testing.T) {
		before := secretData(t, ns, "podpreset-res", time.Second, func(map[string][]byte) error { return nil })
		vaultSrv.Stop()
		restarted := false
		t.Cleanup(func() {
			if !restarted {
				_ = restartVault(context.Background())
			}
		})
		st := sourcesCondition(t, pp, metav1.ConditionFalse, 20*time.Second)
		src := sourceStatus(t, st, "vault:secret/data/"+ns+"/db")
		if !strings.Contains(src.LastError, "vault") || src.LastErrorTime == nil {
			t.Errorf("the status says %q since %v, want a Vault error and since when", src.LastError, src.LastErrorTime)
		}
		pod := createPod(t, testPod("during-vault-outage", ns, labels))
		if !strings.Contains(pod.Annotations[presets.AnnotationApplied], "PodPreset/res@1") {
			t.Errorf("a pod created while Vault was down did not get the preset: %v", pod.Annotations)
		}
		after := secretData(t, ns, "podpreset-res", time.Second, func(map[string][]byte) error { return nil })
		if after.ResourceVersion != before.ResourceVersion {
			t.Errorf("the Secret changed while Vault was down (resourceVersion %s, then %s)", before.ResourceVersion, after.ResourceVersion)
		}
		// Vault comes back (empty), is set up again, and the secret is
		// written again: the webhook logs in again and the status clears.
		if err := restartVault(context.Background()); err != nil {
			t.Fatal(err)
		}
		restarted = true
		putVault(t, ns+"/db", map[string]any{"password": secretValue(t)})
		st = sourcesCondition(t, pp, metav1.ConditionTrue, 30*time.Second)
		if src := sourceStatus(t, st, "vault:secret/data/"+ns+"/db"); src.LastError != "" || src.LastErrorTime != nil {
			t.Errorf("the error did not clear: %+v", src)
		}
	})
}

func sourceStatus(t *testing.T, st *v1alpha1.PodPresetStatus, id string) v1alpha1.SourceStatus {
	t.Helper()
	i := slices.IndexFunc(st.Sources, func(s v1alpha1.SourceStatus) bool { return s.Source == id })
	if i < 0 {
		t.Fatalf("no status for %s: %+v", id, st.Sources)
	}
	return st.Sources[i]
}
