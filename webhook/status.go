package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// FieldManager is the server-side apply manager of the status fields the
// webhook's leader owns: observedGeneration and the Accepted condition.
const FieldManager = "podpreset-webhook"

// maxConditionMessage is the longest condition message written.
const maxConditionMessage = 4096

// StatusController reports in each preset's status whether the webhook
// applies it: the Accepted condition, False with the reason (Invalid,
// SourceForbidden, PolicyViolation) and every problem when the index holds
// it refused. It runs on the leader; the verdict is the store's, so it
// follows policy and namespace changes too.
type StatusController struct {
	Client client.Client
	Store  *Store
}

// SetupWithManager registers the controller.
func (c *StatusController) SetupWithManager(mgr manager.Manager) error {
	changes := source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		c.Store.setOnChange(func(k Key) { q.Add(reconcile.Request{NamespacedName: k.NamespacedName}) })
		go func() { <-ctx.Done(); c.Store.setOnChange(nil) }()
		return nil
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("preset-status").
		Watches(&v1alpha1.PodPreset{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.ClusterPodPreset{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(changes).
		Complete(c)
}

// Reconcile writes one preset's Accepted condition when it changed.
func (c *StatusController) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var obj v1alpha1.Object = &v1alpha1.PodPreset{}
	if req.Namespace == "" {
		obj = &v1alpha1.ClusterPodPreset{}
	}
	if err := c.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	_, errs := presets.Load(obj, c.Store.Checks()...)
	cond := metav1.Condition{Type: v1alpha1.ConditionAccepted, ObservedGeneration: obj.GetGeneration(),
		Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAccepted, Message: "the webhook applies this preset to the pods it selects"}
	if p := c.Store.Get(Key{Kind: obj.PresetKind(), NamespacedName: req.NamespacedName}); p != nil && p.Refused() != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, p.Refused().Reason, p.Refused().Message
	} else if len(errs) > 0 {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonInvalid, errs.ToAggregate().Error()
	}
	cond.Message = presets.Shorten(cond.Message, maxConditionMessage)
	st := obj.PresetStatus()
	if old := meta.FindStatusCondition(st.Conditions, cond.Type); old != nil && st.ObservedGeneration == obj.GetGeneration() &&
		old.Status == cond.Status && old.Reason == cond.Reason && old.Message == cond.Message && old.ObservedGeneration == cond.ObservedGeneration {
		return reconcile.Result{}, nil
	} else if old != nil && old.Status == cond.Status {
		cond.LastTransitionTime = old.LastTransitionTime
	} else {
		cond.LastTransitionTime = metav1.Time{Time: time.Now().Truncate(time.Second)}
	}
	md := map[string]any{"name": obj.GetName()}
	if ns := obj.GetNamespace(); ns != "" {
		md["namespace"] = ns
	}
	body, err := json.Marshal(map[string]any{"apiVersion": v1alpha1.GroupVersion.String(), "kind": obj.PresetKind(), "metadata": md,
		"status": map[string]any{"observedGeneration": obj.GetGeneration(), "conditions": []metav1.Condition{cond}}})
	if err != nil {
		return reconcile.Result{}, err
	}
	if err := c.Client.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return reconcile.Result{}, fmt.Errorf("writing the status of %s %s: %w", obj.PresetKind(), req.NamespacedName, err)
	}
	return reconcile.Result{}, nil
}
