package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
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
// webhook's leader owns: observedGeneration, contentGeneration and
// contentHash, pods, and the Accepted, Ready, PodsStale and PodsMissed
// conditions. The sources controller owns the rest (its own manager).
const FieldManager = "podpreset-webhook"

// maxConditionMessage is the longest condition message written.
const maxConditionMessage = 4096

// missedEventInterval is the least time between two PodsMissed Events of
// one preset: an aggregate, never one per pod.
const missedEventInterval = time.Minute

// PodTally is what the inventory says of a preset's pods.
type PodTally struct {
	Counts v1alpha1.PodCounts
	// Missed and Stale name some of those pods.
	Missed, Stale []types.NamespacedName
}

// PodCounter counts a preset's pods (package inventory); ok is false
// until it has seen every pod.
type PodCounter interface {
	Counts(Key) (PodTally, bool)
}

// StatusController reports in each preset's status whether the webhook
// applies it (the Accepted condition: False with the reason, Invalid,
// SourceForbidden or PolicyViolation, and every problem, when the index
// holds it refused), the generation at which what it injects last changed,
// and with an inventory, how many pods have its current version, an older
// one, or missed it (with the Ready, PodsStale and PodsMissed conditions,
// and an Event when pods are missed). It runs on the leader; the verdict is
// the store's, so it follows policy and namespace changes too.
type StatusController struct {
	Client client.Client
	Store  *Store
	// Counter is the inventory; nil reports no pods.
	Counter PodCounter
	// Recorder records the PodsMissed Events; nil records none.
	Recorder events.EventRecorder

	queue      atomic.Pointer[workqueue.TypedRateLimitingInterface[reconcile.Request]]
	mu         sync.Mutex
	lastMissed map[Key]time.Time
}

// Enqueue asks for the status of these presets to be written again (the
// inventory calls it when their counts change).
func (c *StatusController) Enqueue(keys []Key) {
	if q := c.queue.Load(); q != nil {
		for _, k := range keys {
			(*q).Add(reconcile.Request{NamespacedName: k.NamespacedName})
		}
	}
}

// SetupWithManager registers the controller.
func (c *StatusController) SetupWithManager(mgr manager.Manager) error {
	changes := source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		c.queue.Store(&q)
		cancel := c.Store.Subscribe(c.Enqueue)
		go func() { <-ctx.Done(); cancel(); c.queue.Store(nil) }()
		return nil
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("preset-status").
		Watches(&v1alpha1.PodPreset{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.ClusterPodPreset{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(changes).
		Complete(c)
}

// Reconcile writes one preset's status when it changed.
func (c *StatusController) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var obj v1alpha1.Object = &v1alpha1.PodPreset{}
	if req.Namespace == "" {
		obj = &v1alpha1.ClusterPodPreset{}
	}
	if err := c.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	key := Key{Kind: obj.PresetKind(), NamespacedName: req.NamespacedName}
	st := obj.PresetStatus()
	gen := obj.GetGeneration()
	now := metav1.Time{Time: time.Now().Truncate(time.Second)}
	next := status{ObservedGeneration: gen, ContentGeneration: st.ContentGeneration, ContentHash: presets.ContentHash(obj.PresetSpec())}
	if next.ContentHash != st.ContentHash || st.ContentGeneration == 0 || st.ContentGeneration > gen {
		next.ContentGeneration = gen
	}

	accepted := metav1.Condition{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAccepted,
		Message: "the webhook applies this preset to the pods it selects"}
	if p := c.Store.Get(key); p != nil && p.Refused() != nil {
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse, p.Refused().Reason, p.Refused().Message
	} else if _, errs := presets.Load(obj, c.Store.Checks()...); len(errs) > 0 {
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse, v1alpha1.ReasonInvalid, errs.ToAggregate().Error()
	}
	next.Conditions = append(next.Conditions, accepted)

	var tally PodTally
	counted := false
	if c.Counter != nil {
		tally, counted = c.Counter.Counts(key)
	}
	if counted {
		counts := tally.Counts
		next.Pods = &counts
		next.Conditions = append(next.Conditions, podsCondition(v1alpha1.ConditionPodsStale, counts.Stale, "PodsStale",
			"pods have an older version of this preset, or older Consul or Vault values",
			"no pod has an older version of this preset or older Consul or Vault values", tally.Stale))
		next.Conditions = append(next.Conditions, podsCondition(v1alpha1.ConditionPodsMissed, counts.Missed, "PodsMissed",
			"pods created after this preset did not get it (the webhook was unavailable, or its cache did not hold the preset yet)",
			"every pod created after this preset got it", tally.Missed))
		ready := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "AllApplied",
			Message: fmt.Sprintf("%d pods have the current version", counts.Applied)}
		switch {
		case accepted.Status != metav1.ConditionTrue:
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "NotAccepted", "the webhook does not apply this preset"
		case counts.Stale > 0 || counts.Missed > 0:
			ready.Status, ready.Reason = metav1.ConditionFalse, "PodsBehind"
			ready.Message = fmt.Sprintf("%d pods have the current version, %d an older one, %d missed it", counts.Applied, counts.Stale, counts.Missed)
		}
		next.Conditions = append(next.Conditions, ready)
		c.eventIfMissed(key, obj, st.Pods, counts, tally.Missed)
	}
	for i := range next.Conditions {
		cond := &next.Conditions[i]
		cond.ObservedGeneration = gen
		cond.Message = presets.Shorten(cond.Message, maxConditionMessage)
		cond.LastTransitionTime = now
		if old := meta.FindStatusCondition(st.Conditions, cond.Type); old != nil && old.Status == cond.Status {
			cond.LastTransitionTime = old.LastTransitionTime
		}
	}
	if next.unchanged(st) {
		return reconcile.Result{}, nil
	}
	md := map[string]any{"name": obj.GetName()}
	if ns := obj.GetNamespace(); ns != "" {
		md["namespace"] = ns
	}
	body, err := json.Marshal(map[string]any{"apiVersion": v1alpha1.GroupVersion.String(), "kind": obj.PresetKind(), "metadata": md, "status": next})
	if err != nil {
		return reconcile.Result{}, err
	}
	if err := c.Client.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return reconcile.Result{}, fmt.Errorf("writing the status of %s %s: %w", obj.PresetKind(), req.NamespacedName, err)
	}
	return reconcile.Result{}, nil
}

// status is the part of a preset's status this controller applies.
type status struct {
	ObservedGeneration int64               `json:"observedGeneration"`
	ContentGeneration  int64               `json:"contentGeneration"`
	ContentHash        string              `json:"contentHash"`
	Pods               *v1alpha1.PodCounts `json:"pods,omitempty"`
	Conditions         []metav1.Condition  `json:"conditions"`
}

// unchanged says whether the preset's status already says all this.
func (s *status) unchanged(st *v1alpha1.PodPresetStatus) bool {
	if st.ObservedGeneration != s.ObservedGeneration || st.ContentGeneration != s.ContentGeneration || st.ContentHash != s.ContentHash ||
		!equality.Semantic.DeepEqual(st.Pods, s.Pods) {
		return false
	}
	for _, c := range s.Conditions {
		if old := meta.FindStatusCondition(st.Conditions, c.Type); old == nil || !equality.Semantic.DeepEqual(*old, c) {
			return false
		}
	}
	return true
}

// podsCondition says whether some pods are behind, naming a few.
func podsCondition(typ string, n int32, reason, what, none string, pods []types.NamespacedName) metav1.Condition {
	if n == 0 {
		return metav1.Condition{Type: typ, Status: metav1.ConditionFalse, Reason: "None", Message: none}
	}
	return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: reason, Message: fmt.Sprintf("%d %s: %s", n, what, names(pods, n))}
}

// names lists some pods, saying how many more there are.
func names(pods []types.NamespacedName, n int32) string {
	s := make([]string, len(pods))
	for i, p := range pods {
		s[i] = p.String()
	}
	out := strings.Join(s, ", ")
	if more := int(n) - len(pods); more > 0 {
		out += fmt.Sprintf(" and %d more", more)
	}
	return out
}

// eventIfMissed records one Event on the preset when more pods missed it
// than its status said, at most once a minute.
func (c *StatusController) eventIfMissed(key Key, obj v1alpha1.Object, was *v1alpha1.PodCounts, now v1alpha1.PodCounts, missed []types.NamespacedName) {
	if c.Recorder == nil || now.Missed == 0 || was != nil && now.Missed <= was.Missed {
		return
	}
	c.mu.Lock()
	if c.lastMissed == nil {
		c.lastMissed = map[Key]time.Time{}
	}
	if time.Since(c.lastMissed[key]) < missedEventInterval {
		c.mu.Unlock()
		return
	}
	c.lastMissed[key] = time.Now()
	c.mu.Unlock()
	c.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, "PodsMissed", "Count",
		"%d pods created after this preset did not get it (the webhook was unavailable, or its cache did not hold the preset yet): %s",
		now.Missed, names(missed, now.Missed))
}
