package sources

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// FieldManager is the server-side apply manager of the status fields the
// sources controller owns: sources, foreignObjects and the SourcesReady
// condition. Other controllers own other conditions.
const FieldManager = "podpreset-sources"

// statusResync is how often an unchanged source's lastSyncTime is brought
// up to date.
const statusResync = 10 * time.Minute

// Longest messages the status holds.
const (
	maxSourceError     = 1024
	maxConditionLength = 4096
)

// sourcesStatus is what the sources controller says in a preset's status.
type sourcesStatus struct {
	Sources   []v1alpha1.SourceStatus
	Foreign   []v1alpha1.ObjectReference
	Condition *metav1.Condition // nil: the preset reads no source
}

// nextStatus computes the status from the sources' states and the previous
// status. An unchanged source's lastSyncTime moves at most every
// statusResync, so that a quiet preset is not rewritten on every read. It is
// pure.
func nextStatus(prev *v1alpha1.PodPresetStatus, states map[string]*sourceState, foreign []v1alpha1.ObjectReference, generation int64, now time.Time) sourcesStatus {
	old := map[string]v1alpha1.SourceStatus{}
	for _, s := range prev.Sources {
		old[s.Source] = s
	}
	var out sourcesStatus
	out.Foreign = foreign
	var failing, pending []string
	for _, id := range slices.Sorted(maps.Keys(states)) {
		st, was := states[id], old[id]
		s := v1alpha1.SourceStatus{Source: id, Version: st.version, LastSyncTime: was.LastSyncTime}
		if st.version == "" {
			s.Version = was.Version
		}
		if !st.synced.IsZero() && (was.LastSyncTime == nil || was.Version != s.Version || st.synced.Sub(was.LastSyncTime.Time) >= statusResync) {
			s.LastSyncTime = &metav1.Time{Time: st.synced.Truncate(time.Second)}
		}
		if len(st.errs) > 0 {
			s.LastError = presets.Shorten(strings.Join(st.errs, "; "), maxSourceError)
			switch {
			case was.LastErrorTime != nil:
				s.LastErrorTime = was.LastErrorTime
			case !st.errSince.IsZero():
				s.LastErrorTime = &metav1.Time{Time: st.errSince.Truncate(time.Second)}
			default:
				s.LastErrorTime = &metav1.Time{Time: now.Truncate(time.Second)}
			}
			failing = append(failing, id+": "+s.LastError)
		} else if st.pending && was.Version == "" {
			// Never materialised. (A new leader has not read a source yet
			// but its last values are in place: that is not pending.)
			pending = append(pending, id)
		}
		out.Sources = append(out.Sources, s)
	}
	for _, f := range foreign {
		failing = append(failing, fmt.Sprintf("%s %s/%s %s", f.Kind, f.Namespace, f.Name, errForeign))
	}
	if len(states) == 0 {
		return out
	}
	cond := metav1.Condition{Type: v1alpha1.ConditionSourcesReady, ObservedGeneration: generation}
	switch {
	case len(failing) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, "SourceError"
		cond.Message = presets.Shorten(strings.Join(failing, "\n"), maxConditionLength)
	case len(pending) > 0:
		cond.Status, cond.Reason = metav1.ConditionUnknown, "Pending"
		cond.Message = "not read yet: " + strings.Join(pending, ", ")
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, "Materialised"
		cond.Message = fmt.Sprintf("%d sources materialised", len(out.Sources))
	}
	// The transition time is kept while the status does not change.
	if c := meta.FindStatusCondition(prev.Conditions, cond.Type); c != nil && c.Status == cond.Status {
		cond.LastTransitionTime = c.LastTransitionTime
	} else {
		cond.LastTransitionTime = metav1.Time{Time: now.Truncate(time.Second)}
	}
	out.Condition = &cond
	return out
}

// unchanged says whether the preset's status already says this.
func (s sourcesStatus) unchanged(prev *v1alpha1.PodPresetStatus) bool {
	c := meta.FindStatusCondition(prev.Conditions, v1alpha1.ConditionSourcesReady)
	if (c == nil) != (s.Condition == nil) || c != nil && !equality.Semantic.DeepEqual(*c, *s.Condition) {
		return false
	}
	return equality.Semantic.DeepEqual(prev.Sources, s.Sources) && equality.Semantic.DeepEqual(prev.ForeignObjects, s.Foreign)
}

// writeStatus applies the status fields the sources controller owns, when
// they changed, with server-side apply: no resourceVersion (the cache may
// lag the controller's own last write), and other writers' conditions stay.
func (c *Controller) writeStatus(ctx context.Context, obj v1alpha1.Object, s sourcesStatus) error {
	// The cache may not hold this controller's last write yet: the status
	// is unchanged only if both it and the last write say so. (A new
	// leader's first pass can clear the old leader's error before its own
	// first read fails; the cache then still shows the old error, equal to
	// the new one, while the object says there is none.)
	key := types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}
	last := c.written.get(key, obj.GetUID())
	if s.unchanged(obj.PresetStatus()) && (last == nil || s.unchanged(last)) {
		return nil
	}
	status := map[string]any{}
	if len(s.Sources) > 0 {
		status["sources"] = s.Sources
	}
	if len(s.Foreign) > 0 {
		status["foreignObjects"] = s.Foreign
	}
	if s.Condition != nil {
		status["conditions"] = []metav1.Condition{*s.Condition}
	}
	md := map[string]any{"name": obj.GetName()}
	if ns := obj.GetNamespace(); ns != "" {
		md["namespace"] = ns
	}
	body, err := json.Marshal(map[string]any{"apiVersion": v1alpha1.GroupVersion.String(), "kind": obj.PresetKind(), "metadata": md, "status": status})
	if err != nil {
		return err
	}
	if err := c.Client.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		c.written.forget(key)
		return fmt.Errorf("writing the status: %w", err)
	}
	c.written.put(key, obj.GetUID(), s)
	if s.Condition != nil {
		ctrl.LoggerFrom(ctx).V(1).Info("status written", "sourcesReady", s.Condition.Status, "reason", s.Condition.Reason)
	}
	return nil
}

// writtenStatuses remembers the status the controller last wrote for each
// preset (by UID: a preset deleted and created again starts afresh).
type writtenStatuses struct {
	mu sync.Mutex
	m  map[types.NamespacedName]writtenStatus
}

type writtenStatus struct {
	uid    types.UID
	status *v1alpha1.PodPresetStatus
}

func (w *writtenStatuses) get(key types.NamespacedName, uid types.UID) *v1alpha1.PodPresetStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	if got, ok := w.m[key]; ok && got.uid == uid {
		return got.status
	}
	return nil
}

func (w *writtenStatuses) put(key types.NamespacedName, uid types.UID, s sourcesStatus) {
	st := &v1alpha1.PodPresetStatus{Sources: s.Sources, ForeignObjects: s.Foreign}
	if s.Condition != nil {
		st.Conditions = []metav1.Condition{*s.Condition}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[types.NamespacedName]writtenStatus{}
	}
	w.m[key] = writtenStatus{uid: uid, status: st}
}

func (w *writtenStatuses) forget(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, key)
}
