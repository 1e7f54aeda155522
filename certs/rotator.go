package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podpreset/podpreset/internal/managed"
)

var expiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "podpreset_certificate_expiry_timestamp_seconds",
	Help: "When the certificate expires, as a Unix time: certificate=serving is the one this replica serves, certificate=ca the current CA (on the leader, self-managed mode).",
}, []string{"certificate"})

func init() { metrics.Registry.MustRegister(expiry) }

// Rotator keeps the Secret and the webhook configurations' caBundle up to
// date. It runs on the leader only.
type Rotator struct {
	// Client writes; Cache reads and watches the Secret and the webhook
	// configurations.
	Client client.Client
	Cache  cache.Cache
	// Secret is where the CA and the serving certificate are kept.
	Secret types.NamespacedName
	// Mutating and Validating name the webhook configurations whose every
	// webhook's caBundle is kept equal to the bundle.
	Mutating, Validating string
	Config               Config
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	trigger chan struct{}
}

var _ manager.LeaderElectionRunnable = (*Rotator)(nil)

// NeedLeaderElection is true: one replica rotates.
func (r *Rotator) NeedLeaderElection() bool { return true }

func (r *Rotator) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Start reconciles now, whenever the Secret or a webhook configuration
// changes, and when the next rotation step is due, until ctx ends.
func (r *Rotator) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("certs")
	ctx = logf.IntoContext(ctx, log)
	r.trigger = make(chan struct{}, 1)
	poke := func(any) {
		select {
		case r.trigger <- struct{}{}:
		default:
		}
	}
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    poke,
		UpdateFunc: func(_, o any) { poke(o) },
		DeleteFunc: poke,
	}
	for _, obj := range []client.Object{&corev1.Secret{}, &admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		inf, err := r.Cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	if !r.Cache.WaitForCacheSync(ctx) {
		return ctx.Err()
	}
	backoff := 100 * time.Millisecond
	for {
		next, err := r.Reconcile(ctx)
		wait := time.Until(next)
		if err != nil {
			log.Error(err, "rotating certificates; retrying", "retryIn", backoff.String())
			wait, backoff = backoff, min(2*backoff, 30*time.Second)
		} else {
			backoff = 100 * time.Millisecond
		}
		wait = max(min(wait, 10*time.Minute), 10*time.Millisecond)
		select {
		case <-ctx.Done():
			return nil
		case <-r.trigger:
		case <-time.After(wait):
		}
	}
}

// Reconcile brings the Secret and the webhook configurations to where they
// must be now, and returns when it must run again.
func (r *Rotator) Reconcile(ctx context.Context) (time.Time, error) {
	log := logf.FromContext(ctx)
	now := r.now()
	secret := &corev1.Secret{}
	err := r.Cache.Get(ctx, r.Secret, secret)
	switch {
	case apierrors.IsNotFound(err):
		secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: r.Secret.Name, Namespace: r.Secret.Namespace,
			Labels: managed.Labels()}}
	case err != nil:
		return now, fmt.Errorf("reading Secret %s: %w", r.Secret, err)
	}
	st, did, err := r.Config.step(readState(secret), now)
	if err != nil {
		return now, err
	}
	if err := r.save(ctx, secret, st, now); err != nil {
		return now, err
	}
	for _, d := range did {
		log.Info("certificates: "+d, "secret", r.Secret.String(), "caNotAfter", st.ca.Cert.NotAfter, "servingNotAfter", st.leaf.Cert.NotAfter,
			"servingSerial", st.leaf.Cert.SerialNumber.Text(16))
	}
	expiry.WithLabelValues("ca").Set(float64(st.ca.Cert.NotAfter.Unix()))

	bundle := Bundle(now, st.bundle...)
	published, err := r.publish(ctx, bundle)
	if err != nil {
		return now, err
	}
	if published && st.next != nil && st.nextPublished.IsZero() {
		// The next CA is in every caBundle from now on.
		st.nextPublished = now
		if err := r.save(ctx, secret, st, now); err != nil {
			return now, err
		}
		log.Info("certificates: the next CA is in the caBundle; it signs the serving certificate after the propagation delay",
			"propagation", r.Config.Propagation.String())
	}
	return r.Config.nextEvent(st), nil
}

// save writes the state into the Secret if it changed.
func (r *Rotator) save(ctx context.Context, secret *corev1.Secret, st state, now time.Time) error {
	updated := secret.DeepCopy()
	st.write(updated, now)
	if secret.ResourceVersion != "" && maps.EqualFunc(secret.Data, updated.Data, bytes.Equal) && maps.Equal(secret.Annotations, updated.Annotations) {
		return nil
	}
	var err error
	if secret.ResourceVersion == "" {
		err = r.Client.Create(ctx, updated)
	} else {
		err = r.Client.Update(ctx, updated)
	}
	if err != nil {
		return fmt.Errorf("writing Secret %s: %w", r.Secret, err)
	}
	*secret = *updated
	return nil
}

// publish makes every webhook's caBundle equal to bundle, repairing hand
// edits. It reports whether both configurations now hold it; a configuration
// that does not exist (yet) is not an error.
func (r *Rotator) publish(ctx context.Context, bundle []byte) (bool, error) {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	okM, err := r.publishTo(ctx, mwc, r.Mutating, bundle, func() (out []*admissionregistrationv1.WebhookClientConfig) {
		for i := range mwc.Webhooks {
			out = append(out, &mwc.Webhooks[i].ClientConfig)
		}
		return out
	})
	if err != nil {
		return false, err
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	okV, err := r.publishTo(ctx, vwc, r.Validating, bundle, func() (out []*admissionregistrationv1.WebhookClientConfig) {
		for i := range vwc.Webhooks {
			out = append(out, &vwc.Webhooks[i].ClientConfig)
		}
		return out
	})
	return okM && okV, err
}

// publishTo writes bundle into the client configs of one webhook
// configuration, with an optimistic lock so that a concurrent edit is
// repaired on the next pass rather than overwritten blindly.
func (r *Rotator) publishTo(ctx context.Context, obj client.Object, name string, bundle []byte,
	configs func() []*admissionregistrationv1.WebhookClientConfig) (bool, error) {
	kind := fmt.Sprintf("%T", obj)[len("*v1."):]
	if err := r.Cache.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading %s %s: %w", kind, name, err)
	}
	orig := obj.DeepCopyObject().(client.Object)
	changed := false
	for _, cc := range configs() {
		if !bytes.Equal(cc.CABundle, bundle) {
			cc.CABundle, changed = bundle, true
		}
	}
	if !changed {
		return true, nil
	}
	if err := r.Client.Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return false, fmt.Errorf("writing the caBundle of %s %s: %w", kind, name, err)
	}
	logf.FromContext(ctx).Info("certificates: wrote the caBundle", "kind", kind, "name", name)
	return true, nil
}

// errNoCertificate is the readiness error before a certificate is loaded.
var errNoCertificate = errors.New("no serving certificate loaded yet")
