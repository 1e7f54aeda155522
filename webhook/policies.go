package webhook

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podpreset/podpreset/presets/admissionpolicy"
)

// Admission modes (--admission-mode).
const (
	// ModeWebhook: the pod webhook serves every preset.
	ModeWebhook = "webhook"
	// ModeAuto: presets the compiler can express are served by native
	// MutatingAdmissionPolicies (admissionpolicy), one namespace at a
	// time; the webhook serves the namespaces it cannot.
	ModeAuto = "auto"
)

// retiredInputs marks a policy on its way out: its inputs match no
// replica's, so every replica serves its namespaces again before it is
// deleted (RetireAfter later).
const retiredInputs = "retired"

// annotationRetiredAt is when a policy was retired (RFC 3339).
const annotationRetiredAt = "podpreset.dev/retired-at"

// DefaultRetireAfter is how long a retired policy stays before it is
// deleted: long enough for every replica's cache to see it retired.
const DefaultRetireAfter = 3 * time.Second

var policiesServing = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "podpreset_admission_policies",
	Help: "MutatingAdmissionPolicies the leader keeps in force for presets (--admission-mode=auto).",
})

func init() { metrics.Registry.MustRegister(policiesServing) }

// PolicyController keeps the compiled policies in step with the presets
// (leader only): every namespace whose presets the compiler can express
// gets its policy, written before any replica leaves that namespace's pods
// to it (a replica does once it sees the policy compiled from the presets
// it holds itself: PolicyServing), and a policy no longer wanted is first
// retired, so that every replica serves its namespace again, then deleted.
// Pods are never left with neither: at worst, for a moment, both apply,
// and the second application changes nothing.
//
// Policies are cluster-scoped and the presets they serve are namespaced,
// so they cannot be owned by them (the garbage collector would delete a
// cluster-scoped object whose owner is namespaced): the controller deletes
// them, and everything it writes is labelled app.kubernetes.io/managed-by:
// podpreset. What owns them is the install's MutatingWebhookConfiguration
// (Owner), cluster-scoped like them: uninstalling podpreset (kubectl
// delete -k, helm uninstall) deletes it, and the garbage collector then
// deletes every policy and binding, which would otherwise go on applying
// the presets as they were, with nobody left to keep them in step.
type PolicyController struct {
	Client client.Client
	// Reader reads the policies and bindings, from the cache.
	Reader       client.Reader
	Store        *Store
	OwnNamespace string
	Log          logr.Logger
	// RetireAfter is DefaultRetireAfter when 0.
	RetireAfter time.Duration
	// Resync is how often the policies are checked without a preset
	// change (someone edited one); 30 s when 0.
	Resync time.Duration
	// Owner names the MutatingWebhookConfiguration that owns the policies
	// and bindings (--webhook-config-name), read through Reader. While it
	// does not exist no policy is written and those there are retired
	// (the webhook serves every namespace): an uninstall deletes it first
	// or at the same time as the leader, and a policy written then, or
	// stripped of its owner, would outlive the uninstall.
	Owner string
	// Off (--admission-mode=webhook) removes every policy an earlier
	// auto mode left, once: the webhook serves everything, and a policy
	// left in force would apply presets as they were when it was written.
	Off bool
	// refused holds the refusals last logged, so each is logged once.
	refused map[string]bool
	// ownerless says the last reconcile found no owner, so that it is
	// logged once.
	ownerless bool
}

// NeedLeaderElection is true: one replica writes the policies.
func (c *PolicyController) NeedLeaderElection() bool { return true }

// Start reconciles on every preset change and every Resync until ctx ends
// (Off: removes the policies and returns).
func (c *PolicyController) Start(ctx context.Context) error {
	if c.Off {
		// One by one: the role grants delete, not deletecollection.
		managed := client.MatchingLabels{admissionpolicy.LabelManagedBy: admissionpolicy.ManagedBy}
		var bindings admissionregistrationv1.MutatingAdmissionPolicyBindingList
		var policies admissionregistrationv1.MutatingAdmissionPolicyList
		var errs []error
		if err := c.Reader.List(ctx, &bindings, managed); err != nil {
			errs = append(errs, err)
		}
		if err := c.Reader.List(ctx, &policies, managed); err != nil {
			errs = append(errs, err)
		}
		for i := range bindings.Items {
			errs = append(errs, client.IgnoreNotFound(c.Client.Delete(ctx, &bindings.Items[i])))
		}
		for i := range policies.Items {
			errs = append(errs, client.IgnoreNotFound(c.Client.Delete(ctx, &policies.Items[i])))
		}
		if err := errors.Join(errs...); err != nil {
			c.Log.Error(err, "removing the admission policies an earlier --admission-mode=auto wrote")
		} else if len(policies.Items) > 0 {
			c.Log.Info("removed the admission policies an earlier --admission-mode=auto wrote", "policies", len(policies.Items))
		}
		return nil
	}
	trigger := make(chan struct{}, 1)
	poke := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	defer c.Store.Subscribe(func([]Key) { poke() })()
	select {
	case <-c.Store.WhenReady():
	case <-ctx.Done():
		return nil
	}
	resync := c.Resync
	if resync <= 0 {
		resync = 30 * time.Second
	}
	tick := time.NewTicker(resync)
	defer tick.Stop()
	for {
		again, err := c.Reconcile(ctx)
		if err != nil && ctx.Err() == nil {
			c.Log.Error(err, "writing admission policies; retrying")
			again = time.Second
		}
		var wait <-chan time.Time
		if again > 0 {
			wait = time.After(again)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-trigger:
		case <-tick.C:
		case <-wait:
		}
	}
}

// Reconcile writes the policies the presets call for and retires or
// deletes the others; it returns when to look again (0: at the next
// change).
func (c *PolicyController) Reconcile(ctx context.Context) (time.Duration, error) {
	all := slices.Collect(maps.Values(c.Store.Presets()))
	exclude := []string{}
	if c.OwnNamespace != "" {
		exclude = append(exclude, c.OwnNamespace)
	}
	desired, refusals := admissionpolicy.PlanServable(all, exclude...)
	c.logRefusals(refusals)
	owner, err := c.owner(ctx)
	if err != nil {
		return 0, err
	}
	if owner == nil && c.Owner != "" {
		desired = nil
	}
	want := map[string]admissionpolicy.Policy{}
	var errs []error
	// The API server compiles a policy's CEL as it stores it (a few
	// hundred ms each on a busy control plane): a few at a time, and one
	// it refuses does not hold up the others.
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, p := range desired {
		want[p.Policy.Name] = p
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.upsert(ctx, p, owner); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("writing %s: %w", p.Policy.Name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	policiesServing.Set(float64(len(desired)))
	var have admissionregistrationv1.MutatingAdmissionPolicyList
	if err := c.Reader.List(ctx, &have, client.MatchingLabels{admissionpolicy.LabelManagedBy: admissionpolicy.ManagedBy}); err != nil {
		return 0, err
	}
	retire := c.RetireAfter
	if retire <= 0 {
		retire = DefaultRetireAfter
	}
	var again time.Duration
	for i := range have.Items {
		pol := &have.Items[i]
		if _, ok := want[pol.Name]; ok {
			continue
		}
		if pol.Annotations[admissionpolicy.AnnotationInputs] != retiredInputs {
			if err := c.setInputs(ctx, pol.Name, retiredInputs, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
				errs = append(errs, err)
			}
			again = retire
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, pol.Annotations[annotationRetiredAt])
		if left := retire - time.Since(at); err == nil && left > 0 {
			again = max(again, left)
			continue
		}
		binding := &admissionregistrationv1.MutatingAdmissionPolicyBinding{}
		binding.Name = pol.Name
		if err := client.IgnoreNotFound(c.Client.Delete(ctx, binding)); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := client.IgnoreNotFound(c.Client.Delete(ctx, pol)); err != nil {
			errs = append(errs, err)
			continue
		}
		c.Log.Info("deleted an admission policy no preset needs", "policy", pol.Name)
	}
	return again, errors.Join(errs...)
}

// owner is the owner reference every policy and binding carries: the
// MutatingWebhookConfiguration named Owner, at its current UID; nil when
// it does not exist (or Owner is empty: then policies have no owner).
func (c *PolicyController) owner(ctx context.Context) ([]metav1.OwnerReference, error) {
	if c.Owner == "" {
		return nil, nil
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	switch err := c.Reader.Get(ctx, types.NamespacedName{Name: c.Owner}, &mwc); {
	case apierrors.IsNotFound(err):
		if !c.ownerless {
			c.Log.Info("the MutatingWebhookConfiguration that owns the admission policies does not exist: no policy is written, those there are retired, and the webhook serves every namespace",
				"mutatingWebhookConfiguration", c.Owner)
		}
		c.ownerless = true
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading MutatingWebhookConfiguration %s, the admission policies' owner: %w", c.Owner, err)
	}
	c.ownerless = false
	return []metav1.OwnerReference{{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(),
		Kind: "MutatingWebhookConfiguration", Name: mwc.Name, UID: mwc.UID}}, nil
}

// upsert writes a policy and then its binding, unless they carry the same
// inputs and owner already.
func (c *PolicyController) upsert(ctx context.Context, p admissionpolicy.Policy, owner []metav1.OwnerReference) error {
	in := p.Policy.Annotations[admissionpolicy.AnnotationInputs]
	var pol admissionregistrationv1.MutatingAdmissionPolicy
	switch err := c.Reader.Get(ctx, types.NamespacedName{Name: p.Policy.Name}, &pol); {
	case apierrors.IsNotFound(err):
		want := p.Policy.DeepCopy()
		want.OwnerReferences = owner
		if err := client.IgnoreAlreadyExists(c.Client.Create(ctx, want)); err != nil {
			return err
		}
		c.Log.Info("wrote an admission policy", "policy", p.Policy.Name)
	case err != nil:
		return err
	case pol.Annotations[admissionpolicy.AnnotationInputs] != in || !sameOwners(pol.OwnerReferences, owner):
		pol.Spec, pol.Labels, pol.Annotations, pol.OwnerReferences = p.Policy.Spec, p.Policy.Labels, p.Policy.Annotations, owner
		if err := c.Client.Update(ctx, &pol); err != nil {
			return err
		}
		c.Log.Info("rewrote an admission policy", "policy", p.Policy.Name)
	}
	var b admissionregistrationv1.MutatingAdmissionPolicyBinding
	switch err := c.Reader.Get(ctx, types.NamespacedName{Name: p.Binding.Name}, &b); {
	case apierrors.IsNotFound(err):
		want := p.Binding.DeepCopy()
		want.OwnerReferences = owner
		return client.IgnoreAlreadyExists(c.Client.Create(ctx, want))
	case err != nil:
		return err
	case b.Annotations[admissionpolicy.AnnotationInputs] != in || !sameOwners(b.OwnerReferences, owner):
		b.Spec, b.Labels, b.Annotations, b.OwnerReferences = p.Binding.Spec, p.Binding.Labels, p.Binding.Annotations, owner
		return c.Client.Update(ctx, &b)
	}
	return nil
}

// sameOwners compares owner references by what identifies the owner.
func sameOwners(a, b []metav1.OwnerReference) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.OwnerReference) bool {
		return x.APIVersion == y.APIVersion && x.Kind == y.Kind && x.Name == y.Name && x.UID == y.UID
	})
}

// setInputs sets the inputs annotation of a policy and its binding, the
// binding first (a replica checks both).
func (c *PolicyController) setInputs(ctx context.Context, name, in, retiredAt string) error {
	ann := map[string]string{admissionpolicy.AnnotationInputs: in, annotationRetiredAt: retiredAt}
	var errs []error
	for _, obj := range []client.Object{&admissionregistrationv1.MutatingAdmissionPolicyBinding{}, &admissionregistrationv1.MutatingAdmissionPolicy{}} {
		obj.SetName(name)
		patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
		obj.SetAnnotations(ann)
		if err := client.IgnoreNotFound(c.Client.Patch(ctx, obj, patch)); err != nil {
			errs = append(errs, err)
		}
	}
	c.Log.Info("retired an admission policy no preset needs", "policy", name)
	return errors.Join(errs...)
}

func (c *PolicyController) logRefusals(refusals []error) {
	seen := map[string]bool{}
	for _, err := range refusals {
		msg := err.Error()
		seen[msg] = true
		if !c.refused[msg] {
			c.Log.Info("a preset stays with the webhook: the compiler cannot express it", "reason", msg)
		}
	}
	c.refused = seen
}

// PolicyServing says whether a namespace's pods are left to a compiled
// policy: the policy and its binding that would serve the namespace exist,
// compiled from the presets this replica holds. The pod webhook defers to
// it only for a pod that shows the policy's work (PodMutator).
type PolicyServing struct {
	// Reader reads policies and bindings from the cache.
	Reader client.Reader
	Store  *Store
}

// Serves says whether pods of namespace ns are left to a policy.
func (s *PolicyServing) Serves(ctx context.Context, ns string) bool {
	l := s.Store.Layout()
	if l == nil {
		return false
	}
	name, in := l.Serving(ns)
	if name == "" || in == "" {
		return false
	}
	var pol admissionregistrationv1.MutatingAdmissionPolicy
	if err := s.Reader.Get(ctx, types.NamespacedName{Name: name}, &pol); err != nil || pol.Annotations[admissionpolicy.AnnotationInputs] != in {
		return false
	}
	var b admissionregistrationv1.MutatingAdmissionPolicyBinding
	if err := s.Reader.Get(ctx, types.NamespacedName{Name: name}, &b); err != nil || b.Annotations[admissionpolicy.AnnotationInputs] != in {
		return false
	}
	return true
}
