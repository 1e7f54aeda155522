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
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podpreset/podpreset/internal/managed"
)

var expiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "podpreset_certificate_expiry_timestamp_seconds",
	Help: "When the certificate expires, as a Unix time: certificate=serving is the one this replica serves, certificate=ca the current CA (on the leader, self-managed mode).",
}, []string{"certificate"})

func init() { metrics.Registry.MustRegister(expiry) }

// Rotator keeps the Secret and the webhook configurations' caBundle up to
// date: a controller-runtime controller (leader only) with one key, woken
// when the Secret or a webhook configuration changes and requeued for the
// next rotation step, with the controller's backoff on errors.
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
}

// Backoff after a failed rotation step, and the longest wait between two
// steps (so that a clock jump is noticed).
const (
	retryFirst = 100 * time.Millisecond
	retryMost  = 30 * time.Second
	maxWait    = 10 * time.Minute
)

func (r *Rotator) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// SetupWithManager registers the rotator as a controller: every event on
// the Secret or the webhook configurations (the cache holds only
// podpreset's own) wakes the one key.
func (r *Rotator) SetupWithManager(mgr manager.Manager) error {
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: r.Secret}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("certificates").
		WithOptions(controller.Options{RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](retryFirst, retryMost)}).
		Watches(&corev1.Secret{}, one).
		Watches(&admissionregistrationv1.MutatingWebhookConfiguration{}, one).
		Watches(&admissionregistrationv1.ValidatingWebhookConfiguration{}, one).
		Complete(reconcile.Func(func(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
			next, err := r.Reconcile(logf.IntoContext(ctx, logf.FromContext(ctx).WithName("certs")))
			if err != nil {
				return reconcile.Result{}, fmt.Errorf("rotating certificates: %w", err)
			}
			return reconcile.Result{RequeueAfter: min(max(time.Until(next), 10*time.Millisecond), maxWait)}, nil
		}))
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
	okM, err := r.publishTo(ctx, mwc, "MutatingWebhookConfiguration", r.Mutating, bundle, func() (out []*admissionregistrationv1.WebhookClientConfig) {
		for i := range mwc.Webhooks {
			out = append(out, &mwc.Webhooks[i].ClientConfig)
		}
		return out
	})
	if err != nil {
		return false, err
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	okV, err := r.publishTo(ctx, vwc, "ValidatingWebhookConfiguration", r.Validating, bundle, func() (out []*admissionregistrationv1.WebhookClientConfig) {
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
func (r *Rotator) publishTo(ctx context.Context, obj client.Object, kind, name string, bundle []byte,
	configs func() []*admissionregistrationv1.WebhookClientConfig) (bool, error) {
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
