package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/certs"
	"github.com/podpreset/podpreset/test/cluster"
)

// Rotation test limits: the loop stops at whichever comes first.
const (
	rotationLoopTime = 45 * time.Second
	rotationLoopPods = 2500
)

// TestCertificateRotationUnderLoad runs two webhook replicas (one leader)
// with lifetimes of seconds, the pod webhook calling both with
// failurePolicy Fail, and creates pods in a bounded loop while the serving
// certificate is renewed every few seconds and the CA is replaced: no pod
// creation may fail and every pod must receive its preset. Then it checks
// that both replicas, leader or not, serve the Secret's current certificate,
// and that a hand-corrupted caBundle is repaired.
func TestCertificateRotationUnderLoad(t *testing.T) {
	ctx := t.Context()
	var logs cluster.Buffer
	c, k := twoReplicasUnderLoad(t, "rotation", &logs,
		"--ca-lifetime=24s", "--cert-lifetime=8s", "--cert-lookahead=0.25", "--cert-propagation=2s", "--log-format=json")
	ns, labels := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rotation"}}, loadLabels
	secretKey := client.ObjectKey{Namespace: cluster.WebhookNamespace, Name: "podpreset-webhook-certs"}
	servingSerials, caSerials := map[string]bool{}, map[string]bool{}
	observe := func() {
		s := &corev1.Secret{}
		if err := k.Get(ctx, secretKey, s); err != nil {
			return
		}
		if kp, err := certs.ParseKeyPair(s.Data[certs.KeyCert], s.Data[certs.KeyKey]); err == nil {
			servingSerials[kp.Cert.SerialNumber.String()] = true
		}
		if kp, err := certs.ParseKeyPair(s.Data[certs.KeyCACert], s.Data[certs.KeyCAKey]); err == nil {
			caSerials[kp.Cert.SerialNumber.String()] = true
		}
	}
	created, failed, withoutPreset := 0, 0, 0
	var firstErrors []string
	start := time.Now()
	for created+failed < rotationLoopPods && time.Since(start) < rotationLoopTime {
		pod := testPod(fmt.Sprintf("load-%04d", created+failed), ns.Name, labels)
		if err := k.Create(ctx, pod); err != nil {
			failed++
			if len(firstErrors) < 5 {
				firstErrors = append(firstErrors, err.Error())
			}
		} else {
			created++
			if envOf(pod.Spec.Containers[0])["INJECTED"] != "yes" {
				withoutPreset++
			}
		}
		if (created+failed)%20 == 0 {
			observe()
		}
		time.Sleep(10 * time.Millisecond)
	}
	observe()
	t.Logf("rotation under load: %d pods created, %d failed, %d without their preset, in %s; %d serving certificates and %d CAs seen",
		created, failed, withoutPreset, time.Since(start).Round(time.Second), len(servingSerials), len(caSerials))
	if failed > 0 || withoutPreset > 0 {
		t.Errorf("%d pod creations failed and %d pods lacked their preset during rotation; first errors: %v", failed, withoutPreset, firstErrors)
	}
	if len(servingSerials) < 4 || len(caSerials) < 2 {
		t.Errorf("only %d serving certificates and %d CAs in %s: the test did not exercise rotation", len(servingSerials), len(caSerials), rotationLoopTime)
	}
	for _, want := range []string{"certificates: issued a serving certificate", "certificates: created the next CA", "certificates: promoted the next CA", "certificates: serving a new certificate"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %q in the webhook's log", want)
		}
	}

	t.Run("every replica serves the current certificate", func(t *testing.T) {
		eventually(t, 10*time.Second, func() error {
			s := &corev1.Secret{}
			if err := k.Get(ctx, secretKey, s); err != nil {
				return err
			}
			want, err := certs.ParseKeyPair(s.Data[certs.KeyCert], s.Data[certs.KeyKey])
			if err != nil {
				return err
			}
			mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := k.Get(ctx, client.ObjectKey{Name: cluster.WebhookConfigName}, mwc); err != nil {
				return err
			}
			for i := range 2 {
				got, err := servedCertificate(c.ReplicaAddr(i))
				if err != nil {
					return err
				}
				if !got.Equal(want.Cert) {
					return fmt.Errorf("replica %d serves %s, the Secret holds %s", i, got.SerialNumber, want.Cert.SerialNumber)
				}
				if err := certs.Verify(got, mwc.Webhooks[i].ClientConfig.CABundle, time.Now(), "127.0.0.1"); err != nil {
					return fmt.Errorf("replica %d's certificate is not trusted by its webhook's caBundle: %w", i, err)
				}
			}
			return nil
		})
	})

	t.Run("a hand-corrupted caBundle is repaired", func(t *testing.T) {
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := k.Get(ctx, client.ObjectKey{Name: cluster.WebhookConfigName}, mwc); err != nil {
			t.Fatal(err)
		}
		orig := mwc.DeepCopy()
		mwc.Webhooks[0].ClientConfig.CABundle = []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
		if err := k.Patch(ctx, mwc, client.MergeFrom(orig)); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			s := &corev1.Secret{}
			if err := k.Get(ctx, secretKey, s); err != nil {
				return err
			}
			if err := k.Get(ctx, client.ObjectKey{Name: cluster.WebhookConfigName}, mwc); err != nil {
				return err
			}
			if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, s.Data[certs.KeyBundle]) {
				return fmt.Errorf("the caBundle is not repaired yet")
			}
			return nil
		})
	})
	if t.Failed() && os.Getenv("E2E_VERBOSE") != "" {
		t.Log(logs.String())
	}
}

// servedCertificate connects to a webhook replica and returns the
// certificate it serves; it verifies nothing, it only looks.
func servedCertificate(addr string) (*x509.Certificate, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reads the certificate served
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// TestExternalCertificatesAreServedAndReloaded runs the webhook in
// --cert-mode=external, as under cert-manager: it serves the files in
// --cert-dir, picks up new files without a restart, and never writes the
// webhook configurations.
func TestExternalCertificatesAreServedAndReloaded(t *testing.T) {
	ctx := t.Context()
	var logs cluster.Buffer
	c, err := cluster.Start(ctx, cluster.Options{Root: cp.Root, FailurePolicy: admissionregistrationv1.Fail})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	k, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certs.NewCA(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeLeaf := func() *x509.Certificate {
		t.Helper()
		leaf, err := certs.NewLeaf(ca, time.Now(), 30*time.Minute, []string{"webhook.example"}, []net.IP{net.ParseIP("127.0.0.1")})
		if err != nil {
			t.Fatal(err)
		}
		// Write the key first and rename into place, as the kubelet's
		// atomic writer does, so the watcher never sees half a pair.
		for name, data := range map[string][]byte{"tls.key": leaf.KeyPEM, "tls.crt": leaf.CertPEM} {
			tmp := filepath.Join(dir, "."+name)
			if err := os.WriteFile(tmp, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		return leaf.Cert
	}
	first := writeLeaf()
	// What cert-manager's CA injector does.
	var rvs []string
	for _, obj := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		if err := k.Get(ctx, client.ObjectKey{Name: cluster.WebhookConfigName}, obj); err != nil {
			t.Fatal(err)
		}
		orig := obj.DeepCopyObject().(client.Object)
		switch o := obj.(type) {
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			for i := range o.Webhooks {
				o.Webhooks[i].ClientConfig.CABundle = ca.CertPEM
			}
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			for i := range o.Webhooks {
				o.Webhooks[i].ClientConfig.CABundle = ca.CertPEM
			}
		}
		if err := k.Patch(ctx, obj, client.MergeFrom(orig)); err != nil {
			t.Fatal(err)
		}
		rvs = append(rvs, obj.GetResourceVersion())
	}
	if err := c.StartWebhook(ctx, webhookBin, &logs, "--cert-mode=external", "--cert-dir="+dir); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	served, err := servedCertificate(c.ReplicaAddr(0))
	if err != nil || !served.Equal(first) {
		t.Fatalf("served %v (%v), want the certificate in --cert-dir", served, err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "external"}}
	if err := k.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	if err := k.Create(ctx, podPreset("p", ns.Name, labels, env("INJECTED", "yes"))); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitForPresets(ctx); err != nil {
		t.Fatal(err)
	}
	pod := testPod("through-tls", ns.Name, labels)
	if err := k.Create(ctx, pod); err != nil {
		t.Fatalf("the API server could not call the webhook with the external certificate: %v", err)
	}
	if envOf(pod.Spec.Containers[0])["INJECTED"] != "yes" {
		t.Errorf("env %v", pod.Spec.Containers[0].Env)
	}

	second := writeLeaf()
	eventually(t, 20*time.Second, func() error {
		got, err := servedCertificate(c.ReplicaAddr(0))
		if err != nil {
			return err
		}
		if !got.Equal(second) {
			return fmt.Errorf("still serving %s, not the new %s", got.SerialNumber, second.SerialNumber)
		}
		return nil
	})
	after := testPod("after-reload", ns.Name, labels)
	if err := k.Create(ctx, after); err != nil {
		t.Fatalf("after the reload: %v", err)
	}
	for i, obj := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		if err := k.Get(ctx, client.ObjectKey{Name: cluster.WebhookConfigName}, obj); err != nil {
			t.Fatal(err)
		}
		if obj.GetResourceVersion() != rvs[i] {
			t.Errorf("%T was written in external mode", obj)
		}
	}
	var secrets corev1.SecretList
	if err := k.List(ctx, &secrets, client.InNamespace(cluster.WebhookNamespace)); err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 0 {
		t.Errorf("external mode created Secrets: %d", len(secrets.Items))
	}
}

// twoReplicasUnderLoad starts a control plane of its own with two webhook
// replicas (one leader) that the pod webhook calls with failurePolicy Fail,
// started with args, their output to logs, and a namespace whose pods
// labelled app=load get the preset "load" (INJECTED=yes), already in both
// replicas' index.
func twoReplicasUnderLoad(t *testing.T, namespace string, logs *cluster.Buffer, args ...string) (*cluster.Cluster, client.Client) {
	t.Helper()
	ctx := t.Context()
	c, err := cluster.Start(ctx, cluster.Options{Root: cp.Root, Replicas: 2, FailurePolicy: admissionregistrationv1.Fail})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	for i := range 2 {
		if err := c.StartReplica(ctx, i, webhookBin, logs, args...); err != nil {
			t.Fatalf("%v\n%s", err, logs.String())
		}
	}
	k, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	if err := k.Create(ctx, podPreset("load", namespace, loadLabels, env("INJECTED", "yes"))); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitForPresets(ctx); err != nil {
		t.Fatal(err)
	}
	return c, k
}

// loadLabels are the labels of the pods twoReplicasUnderLoad's preset
// selects.
var loadLabels = map[string]string{"app": "load"}
