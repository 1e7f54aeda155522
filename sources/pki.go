package sources

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// The certificates of vaultPKI volumes.
//
// The canonical copy of each certificate and key lives in the leader's
// memory (certStore), never in a namespace: what the controller writes
// into the namespaces a preset serves is that copy, and a copy that someone
// edited is overwritten with it. Key material is never read back from a
// namespace and trusted: a new leader, whose memory is empty, adopts a
// certificate found in a Secret only when it chains to the CA of the
// preset's PKI mount (read from Vault), its key matches it, its serial is
// the one the preset's status recorded, and it carries the requested names;
// otherwise it asks Vault for a new one. So a tenant who edits the Secret in
// one namespace cannot publish its own certificate and CA to the others.

// retryIssue is how soon a failed issuance is tried again.
const retryIssue = 10 * time.Second

// certKey names the certificate of one vaultPKI volume of one preset.
type certKey struct {
	preset types.NamespacedName
	kind   string
	field  string // the volume's field: spec.volumes[2].vaultPKI
}

// issued is a certificate the controller holds.
type issued struct {
	uid  types.UID // of the preset: a preset deleted and created again starts over
	cert *x509.Certificate
	data map[string][]byte // tls.crt, tls.key, ca.crt
}

// certStore is the canonical certificates, in memory, on the leader.
type certStore struct {
	mu sync.Mutex
	m  map[certKey]*issued
}

func (s *certStore) get(k certKey, uid types.UID) *issued {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.m[k]; c != nil && c.uid == uid {
		return c
	}
	return nil
}

func (s *certStore) put(k certKey, c *issued) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[certKey]*issued{}
	}
	s.m[k] = c
}

// forget drops every certificate of a preset that is gone.
func (s *certStore) forget(preset types.NamespacedName, kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.m {
		if k.preset == preset && k.kind == kind {
			delete(s.m, k)
		}
	}
}

// certificates returns the certificate of every vaultPKI volume that may
// be read, by field: the one in memory while it is valid for the request and
// not due for renewal, or one adopted from a Secret (a new leader), or a new
// one from Vault. It also returns when the next renewal is due.
func (c *Controller) certificates(ctx context.Context, r *reconcileState) (map[string]certResult, time.Duration) {
	out := map[string]certResult{}
	var renewIn time.Duration
	for _, o := range r.plan {
		for _, it := range o.Items {
			if it.Layout != presets.LayoutTLS || len(r.denied[it.Field]) > 0 {
				continue
			}
			res, due := c.certificate(ctx, r, o.Name(r.key.Name), it)
			out[it.Field] = res
			if due > 0 && (renewIn == 0 || due < renewIn) {
				renewIn = due
			}
		}
	}
	return out, renewIn
}

func (c *Controller) certificate(ctx context.Context, r *reconcileState, secret string, it presets.Item) (certResult, time.Duration) {
	key := certKey{preset: r.key, kind: r.obj.PresetKind(), field: it.Field}
	cur := c.certs.get(key, r.obj.GetUID())
	if cur == nil {
		if cur = c.adopt(ctx, r, secret, it); cur != nil {
			c.certs.put(key, cur)
		}
	}
	if cur != nil && matches(cur.cert, it.PKI) {
		if renewAt := renewalTime(cur.cert, it.PKI); r.now.Before(renewAt) {
			return certResult{data: cur.data, version: serial(cur.cert)}, renewAt.Sub(r.now)
		}
	}
	if c.Vault == nil {
		return certResult{err: "Vault is not configured"}, 0
	}
	got, err := c.Vault.Issue(ctx, it.PKI.Mount, it.PKI.Role, PKIRequest{CommonName: it.PKI.CommonName, AltNames: it.PKI.AltNames, TTL: ttlOf(it.PKI)})
	var cert *x509.Certificate
	if err == nil {
		if cert = parseCert(got.CertPEM); cert == nil {
			err = fmt.Errorf("vault PKI %s returned a certificate that does not parse", it.Path)
		}
	}
	if err != nil {
		res := certResult{err: err.Error(), errSince: r.now}
		if cur != nil {
			// Keep serving the old certificate; retry soon.
			res.data, res.version = cur.data, serial(cur.cert)
		}
		return res, retryIssue
	}
	certificatesIssued.Inc()
	data := map[string][]byte{corev1.TLSCertKey: got.CertPEM, corev1.TLSPrivateKeyKey: got.KeyPEM, corev1.ServiceAccountRootCAKey: got.CAPEM}
	c.certs.put(key, &issued{uid: r.obj.GetUID(), cert: cert, data: data})
	return certResult{data: data, version: serial(cert), synced: r.now}, max(renewalTime(cert, it.PKI).Sub(r.now), time.Second)
}

// adopt looks, on a leader that holds no certificate for a volume yet, for
// one already materialised that can be trusted: in a Secret of the preset,
// with the serial the status recorded, chaining to the mount's CA as Vault
// gives it, with a key that matches. Its ca.crt is Vault's, not the
// Secret's. Nil when there is none.
func (c *Controller) adopt(ctx context.Context, r *reconcileState, secret string, it presets.Item) *issued {
	want := ""
	for _, s := range r.obj.PresetStatus().Sources {
		if s.Source == it.ID() {
			want = s.Version
		}
	}
	if want == "" || c.Vault == nil {
		return nil
	}
	var ca []byte
	for _, ns := range r.namespaces {
		var s corev1.Secret
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: secret}, &s); err != nil || !owned(&s, r.obj.GetUID()) {
			continue
		}
		cert := parseCert(s.Data[corev1.TLSCertKey])
		if cert == nil || serial(cert) != want || !matches(cert, it.PKI) {
			continue
		}
		if _, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]); err != nil {
			continue
		}
		if ca == nil {
			var err error
			if ca, err = c.Vault.CA(ctx, it.PKI.Mount); err != nil {
				return nil
			}
		}
		if !chainsTo(cert, ca, r.now) {
			continue
		}
		data := map[string][]byte{corev1.TLSCertKey: s.Data[corev1.TLSCertKey], corev1.TLSPrivateKeyKey: s.Data[corev1.TLSPrivateKeyKey], corev1.ServiceAccountRootCAKey: ca}
		return &issued{uid: r.obj.GetUID(), cert: cert, data: data}
	}
	return nil
}

// chainsTo says whether a certificate verifies against a PEM CA chain.
func chainsTo(cert *x509.Certificate, caPEM []byte, now time.Time) bool {
	cas, err := certutil.ParseCertsPEM(caPEM)
	if err != nil {
		return false
	}
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// renewalTime is when two thirds of a certificate's lifetime have passed.
// Vault PKI backdates NotBefore (30 seconds by default) against clock skew,
// so the lifetime is the requested TTL when it is shorter than what the
// certificate says, and the renewal is counted back from NotAfter: a 15s
// certificate is renewed 10s after it was issued, not at once.
func renewalTime(c *x509.Certificate, k *v1alpha1.VaultPKISource) time.Time {
	lifetime := c.NotAfter.Sub(c.NotBefore)
	if ttl := ttlOf(k); ttl > 0 && ttl < lifetime {
		lifetime = ttl
	}
	return c.NotAfter.Add(-lifetime / 3)
}

func ttlOf(k *v1alpha1.VaultPKISource) time.Duration {
	if k.TTL == nil {
		return 0
	}
	return k.TTL.Duration
}

// parseCert is the first certificate of a PEM file, or nil.
func parseCert(b []byte) *x509.Certificate {
	if cs, err := certutil.ParseCertsPEM(b); err == nil && len(cs) > 0 {
		return cs[0]
	}
	return nil
}

func serial(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// matches says whether a certificate carries the names a request asks for.
func matches(c *x509.Certificate, k *v1alpha1.VaultPKISource) bool {
	if c.Subject.CommonName != k.CommonName {
		return false
	}
	for _, n := range k.AltNames {
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(c.DNSNames, n) {
			return false
		}
	}
	return true
}
