package certs

import (
	"crypto/x509"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestReadyCheck(t *testing.T) {
	ca := mustCA(t, t0, 10*time.Hour)
	other := mustCA(t, t0, 10*time.Hour)
	leaf, err := NewLeaf(ca, t0, time.Hour, []string{"x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	configs := func(bundle []byte) *fake.ClientBuilder {
		s := runtime.NewScheme()
		_ = clientgoscheme.AddToScheme(s)
		cc := admissionregistrationv1.WebhookClientConfig{CABundle: bundle}
		return fake.NewClientBuilder().WithScheme(s).WithObjects(
			&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "w"},
				Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "pods.podpreset.dev", ClientConfig: cc}}},
			&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "w"},
				Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "presets.podpreset.dev", ClientConfig: cc}}},
		)
	}
	cases := map[string]struct {
		bundle []byte
		leaf   *x509.Certificate
		now    time.Time
		want   string // substring of the error; "" for ready
	}{
		"trusted":                          {bundle: Bundle(t0, ca.Cert), leaf: leaf.Cert, now: t0},
		"trusted by an overlapping bundle": {bundle: Bundle(t0, other.Cert, ca.Cert), leaf: leaf.Cert, now: t0},
		"no certificate yet":               {bundle: Bundle(t0, ca.Cert), now: t0, want: "no serving certificate"},
		"expired":                          {bundle: Bundle(t0, ca.Cert), leaf: leaf.Cert, now: t0.Add(2 * time.Hour), want: "expired"},
		"not in the caBundle":              {bundle: Bundle(t0, other.Cert), leaf: leaf.Cert, now: t0, want: "does not trust"},
		"an empty caBundle":                {leaf: leaf.Cert, now: t0, want: "does not trust"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			check := ReadyCheck(configs(tc.bundle).Build(), "w", "w", func() *x509.Certificate { return tc.leaf }, func() time.Time { return tc.now })
			err := check(httptest.NewRequest("GET", "/readyz", nil))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("not ready: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
