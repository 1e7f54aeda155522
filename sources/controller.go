package sources

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podpreset/podpreset/internal/managed"
	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Controller materialises the Consul and Vault sources of PodPresets and
// ClusterPodPresets into ConfigMaps and Secrets. Only the leader runs it.
//
// A reconcile reads the preset (presets.Load, with the tenancy check), asks
// the hub for the sources it may read, gets its vaultPKI certificates
// (pki.go), computes what each object should hold (materialise.go, pure),
// writes the objects into every namespace the preset serves and deletes
// those it no longer needs (objects.go), and reports in the status
// (status.go).
type Controller struct {
	// Client reads from the manager's cache (presets, namespaces, and the
	// ConfigMaps and Secrets labelled managed-by podpreset) and writes to
	// the API server; Reader reads the API server directly.
	Client client.Client
	Reader client.Reader
	Hub    *Hub
	// Vault issues vaultPKI certificates; nil when Vault is not configured.
	Vault   Vault
	Tenancy *Tenancy
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	certs   certStore
	written writtenStatuses
}

// reconcileState is what one reconcile of one preset knows.
type reconcileState struct {
	key types.NamespacedName
	obj v1alpha1.Object
	// owner is the owner reference every materialised object carries.
	owner metav1.OwnerReference
	plan  []presets.Object
	// denied maps an item's field to why it may not be read.
	denied     map[string][]string
	namespaces []string
	now        time.Time
}

// SetupWithManager registers the controller, its watches, and the hub's
// loops (leader only, like the controller).
func (c *Controller) SetupWithManager(mgr manager.Manager) error {
	// The hub starts with the controller's sources, before any reconcile,
	// and adds the presets whose sources changed straight to the work queue
	// (which never blocks and folds repeats).
	hub := source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		c.Hub.Start(ctx, func(keys []types.NamespacedName) {
			for _, k := range keys {
				q.Add(reconcile.Request{NamespacedName: k})
			}
		})
		return nil
	})
	byOwner := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		var out []reconcile.Request
		for _, ref := range o.GetOwnerReferences() {
			if ref.APIVersion != v1alpha1.GroupVersion.String() {
				continue
			}
			switch ref.Kind {
			case v1alpha1.KindPodPreset:
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}})
			case v1alpha1.KindClusterPodPreset:
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: ref.Name}})
			}
		}
		return out
	})
	// A namespace that appears or changes labels may be selected by a
	// ClusterPodPreset.
	log := mgr.GetLogger().WithName("sources")
	byNamespace := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, ns client.Object) []reconcile.Request {
		var list v1alpha1.ClusterPodPresetList
		if err := c.Client.List(ctx, &list); err != nil {
			log.Error(err, "listing ClusterPodPresets for a namespace change; they are reconciled at their next resync", "namespace", ns.GetName())
			return nil
		}
		var out []reconcile.Request
		for i := range list.Items {
			if presets.HasSources(&list.Items[i].Spec.PodPresetSpec) {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
			}
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("sources").
		// Reconciles wait on the API server (writes, status): a few run at
		// once, so that a new leader with many presets says promptly what it
		// found of each.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Watches(&v1alpha1.PodPreset{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.ClusterPodPreset{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.ConfigMap{}, byOwner).
		Watches(&corev1.Secret{}, byOwner).
		Watches(&corev1.Namespace{}, byNamespace, builder.WithPredicates(predicate.Or(predicate.LabelChangedPredicate{}, predicate.Funcs{
			UpdateFunc: func(event.UpdateEvent) bool { return false },
		}))).
		WatchesRawSource(hub).
		Complete(c)
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Reconcile materialises one preset's sources in every namespace it serves
// and reports in its status.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	// A reconcile that takes long delays every later change of the same
	// preset: say so, and which step took the time.
	steps := &stepTimer{start: time.Now()}
	defer steps.logIfSlow(ctrl.LoggerFrom(ctx))
	r, err := c.load(ctx, req.NamespacedName)
	if err != nil || r == nil {
		return reconcile.Result{}, err
	}
	spec := r.obj.PresetSpec()
	if !presets.HasSources(spec) {
		c.Hub.Want(r.key, nil)
		c.certs.forget(r.key, r.obj.PresetKind())
		if st := r.obj.PresetStatus(); len(st.Sources) == 0 && len(st.ForeignObjects) == 0 && !hasSourcesCondition(st) {
			return reconcile.Result{}, nil
		}
		// Sources were removed: their objects go, and the status forgets
		// them.
		if err := c.sweep(ctx, r, nil); err != nil {
			return reconcile.Result{}, err
		}
		return reconcile.Result{}, c.writeStatus(ctx, r.obj, sourcesStatus{})
	}
	snaps := c.Hub.Want(r.key, r.readable())
	if r.namespaces, err = c.namespaces(ctx, r.obj); err != nil {
		return reconcile.Result{}, err
	}
	steps.done("load")
	certs, requeue := c.certificates(ctx, r)
	steps.done("certificates")
	desired, states := materialise(materialiseInput{preset: r.key.Name, plan: r.plan, denied: r.denied, snaps: snaps, certs: certs})

	keep := map[string]map[objectKey]bool{}
	var foreign []v1alpha1.ObjectReference
	var writeErrs []error
	for _, ns := range r.namespaces {
		keep[ns] = map[objectKey]bool{}
		for i := range desired {
			d := &desired[i]
			// An object that is not ready is left as it is, and kept.
			keep[ns][d.objectKey] = true
			if d.Data == nil {
				continue
			}
			err := c.upsert(ctx, object(r.owner, ns, d))
			switch {
			case errors.Is(err, errForeign):
				foreign = append(foreign, v1alpha1.ObjectReference{Kind: d.Kind, Namespace: ns, Name: d.Name})
			case err != nil:
				writeErrs = append(writeErrs, err)
				for _, it := range d.Items {
					states[it.ID()].errs = append(states[it.ID()].errs, err.Error())
				}
			}
		}
	}
	steps.done("objects")
	if err := c.sweep(ctx, r, keep); err != nil {
		writeErrs = append(writeErrs, err)
	}
	steps.done("sweep")
	status := nextStatus(r.obj.PresetStatus(), states, foreign, r.obj.GetGeneration(), r.now)
	if err := c.writeStatus(ctx, r.obj, status); err != nil {
		writeErrs = append(writeErrs, err)
	}
	steps.done("status")
	if err := errors.Join(writeErrs...); err != nil {
		return reconcile.Result{}, err
	}
	if requeue == 0 || requeue > statusResync {
		requeue = statusResync
	}
	// A source not read yet (a new leader's first reads) is looked at
	// again shortly, so that the status says what was found within a
	// second or two even if the hub's wake-up is lost.
	if unread(snaps) && requeue > firstReadPoll {
		requeue = firstReadPoll
	}
	return reconcile.Result{RequeueAfter: requeue}, nil
}

// load reads a preset and plans its objects; nil when it is gone (its
// objects go with it: they are owned).
func (c *Controller) load(ctx context.Context, key types.NamespacedName) (*reconcileState, error) {
	var obj v1alpha1.Object = &v1alpha1.PodPreset{}
	if key.Namespace == "" {
		obj = &v1alpha1.ClusterPodPreset{}
	}
	if err := c.Client.Get(ctx, key, obj); err != nil || obj.GetDeletionTimestamp() != nil {
		if err == nil || apierrors.IsNotFound(err) {
			c.Hub.Want(key, nil)
			c.certs.forget(key, obj.PresetKind())
			c.written.forget(key)
			return nil, nil
		}
		return nil, fmt.Errorf("reading %s %s: %w", obj.PresetKind(), key, err)
	}
	r := &reconcileState{key: key, obj: obj, plan: presets.SourcePlan(obj.PresetSpec()), denied: map[string][]string{}, now: c.now(),
		owner: metav1.OwnerReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: obj.PresetKind(), Name: obj.GetName(), UID: obj.GetUID(), Controller: new(true)}}
	// Defence in depth: the validating webhook checks all of this too, but
	// it fails open, and the configuration may have changed.
	_, errs := presets.Load(obj, c.Tenancy)
	for _, o := range r.plan {
		for _, it := range o.Items {
			for _, e := range errs {
				if e.Field == it.Field || hasPathPrefix(e.Field, it.Field) {
					r.denied[it.Field] = append(r.denied[it.Field], e.Error())
				}
			}
		}
	}
	return r, nil
}

// hasPathPrefix says whether a field path lies under another.
func hasPathPrefix(path, prefix string) bool {
	return len(path) > len(prefix) && path[:len(prefix)] == prefix && (path[len(prefix)] == '.' || path[len(prefix)] == '[')
}

// readable lists the distinct sources the hub may read: every one that is
// neither denied nor a certificate (pki.go issues those).
func (r *reconcileState) readable() []presets.Source {
	var out []presets.Source
	for _, o := range r.plan {
		for _, it := range o.Items {
			if it.Kind == presets.SourceVaultPKI || len(r.denied[it.Field]) > 0 ||
				slices.ContainsFunc(out, func(s presets.Source) bool { return s.ID() == it.ID() }) {
				continue
			}
			out = append(out, it.Source)
		}
	}
	return out
}

func hasSourcesCondition(st *v1alpha1.PodPresetStatus) bool {
	return slices.ContainsFunc(st.Conditions, func(c metav1.Condition) bool { return c.Type == v1alpha1.ConditionSourcesReady })
}

// namespaces lists the namespaces a preset serves: its own, or every
// namespace a ClusterPodPreset selects.
func (c *Controller) namespaces(ctx context.Context, obj v1alpha1.Object) ([]string, error) {
	sel := obj.PresetNamespaceSelector()
	if sel == nil {
		return []string{obj.GetNamespace()}, nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, nil // invalid: Load reported it
	}
	var list corev1.NamespaceList
	if err := c.Client.List(ctx, &list, client.MatchingLabelsSelector{Selector: s}); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	var out []string
	for _, ns := range list.Items {
		if ns.DeletionTimestamp != nil || presets.SkipNamespace(presets.Namespace{Name: ns.Name, Labels: ns.Labels}) != "" {
			continue
		}
		out = append(out, ns.Name)
	}
	slices.Sort(out)
	return out, nil
}

// CacheSelector is the label selector the manager's cache must use for
// ConfigMaps and Secrets: only the objects the controller writes.
var CacheSelector = managed.Selector
