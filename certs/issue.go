package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// clockSkew backdates certificates so that a server whose clock is a little
// behind still accepts them: a minute, or a tenth of a short lifetime (so
// that the renewal window, a fraction of NotAfter-NotBefore, stays close to
// the lifetime asked for).
const clockSkew = time.Minute

func backdate(now time.Time, lifetime time.Duration) time.Time {
	return now.Add(-min(clockSkew, lifetime/10))
}

// KeyPair is a certificate and its private key, parsed and in PEM.
type KeyPair struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// NewCA creates a self-signed CA valid from now (less the clock skew) for
// lifetime.
func NewCA(now time.Time, lifetime time.Duration) (*KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("podpreset-webhook-ca@%d", now.Unix()), Organization: []string{"podpreset"}},
		NotBefore:             backdate(now, lifetime),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing the CA: %w", err)
	}
	return pair(der, key)
}

// NewLeaf creates a serving certificate for dnsNames and ips, signed by ca,
// valid from now (less the clock skew) for lifetime, but never past the CA's
// own expiry.
func NewLeaf(ca *KeyPair, now time.Time, lifetime time.Duration, dnsNames []string, ips []net.IP) (*KeyPair, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, errors.New("a serving certificate needs at least one DNS name or IP address")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the serving key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	cn := "podpreset-webhook"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"podpreset"}},
		DNSNames:     slices.Clone(dnsNames),
		IPAddresses:  slices.Clone(ips),
		NotBefore:    backdate(now, lifetime),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing the serving certificate: %w", err)
	}
	return pair(der, key)
}

func pair(der []byte, key *ecdsa.PrivateKey) (*KeyPair, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// ParseKeyPair parses a PEM certificate and key.
func ParseKeyPair(certPEM, keyPEM []byte) (*KeyPair, error) {
	tc, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	key, ok := tc.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is a %T, not ECDSA", tc.PrivateKey)
	}
	cert, err := x509.ParseCertificate(tc.Certificate[0])
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// NeedsRenewal says whether a certificate must be replaced at now: when
// less than lookahead (a fraction of its lifetime) is left, or it is not yet
// or no longer valid.
func NeedsRenewal(cert *x509.Certificate, now time.Time, lookahead float64) bool {
	return !now.Before(RenewAt(cert, lookahead)) || now.Before(cert.NotBefore)
}

// RenewAt is when a certificate enters its renewal window.
func RenewAt(cert *x509.Certificate, lookahead float64) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Add(-time.Duration(float64(life) * lookahead))
}

// ParseBundle parses a PEM bundle, skipping blocks that are not certificates
// and certificates that do not parse.
func ParseBundle(bundle []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, bundle = pem.Decode(bundle)
		if block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// Bundle encodes CA certificates as a PEM bundle: each certificate once,
// the ones that expire last first, expired ones (at now) left out.
func Bundle(now time.Time, cas ...*x509.Certificate) []byte {
	var keep []*x509.Certificate
	for _, c := range cas {
		if c == nil || !now.Before(c.NotAfter) {
			continue
		}
		if slices.ContainsFunc(keep, func(k *x509.Certificate) bool { return k.Equal(c) }) {
			continue
		}
		keep = append(keep, c)
	}
	slices.SortStableFunc(keep, func(a, b *x509.Certificate) int { return b.NotAfter.Compare(a.NotAfter) })
	var buf bytes.Buffer
	for _, c := range keep {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// Verify checks that leaf is valid at now for dnsName (empty: any name)
// and chains to one of the CAs in bundle.
func Verify(leaf *x509.Certificate, bundle []byte, now time.Time, dnsName string) error {
	roots := x509.NewCertPool()
	for _, c := range ParseBundle(bundle) {
		roots.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

// SANs returns the DNS names of a Service, as clients in the cluster and
// the API server may use them.
func SANs(service, namespace string) []string {
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}
