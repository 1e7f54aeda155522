package e2e

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/certs"
	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/test/cluster"
)

// vaultCA is the PEM of the e2e Vault's PKI CA.
func vaultCA(t *testing.T) *x509.CertPool {
	t.Helper()
	ca, err := vaultRoot.Logical().ReadWithContext(t.Context(), "pki/cert/ca")
	if err != nil || ca == nil {
		t.Fatalf("reading the Vault CA: %v", err)
	}
	pool := x509.NewCertPool()
	if pem, _ := ca.Data["certificate"].(string); !pool.AppendCertsFromPEM([]byte(pem)) {
		t.Fatal("the Vault CA does not parse")
	}
	return pool
}

// plant replaces a materialised certificate Secret's data with a
// certificate and CA of the tenant's own, for the same names, as a tenant
// with edit on the namespace can.
func plant(t *testing.T, ns, name, cn string) {
	t.Helper()
	evilCA, err := certs.NewCA(time.Now().Add(-time.Minute), 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	evil, err := certs.NewLeaf(evilCA, time.Now(), 10*365*24*time.Hour, []string{cn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		var s corev1.Secret
		if err := k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
			return err
		}
		s.Data = map[string][]byte{"tls.crt": evil.CertPEM, "tls.key": evil.KeyPEM, "ca.crt": evilCA.CertPEM}
		return k8s.Update(t.Context(), &s)
	})
}

// TestMaterialisedObjectsStayAuthentic: what the sources controller
// writes into a namespace is repaired when a tenant edits it, never copied
// from a tenant's namespace into another, and never taken from an object
// a tenant created under its name.
func TestMaterialisedObjectsStayAuthentic(t *testing.T) {
	t.Run("a ClusterPodPreset's certificate", func(t *testing.T) {
		sel := "e2e-pki-" + rand.String(5)
		a, b := namespace(t, map[string]string{sel: "yes"}), namespace(t, map[string]string{sel: "yes"})
		cpp := &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: sel}}
		cpp.Spec.NamespaceSelector = metav1.LabelSelector{MatchLabels: map[string]string{sel: "yes"}}
		cpp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "tls"}}
		cn := "web.shared.svc"
		cpp.Spec.Volumes = []v1alpha1.Volume{{Volume: corev1.Volume{Name: "tls"}, VaultPKI: &v1alpha1.VaultPKISource{
			Mount: "pki", Role: "web", CommonName: cn, TTL: &metav1.Duration{Duration: time.Hour}}}}
		createSourcesPreset(t, cpp)
		secret := presets.VolumeObjectName(cpp.Name, "tls")
		roots := vaultCA(t)
		issued := func(ns string) *corev1.Secret {
			t.Helper()
			return secretData(t, ns, secret, 30*time.Second, func(d map[string][]byte) error {
				c := parsePEMCert(d["tls.crt"])
				if c == nil {
					return errors.New("no certificate yet")
				}
				if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: cn}); err != nil {
					return fmt.Errorf("the certificate does not verify against Vault's CA: %w", err)
				}
				return nil
			})
		}
		inA, inB := issued(a), issued(b)
		if !bytes.Equal(inA.Data["tls.crt"], inB.Data["tls.crt"]) {
			t.Fatal("the two namespaces hold different certificates")
		}
		sameAsB := func(d map[string][]byte) error {
			if !maps.EqualFunc(d, inB.Data, bytes.Equal) {
				return errors.New("not restored yet")
			}
			return nil
		}
		// The tenant of a plants its own certificate and CA: restored
		// within seconds, and b never sees it.
		plant(t, a, secret, cn)
		secretData(t, a, secret, 10*time.Second, sameAsB)
		if again := issued(b); again.ResourceVersion != inB.ResourceVersion {
			t.Errorf("namespace b's Secret was rewritten (resourceVersion %s, then %s)", inB.ResourceVersion, again.ResourceVersion)
		}
		// Planted while no leader runs: the next leader verifies what it
		// finds, never adopts the tenant's certificate, and b still never
		// sees it.
		whileWebhookIsDown(t, func() { plant(t, a, secret, cn) })
		got := secretData(t, a, secret, 30*time.Second, func(d map[string][]byte) error {
			c := parsePEMCert(d["tls.crt"])
			if c == nil {
				return errors.New("no certificate")
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots}); err != nil {
				return fmt.Errorf("still the planted one: %w", err)
			}
			return nil
		})
		// The new leader writes the namespaces one after the other: b gets
		// the same certificate as a, soon.
		secretData(t, b, secret, 10*time.Second, func(d map[string][]byte) error {
			if !bytes.Equal(got.Data["tls.crt"], d["tls.crt"]) || !bytes.Equal(got.Data["ca.crt"], d["ca.crt"]) {
				return errors.New("after the leader changed, a and b hold different certificates")
			}
			return nil
		})
	})

	t.Run("an object of the same name that a tenant created first", func(t *testing.T) {
		ns := namespace(t, nil)
		labels := map[string]string{"app": "squat"}
		putConsul(t, "apps/"+ns+"/db/host", "real-db")
		squat := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: presets.ValuesObjectName("squat"), Namespace: ns},
			Data: map[string]string{presets.ConsulDataKey("apps/" + ns + "/db/host"): "attacker-db"}}
		create(t, squat)
		pp := podPreset("squat", ns, labels, consulEnv("DB_HOST", "apps/"+ns+"/db/host"), env("PLAIN", "1"))
		createSourcesPreset(t, pp)
		want := v1alpha1.ObjectReference{Kind: "ConfigMap", Namespace: ns, Name: squat.Name}
		eventually(t, 20*time.Second, func() error {
			if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pp), pp); err != nil {
				return err
			}
			if !slices.Contains(pp.Status.ForeignObjects, want) {
				return fmt.Errorf("foreignObjects %+v", pp.Status.ForeignObjects)
			}
			return nil
		})
		condition(t, pp, v1alpha1.ConditionSourcesReady, metav1.ConditionFalse, "SourceError", "ConfigMap "+ns+"/"+squat.Name+" exists and is not this preset's")
		// The webhook (its informer brings the status within moments)
		// leaves out the entry that would read the tenant's object.
		var w []string
		var pod *corev1.Pod
		eventually(t, 10*time.Second, func() error {
			pod = testPod("squatted-"+rand.String(4), ns, labels)
			w = createWithWarnings(t, pod)
			if !slices.ContainsFunc(w, func(s string) bool {
				return strings.Contains(s, "env[name=DB_HOST]: left out: ConfigMap "+ns+"/"+squat.Name+" exists but is not this preset's")
			}) {
				return fmt.Errorf("warnings %q", w)
			}
			return nil
		})
		if got := envOf(pod.Spec.Containers[0]); got["PLAIN"] != "1" {
			t.Errorf("the rest of the preset was not applied: %v", got)
		}
		for _, e := range pod.Spec.Containers[0].Env {
			if e.Name == "DB_HOST" {
				t.Errorf("the pod refers to the tenant's object: %+v", e)
			}
		}
		var cm corev1.ConfigMap
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(squat), &cm); err != nil || !maps.Equal(cm.Data, squat.Data) || len(cm.OwnerReferences) != 0 {
			t.Errorf("the tenant's object was touched: %v %v", cm.Data, err)
		}
	})

	t.Run("in the webhook's own namespace, repaired and swept", func(t *testing.T) {
		// The webhook's cache must hold the Secrets materialised in its own
		// namespace, not only its certificate: else an edit there would
		// never be repaired, nor a stale Secret deleted.
		name := "e2e-own-" + rand.String(5)
		key := "shared/" + name + "/token"
		value := secretValue(t)
		putConsul(t, key, value)
		cpp := &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: name}}
		cpp.Spec.NamespaceSelector = metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: cluster.WebhookNamespace}}
		cpp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
		cpp.Spec.Env = []v1alpha1.EnvVar{{Name: "TOKEN", ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: key, Secret: new(true)}}}}
		createSourcesPreset(t, cpp)
		obj := presets.ValuesObjectName(name)
		dataKey := presets.ConsulDataKey(key)
		holds := func(d map[string][]byte) error {
			if string(d[dataKey]) != value {
				return errors.New("not the value")
			}
			return nil
		}
		s := secretData(t, cluster.WebhookNamespace, obj, 20*time.Second, holds)
		s.Data[dataKey] = []byte("edited")
		if err := k8s.Update(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		secretData(t, cluster.WebhookNamespace, obj, 10*time.Second, holds)
		// The preset stops reading Consul: its Secret goes.
		eventually(t, 10*time.Second, func() error {
			if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(cpp), cpp); err != nil {
				return err
			}
			cpp.Spec.Env = []v1alpha1.EnvVar{{Name: "PLAIN", Value: "1"}}
			return k8s.Update(t.Context(), cpp)
		})
		eventually(t, 20*time.Second, func() error {
			var gone corev1.Secret
			if err := k8s.Get(t.Context(), types.NamespacedName{Namespace: cluster.WebhookNamespace, Name: obj}, &gone); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the Secret of a removed source is still there (%v)", err)
			}
			return nil
		})
	})

	t.Run("Consul values in a Secret", func(t *testing.T) {
		ns := namespace(t, nil)
		labels := map[string]string{"app": "sec"}
		value := secretValue(t)
		putConsul(t, "apps/"+ns+"/token", value)
		pp := podPreset("sec", ns, labels, v1alpha1.EnvVar{Name: "TOKEN", ValueFrom: &v1alpha1.EnvVarSource{
			ConsulKV: &v1alpha1.ConsulKeySelector{Key: "apps/" + ns + "/token", Secret: new(true)}}})
		createSourcesPreset(t, pp)
		secretData(t, ns, presets.ValuesObjectName("sec"), 20*time.Second, func(d map[string][]byte) error {
			if string(d[presets.ConsulDataKey("apps/"+ns+"/token")]) != value {
				return errors.New("not materialised yet")
			}
			return nil
		})
		var cm corev1.ConfigMap
		if err := k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: presets.ValuesObjectName("sec")}, &cm); !apierrors.IsNotFound(err) {
			t.Errorf("a ConfigMap holds the value too (%v)", err)
		}
		waitForPreset(t, ns, labels, "PodPreset/sec@1")
		pod := createPod(t, testPod("sec", ns, labels))
		if r := pod.Spec.Containers[0].Env[0].ValueFrom; r == nil || r.SecretKeyRef == nil || r.SecretKeyRef.Name != presets.ValuesObjectName("sec") {
			t.Errorf("TOKEN is %+v, want a secretKeyRef", pod.Spec.Containers[0].Env[0])
		}
	})
}
