package certs

import (
	"crypto/x509"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func mustCA(t *testing.T, now time.Time, life time.Duration) *KeyPair {
	t.Helper()
	ca, err := NewCA(now, life)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestIssuance(t *testing.T) {
	ca := mustCA(t, t0, 365*24*time.Hour)
	if !ca.Cert.IsCA || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 || !ca.Cert.MaxPathLenZero {
		t.Errorf("CA: IsCA %v, key usage %b, MaxPathLenZero %v", ca.Cert.IsCA, ca.Cert.KeyUsage, ca.Cert.MaxPathLenZero)
	}
	if got := ca.Cert.NotAfter.Sub(t0); got != 365*24*time.Hour {
		t.Errorf("CA lifetime %s", got)
	}
	names := SANs("podpreset-webhook-service", "podpreset-system")
	leaf, err := NewLeaf(ca, t0, 90*24*time.Hour, names, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	c := leaf.Cert
	if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("leaf: IsCA %v, key usage %b, ext key usage %v; want a server-auth leaf", c.IsCA, c.KeyUsage, c.ExtKeyUsage)
	}
	wantNames := []string{"podpreset-webhook-service", "podpreset-webhook-service.podpreset-system",
		"podpreset-webhook-service.podpreset-system.svc", "podpreset-webhook-service.podpreset-system.svc.cluster.local"}
	if diff := cmp.Diff(wantNames, c.DNSNames); diff != "" {
		t.Errorf("DNS names (-want +got):\n%s", diff)
	}
	if len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("IP addresses %v", c.IPAddresses)
	}
	if got := c.NotAfter.Sub(t0); got != 90*24*time.Hour {
		t.Errorf("leaf lifetime %s", got)
	}
	if !c.NotBefore.Equal(t0.Add(-clockSkew)) {
		t.Errorf("NotBefore %s, want backdated by %s", c.NotBefore, clockSkew)
	}
	for _, name := range wantNames {
		if err := Verify(c, ca.CertPEM, t0, name); err != nil {
			t.Errorf("does not verify for %s: %v", name, err)
		}
	}
	if err := Verify(c, ca.CertPEM, t0, "evil.example"); err == nil {
		t.Error("verifies for a name it was not issued for")
	}
	other := mustCA(t, t0, time.Hour)
	if err := Verify(c, other.CertPEM, t0, ""); err == nil {
		t.Error("verifies against a CA that did not sign it")
	}
	if _, err := ParseKeyPair(leaf.CertPEM, leaf.KeyPEM); err != nil {
		t.Errorf("the PEM does not parse back: %v", err)
	}
}

func TestLeafNeverOutlivesItsCA(t *testing.T) {
	ca := mustCA(t, t0, 10*24*time.Hour)
	leaf, err := NewLeaf(ca, t0.Add(5*24*time.Hour), 90*24*time.Hour, []string{"x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("leaf NotAfter %s, want the CA's %s", leaf.Cert.NotAfter, ca.Cert.NotAfter)
	}
}

func TestNeedsRenewalAtTheBoundary(t *testing.T) {
	ca := mustCA(t, t0, 100*time.Hour)
	// Lifetime counts from the backdated NotBefore.
	life := ca.Cert.NotAfter.Sub(ca.Cert.NotBefore)
	at := ca.Cert.NotAfter.Add(-time.Duration(float64(life) * 0.2))
	cases := map[string]struct {
		now  time.Time
		want bool
	}{
		"fresh":                 {t0, false},
		"just before lookahead": {at.Add(-time.Nanosecond), false},
		"at lookahead":          {at, true},
		"just after lookahead":  {at.Add(time.Nanosecond), true},
		"expired":               {ca.Cert.NotAfter.Add(time.Second), true},
		"not yet valid":         {ca.Cert.NotBefore.Add(-time.Second), true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := NeedsRenewal(ca.Cert, tc.now, 0.2); got != tc.want {
				t.Errorf("NeedsRenewal at %s = %v, want %v", tc.now, got, tc.want)
			}
		})
	}
}

func TestBundleMergesAndPrunes(t *testing.T) {
	old := mustCA(t, t0, time.Hour)
	cur := mustCA(t, t0, 10*time.Hour)
	next := mustCA(t, t0, 20*time.Hour)
	b := Bundle(t0, old.Cert, cur.Cert, next.Cert, cur.Cert)
	got := ParseBundle(b)
	if len(got) != 3 || !got[0].Equal(next.Cert) || !got[1].Equal(cur.Cert) || !got[2].Equal(old.Cert) {
		t.Errorf("bundle %v, want next, current, old, each once", subjects(got))
	}
	later := ParseBundle(Bundle(t0.Add(2*time.Hour), got...))
	if len(later) != 2 || slices.ContainsFunc(later, old.Cert.Equal) {
		t.Errorf("after the old CA expired the bundle is %v, want it pruned", subjects(later))
	}
	if got := ParseBundle(append([]byte("garbage\n"), b...)); len(got) != 3 {
		t.Errorf("garbage before the bundle broke parsing: %d certificates", len(got))
	}
}

func subjects(cs []*x509.Certificate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Subject.CommonName+"/"+c.NotAfter.String())
	}
	return out
}

// TestRotationKeepsTheOverlap walks a whole CA rotation and checks, at every
// step, the promise that makes it safe: the certificate served is trusted by
// the bundle published before it was served.
func TestRotationKeepsTheOverlap(t *testing.T) {
	cfg := Config{CALifetime: 100 * time.Minute, LeafLifetime: 30 * time.Minute, Lookahead: 0.2,
		Propagation: time.Minute, DNSNames: []string{"svc.ns.svc"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var st state
	var published []byte // what the webhook configurations hold
	var did []string
	seen := map[string]bool{}
	step := func(now time.Time) {
		t.Helper()
		var err error
		st, did, err = cfg.step(st, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range did {
			seen[d] = true
		}
		// The served certificate must verify against the bundle that
		// was published before this step, except on the very first step.
		if published != nil {
			if err := Verify(st.leaf.Cert, published, now, ""); err != nil {
				t.Fatalf("at %s the served certificate is not trusted by the published bundle: %v (did %v)", now.Sub(t0), err, did)
			}
		}
		published = Bundle(now, st.bundle...)
		if st.next != nil && st.nextPublished.IsZero() {
			st.nextPublished = now
		}
		if err := Verify(st.leaf.Cert, published, now, ""); err != nil {
			t.Fatalf("at %s the served certificate is not trusted by the new bundle: %v", now.Sub(t0), err)
		}
	}
	for now := t0; now.Before(t0.Add(300 * time.Minute)); now = now.Add(15 * time.Second) {
		step(now)
	}
	for _, want := range []string{"created a CA", "issued a serving certificate", "created the next CA", "promoted the next CA", "pruned expired CAs from the bundle"} {
		if !seen[want] {
			t.Errorf("in 300 minutes the rotator never %s", want)
		}
	}
}

func TestPromotionWaitsForPropagation(t *testing.T) {
	cfg := Config{CALifetime: 100 * time.Minute, LeafLifetime: 30 * time.Minute, Lookahead: 0.2,
		Propagation: time.Minute, DNSNames: []string{"x"}}
	st, _, err := cfg.step(state{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	renew := RenewAt(st.ca.Cert, cfg.Lookahead)
	st, did, _ := cfg.step(st, renew)
	if st.next == nil || !slices.Contains(did, "created the next CA") {
		t.Fatalf("at the CA's renewal time: did %v, next %v", did, st.next)
	}
	first := st.ca
	// Not yet published: no promotion however long we wait.
	st, _, _ = cfg.step(st, renew.Add(5*time.Minute))
	if !st.ca.Cert.Equal(first.Cert) {
		t.Fatal("promoted a CA that was never published")
	}
	st.nextPublished = renew.Add(5 * time.Minute)
	st, _, _ = cfg.step(st, st.nextPublished.Add(cfg.Propagation-time.Second))
	if !st.ca.Cert.Equal(first.Cert) {
		t.Fatal("promoted before the propagation delay")
	}
	st, did, _ = cfg.step(st, st.nextPublished.Add(cfg.Propagation))
	if st.ca.Cert.Equal(first.Cert) || !slices.Contains(did, "promoted the next CA") {
		t.Fatalf("not promoted after the propagation delay: did %v", did)
	}
	if st.leaf.Cert.CheckSignatureFrom(st.ca.Cert) != nil {
		t.Error("the serving certificate is not signed by the promoted CA")
	}
	if !slices.ContainsFunc(st.bundle, first.Cert.Equal) {
		t.Error("the old CA left the bundle before it expired")
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.DNSNames = []string{"x"}
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := good
	bad.LeafLifetime = 2 * good.CALifetime
	if bad.Validate() == nil {
		t.Error("a serving certificate longer-lived than its CA was accepted")
	}
	bad = good
	bad.Lookahead = 0.7
	if bad.Validate() == nil {
		t.Error("lookahead 0.7 was accepted")
	}
}

func TestShortLifetimesAreNotBornInTheirRenewalWindow(t *testing.T) {
	ca := mustCA(t, t0, time.Minute)
	leaf, err := NewLeaf(ca, t0, 8*time.Second, []string{"x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if NeedsRenewal(leaf.Cert, t0, 0.25) {
		t.Errorf("an 8s certificate needs renewal the moment it is issued (NotBefore %s)", leaf.Cert.NotBefore)
	}
	if !NeedsRenewal(leaf.Cert, t0.Add(7*time.Second), 0.25) {
		t.Error("an 8s certificate does not need renewal 1s before it expires")
	}
}
