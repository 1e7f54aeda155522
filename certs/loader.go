package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Loader serves the certificate the rotator keeps in the Secret: it watches
// the Secret and swaps the certificate in memory when it changes. It runs on
// every replica.
type Loader struct {
	Cache  cache.Cache
	Secret types.NamespacedName

	cert atomic.Pointer[tls.Certificate]
}

var _ manager.LeaderElectionRunnable = (*Loader)(nil)

// NeedLeaderElection is false: every replica serves.
func (l *Loader) NeedLeaderElection() bool { return false }

// GetCertificate is the webhook server's tls.Config.GetCertificate.
func (l *Loader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := l.cert.Load()
	if c == nil {
		return nil, errNoCertificate
	}
	return c, nil
}

// Leaf returns the certificate being served, or nil.
func (l *Loader) Leaf() *x509.Certificate {
	if c := l.cert.Load(); c != nil {
		return c.Leaf
	}
	return nil
}

// Start loads the certificate whenever the Secret changes, until ctx ends.
func (l *Loader) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("certs")
	inf, err := l.Cache.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("watching Secret %s: %w", l.Secret, err)
	}
	load := func(obj any) {
		s, ok := obj.(*corev1.Secret)
		if !ok || s.Namespace != l.Secret.Namespace || s.Name != l.Secret.Name {
			return
		}
		c, err := tls.X509KeyPair(s.Data[KeyCert], s.Data[KeyKey])
		if err != nil {
			log.Error(err, "the Secret holds no usable serving certificate; keeping the current one", "secret", l.Secret.String())
			return
		}
		if old := l.cert.Load(); old != nil && old.Leaf.Equal(c.Leaf) {
			return
		}
		l.cert.Store(&c)
		expiry.WithLabelValues("serving").Set(float64(c.Leaf.NotAfter.Unix()))
		log.Info("certificates: serving a new certificate", "serial", c.Leaf.SerialNumber.Text(16), "notAfter", c.Leaf.NotAfter,
			"issuer", c.Leaf.Issuer.CommonName)
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    load,
		UpdateFunc: func(_, o any) { load(o) },
	}); err != nil {
		return fmt.Errorf("watching Secret %s: %w", l.Secret, err)
	}
	<-ctx.Done()
	return nil
}

// ReadyCheck fails while leaf returns no certificate, an expired one, or one
// that the caBundle of every webhook in the named configurations does not
// trust: the API server could not call this replica.
func ReadyCheck(reader client.Reader, mutating, validating string, leaf func() *x509.Certificate, now func() time.Time) healthz.Checker {
	return func(req *http.Request) error {
		c := leaf()
		if c == nil {
			return errNoCertificate
		}
		t := now()
		if !t.Before(c.NotAfter) {
			return fmt.Errorf("the serving certificate expired at %s", c.NotAfter)
		}
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := reader.Get(req.Context(), client.ObjectKey{Name: mutating}, mwc); err != nil {
			return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", mutating, err)
		}
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := reader.Get(req.Context(), client.ObjectKey{Name: validating}, vwc); err != nil {
			return fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", validating, err)
		}
		bundles := map[string][]byte{}
		for _, w := range mwc.Webhooks {
			bundles[w.Name] = w.ClientConfig.CABundle
		}
		for _, w := range vwc.Webhooks {
			bundles[w.Name] = w.ClientConfig.CABundle
		}
		for name, bundle := range bundles {
			if err := Verify(c, bundle, t, ""); err != nil {
				return fmt.Errorf("webhook %s does not trust the serving certificate yet: %w", name, err)
			}
		}
		return nil
	}
}
