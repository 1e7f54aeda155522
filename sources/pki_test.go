package sources

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podpreset/podpreset/certs"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// pkiVault issues certificates from a test CA, on the controller's clock.
type pkiVault struct {
	t     *testing.T
	ca    *certs.KeyPair
	now   func() time.Time
	calls int
	fail  error
}

func (v *pkiVault) Read(context.Context, string) (*Secret, error) {
	v.t.Error("unexpected Vault KV read")
	return nil, errors.New("no KV here")
}

func (v *pkiVault) Issue(_ context.Context, mount, role string, req PKIRequest) (*Certificate, error) {
	v.calls++
	if v.fail != nil {
		return nil, v.fail
	}
	if mount != "pki" || role != "web" {
		v.t.Errorf("issued from %s/issue/%s", mount, role)
	}
	leaf, err := certs.NewLeaf(v.ca, v.now(), req.TTL, append([]string{req.CommonName}, req.AltNames...), nil)
	if err != nil {
		return nil, err
	}
	leaf.Cert.Subject.CommonName = req.CommonName
	return &Certificate{CertPEM: leaf.CertPEM, KeyPEM: leaf.KeyPEM, CAPEM: v.ca.CertPEM}, nil
}

func (v *pkiVault) CA(_ context.Context, mount string) ([]byte, error) {
	if mount != "pki" {
		v.t.Errorf("CA of %s", mount)
	}
	return v.ca.CertPEM, nil
}

func TestControllerIssuesRenewsAndKeepsCertificates(t *testing.T) {
	pp := &v1alpha1.PodPreset{
		ObjectMeta: metav1.ObjectMeta{Name: "tls", Namespace: "shop", UID: "uid-tls", Generation: 1},
		Spec: v1alpha1.PodPresetSpec{Volumes: []v1alpha1.Volume{{Volume: corev1.Volume{Name: "cert"}, VaultPKI: &v1alpha1.VaultPKISource{
			Mount: "pki", Role: "web", CommonName: "web.shop.svc", AltNames: []string{"web"}, TTL: &metav1.Duration{Duration: 3 * time.Hour}}}}},
	}
	f := newControllerFixture(t, pp)
	clock := time.Now()
	f.c.Now = func() time.Time { return clock }
	ca, err := certs.NewCA(clock.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	vault := &pkiVault{t: t, ca: ca, now: f.c.Now}
	f.c.Vault = vault
	key := types.NamespacedName{Namespace: "shop", Name: "tls"}
	reconcileAt := func(at time.Time) reconcile.Result {
		t.Helper()
		clock = at
		res, err := f.c.Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	served := func() *x509.Certificate {
		t.Helper()
		var s corev1.Secret
		if err := f.cl.Get(context.Background(), types.NamespacedName{Namespace: "shop", Name: "podpreset-tls-vol-cert"}, &s); err != nil {
			t.Fatal(err)
		}
		if s.Type != corev1.SecretTypeTLS || len(s.Data["tls.key"]) == 0 || len(s.Data["ca.crt"]) == 0 {
			t.Fatalf("Secret type %s with keys %v", s.Type, dataKeys(&s))
		}
		return parseCert(s.Data["tls.crt"])
	}
	t0 := clock
	res := reconcileAt(t0)
	first := served()
	if vault.calls != 1 || first == nil || !slices.Contains(first.DNSNames, "web") {
		t.Fatalf("%d calls, certificate %v", vault.calls, first)
	}
	// Requeued no later than the renewal at two thirds of the lifetime
	// (here 2h; the status resync, 10m, comes first).
	if res.RequeueAfter <= 0 || res.RequeueAfter > statusResync {
		t.Errorf("requeued after %s, want at most %s", res.RequeueAfter, statusResync)
	}
	// Before then, the certificate is kept.
	reconcileAt(t0.Add(time.Hour))
	if vault.calls != 1 || served().SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("reissued before the renewal time (%d calls)", vault.calls)
	}
	// After two thirds, renewed.
	reconcileAt(t0.Add(2*time.Hour + time.Minute))
	second := served()
	if vault.calls != 2 || second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Errorf("not renewed after two thirds (%d calls)", vault.calls)
	}
	// Vault down at the next renewal: the certificate stays, the status
	// says why, and the retry comes soon.
	vault.fail = errors.New("vault unreachable: connection refused")
	res = reconcileAt(t0.Add(4*time.Hour + 5*time.Minute))
	if vault.calls != 3 || served().SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Errorf("the certificate changed while Vault was down (%d calls)", vault.calls)
	}
	if res.RequeueAfter > 10*time.Second {
		t.Errorf("retry after %s", res.RequeueAfter)
	}
	st := f.status(t, key)
	if len(st.Sources) != 1 || st.Sources[0].Source != "vault-pki:pki/issue/web" || !strings.Contains(st.Sources[0].LastError, "unreachable") {
		t.Errorf("status %+v", st.Sources)
	}
	// A new common name in the spec means a new certificate at once.
	vault.fail = nil
	var cur v1alpha1.PodPreset
	if err := f.cl.Get(context.Background(), key, &cur); err != nil {
		t.Fatal(err)
	}
	cur.Spec.Volumes[0].VaultPKI.CommonName = "api.shop.svc"
	if err := f.cl.Update(context.Background(), &cur); err != nil {
		t.Fatal(err)
	}
	reconcileAt(t0.Add(4*time.Hour + 6*time.Minute))
	if c := served(); c.Subject.CommonName != "api.shop.svc" {
		t.Errorf("common name %q after the spec changed", c.Subject.CommonName)
	}
	// A new leader (nothing in memory) adopts the certificate in the
	// Secret: it chains to the mount's CA, its serial is the status's.
	calls, current := vault.calls, served()
	f.c.certs = certStore{}
	reconcileAt(t0.Add(4*time.Hour + 7*time.Minute))
	if vault.calls != calls || served().SerialNumber.Cmp(current.SerialNumber) != 0 {
		t.Errorf("a new leader reissued a certificate it could verify (%d calls)", vault.calls)
	}
	// A tenant plants a certificate of its own, with the same serial and
	// names, and its own CA: the leader restores its copy.
	plant := func() {
		t.Helper()
		evilCA, err := certs.NewCA(clock.Add(-time.Hour), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		evil, err := certs.NewLeaf(evilCA, clock, time.Hour, []string{"api.shop.svc", "web"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var s corev1.Secret
		if err := f.cl.Get(context.Background(), types.NamespacedName{Namespace: "shop", Name: "podpreset-tls-vol-cert"}, &s); err != nil {
			t.Fatal(err)
		}
		s.Data = map[string][]byte{"tls.crt": evil.CertPEM, "tls.key": evil.KeyPEM, "ca.crt": evilCA.CertPEM}
		if err := f.cl.Update(context.Background(), &s); err != nil {
			t.Fatal(err)
		}
	}
	plant()
	reconcileAt(t0.Add(4*time.Hour + 8*time.Minute))
	if vault.calls != calls || served().SerialNumber.Cmp(current.SerialNumber) != 0 || !chainsTo(served(), ca.CertPEM, clock) {
		t.Errorf("the planted certificate was not replaced with the leader's (%d calls)", vault.calls)
	}
	// Planted while there is no leader: the next one does not adopt it,
	// and asks Vault for a new certificate.
	plant()
	f.c.certs = certStore{}
	reconcileAt(t0.Add(4*time.Hour + 9*time.Minute))
	if got := served(); vault.calls != calls+1 || !chainsTo(got, ca.CertPEM, clock) {
		t.Errorf("a new leader served a certificate that does not chain to Vault's CA (%d calls)", vault.calls)
	}
}

func TestRenewalTimeAllowsForBackdating(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	ttl := func(d time.Duration) *v1alpha1.VaultPKISource {
		return &v1alpha1.VaultPKISource{TTL: &metav1.Duration{Duration: d}}
	}
	for name, tc := range map[string]struct {
		notBefore, notAfter time.Time
		req                 *v1alpha1.VaultPKISource
		want                time.Time
	}{
		// Vault backdates NotBefore by 30s: a 15s certificate is renewed
		// 10s after it was issued, not at once.
		"short TTL, backdated": {now.Add(-30 * time.Second), now.Add(15 * time.Second), ttl(15 * time.Second), now.Add(10 * time.Second)},
		// The role capped 72h at 24h: two thirds of what was issued.
		"TTL capped by the role": {now.Add(-30 * time.Second), now.Add(24 * time.Hour), ttl(72 * time.Hour), now.Add(16*time.Hour - 10*time.Second)},
		"the role's default TTL": {now, now.Add(3 * time.Hour), &v1alpha1.VaultPKISource{}, now.Add(2 * time.Hour)},
	} {
		t.Run(name, func(t *testing.T) {
			c := &x509.Certificate{NotBefore: tc.notBefore, NotAfter: tc.notAfter}
			if got := renewalTime(c, tc.req); !got.Equal(tc.want) {
				t.Errorf("renewal at %s, want %s", got, tc.want)
			}
		})
	}
}
