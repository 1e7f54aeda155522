package certs

import (
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Keys of the Secret the rotator keeps.
const (
	KeyCACert     = "ca.crt"
	KeyCAKey      = "ca.key"
	KeyNextCACert = "next-ca.crt"
	KeyNextCAKey  = "next-ca.key"
	KeyBundle     = "ca-bundle.crt"
	// The serving certificate, under the names cert-manager and
	// kubernetes.io/tls Secrets use.
	KeyCert = corev1.TLSCertKey
	KeyKey  = corev1.TLSPrivateKeyKey

	// AnnotationNextPublished records when the next CA reached the webhook
	// configurations' caBundle.
	AnnotationNextPublished = "podpreset.dev/next-ca-published-at"
)

// Config is what the rotator issues and when it rotates.
type Config struct {
	// CALifetime and LeafLifetime are how long new CAs and serving
	// certificates live.
	CALifetime, LeafLifetime time.Duration
	// Lookahead is the fraction of a certificate's lifetime before its
	// expiry at which it is replaced.
	Lookahead float64
	// Propagation is how long the next CA is in the published bundle before
	// a certificate signed by it is served.
	Propagation time.Duration
	// DNSNames and IPs are the serving certificate's subject alternative
	// names.
	DNSNames []string
	IPs      []net.IP
}

// DefaultConfig returns the default lifetimes: CA one year, serving
// certificate 90 days, replaced with 20% of their life left, a new CA in the
// bundle for 2 minutes before it signs anything served.
func DefaultConfig() Config {
	return Config{CALifetime: 365 * 24 * time.Hour, LeafLifetime: 90 * 24 * time.Hour, Lookahead: 0.2, Propagation: 2 * time.Minute}
}

// Validate checks the lifetimes against each other.
func (c Config) Validate() error {
	switch {
	case c.CALifetime <= 0 || c.LeafLifetime <= 0:
		return fmt.Errorf("certificate lifetimes must be positive (CA %s, serving %s)", c.CALifetime, c.LeafLifetime)
	case c.LeafLifetime > c.CALifetime:
		return fmt.Errorf("the serving certificate lifetime %s is longer than the CA's %s", c.LeafLifetime, c.CALifetime)
	case c.Lookahead <= 0 || c.Lookahead >= 0.5:
		return fmt.Errorf("the lookahead %v must be between 0 and 0.5 of a lifetime", c.Lookahead)
	case c.Propagation < 0 || float64(c.Propagation) >= float64(c.CALifetime)*c.Lookahead/2:
		return fmt.Errorf("the propagation delay %s must be shorter than half the CA's renewal window (%s)",
			c.Propagation, time.Duration(float64(c.CALifetime)*c.Lookahead/2))
	case len(c.DNSNames) == 0 && len(c.IPs) == 0:
		return fmt.Errorf("the serving certificate needs at least one DNS name or IP address")
	}
	return nil
}

// state is what the Secret holds.
type state struct {
	ca, next, leaf *KeyPair
	bundle         []*x509.Certificate
	nextPublished  time.Time
}

// readState parses the Secret; a piece that does not parse is absent.
func readState(s *corev1.Secret) state {
	var st state
	if s == nil {
		return st
	}
	d := s.Data
	st.ca, _ = ParseKeyPair(d[KeyCACert], d[KeyCAKey])
	st.next, _ = ParseKeyPair(d[KeyNextCACert], d[KeyNextCAKey])
	st.leaf, _ = ParseKeyPair(d[KeyCert], d[KeyKey])
	st.bundle = ParseBundle(d[KeyBundle])
	if t, err := time.Parse(time.RFC3339Nano, s.Annotations[AnnotationNextPublished]); err == nil {
		st.nextPublished = t
	}
	return st
}

// write stores the state in the Secret.
func (st state) write(s *corev1.Secret, now time.Time) {
	s.Type = corev1.SecretTypeOpaque
	d := map[string][]byte{}
	if st.ca != nil {
		d[KeyCACert], d[KeyCAKey] = st.ca.CertPEM, st.ca.KeyPEM
	}
	if st.next != nil {
		d[KeyNextCACert], d[KeyNextCAKey] = st.next.CertPEM, st.next.KeyPEM
	}
	if st.leaf != nil {
		d[KeyCert], d[KeyKey] = st.leaf.CertPEM, st.leaf.KeyPEM
	}
	d[KeyBundle] = Bundle(now, st.bundle...)
	s.Data = d
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	if st.nextPublished.IsZero() {
		delete(s.Annotations, AnnotationNextPublished)
	} else {
		s.Annotations[AnnotationNextPublished] = st.nextPublished.UTC().Format(time.RFC3339Nano)
	}
}

// step moves the state on at now: bootstrap, renew the serving certificate,
// start a CA rotation, promote the next CA once it has been published for
// Propagation, prune expired CAs. It returns the new state and what it did.
func (c Config) step(st state, now time.Time) (state, []string, error) {
	var did []string
	var err error
	if st.ca == nil || !now.Before(st.ca.Cert.NotAfter) {
		if st.ca, err = NewCA(now, c.CALifetime); err != nil {
			return st, did, err
		}
		st.next, st.nextPublished, st.leaf = nil, time.Time{}, nil
		did = append(did, "created a CA")
	}
	if st.next != nil && !st.nextPublished.IsZero() && !now.Before(st.nextPublished.Add(c.Propagation)) {
		st.ca, st.next, st.nextPublished, st.leaf = st.next, nil, time.Time{}, nil
		did = append(did, "promoted the next CA")
	}
	if st.next == nil && NeedsRenewal(st.ca.Cert, now, c.Lookahead) {
		if st.next, err = NewCA(now, c.CALifetime); err != nil {
			return st, did, err
		}
		st.nextPublished = time.Time{}
		did = append(did, "created the next CA")
	}
	if !c.leafOK(st.leaf, st.ca, now) {
		if st.leaf, err = NewLeaf(st.ca, now, c.LeafLifetime, c.DNSNames, c.IPs); err != nil {
			return st, did, err
		}
		did = append(did, "issued a serving certificate")
	}
	if slices.ContainsFunc(st.bundle, func(c *x509.Certificate) bool { return !now.Before(c.NotAfter) }) {
		did = append(did, "pruned expired CAs from the bundle")
	}
	bundle := append(slices.Clone(st.bundle), st.ca.Cert)
	if st.next != nil {
		bundle = append(bundle, st.next.Cert)
	}
	st.bundle = ParseBundle(Bundle(now, bundle...))
	return st, did, nil
}

// leafOK says whether the serving certificate can stay: signed by the
// current CA, for the configured names, and not in its renewal window.
func (c Config) leafOK(leaf, ca *KeyPair, now time.Time) bool {
	if leaf == nil || leaf.Cert.CheckSignatureFrom(ca.Cert) != nil || NeedsRenewal(leaf.Cert, now, c.Lookahead) {
		return false
	}
	if !slices.Equal(leaf.Cert.DNSNames, c.DNSNames) || len(leaf.Cert.IPAddresses) != len(c.IPs) {
		return false
	}
	for i, ip := range c.IPs {
		if !leaf.Cert.IPAddresses[i].Equal(ip) {
			return false
		}
	}
	return true
}

// nextEvent is when the state must next be looked at, if nothing else
// happens: the serving certificate's or the CA's renewal, the next CA's
// promotion, or a CA's expiry (to prune it).
func (c Config) nextEvent(st state) time.Time {
	var times []time.Time
	if st.leaf != nil {
		times = append(times, RenewAt(st.leaf.Cert, c.Lookahead))
	}
	if st.ca != nil && st.next == nil {
		times = append(times, RenewAt(st.ca.Cert, c.Lookahead))
	}
	if st.next != nil && !st.nextPublished.IsZero() {
		times = append(times, st.nextPublished.Add(c.Propagation))
	}
	for _, ca := range st.bundle {
		times = append(times, ca.NotAfter)
	}
	if len(times) == 0 {
		return time.Time{}
	}
	return slices.MinFunc(times, func(a, b time.Time) int { return a.Compare(b) })
}
