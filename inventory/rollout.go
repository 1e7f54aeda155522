package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/webhook"
)

// Annotations of rollouts.
const (
	// AnnotationRollout set to "Never" on a Deployment, StatefulSet or
	// DaemonSet keeps podpreset from ever restarting it.
	AnnotationRollout = "podpreset.dev/rollout"
	// AnnotationRestartedFor is written on the pod template of a workload
	// podpreset restarted: the preset, as Kind/namespace/name@generation.
	AnnotationRestartedFor = "podpreset.dev/restarted-for"
	// AnnotationRestartedAt is what `kubectl rollout restart` writes; a
	// change of it replaces the workload's pods.
	AnnotationRestartedAt = "kubectl.kubernetes.io/restartedAt"
)

// maxRestarts is how often one workload is restarted for one version of a
// preset: when its new pods are still behind after that (the webhook is
// down again), a person has to look.
const maxRestarts = 3

// DefaultInterval is the least time between two restarts cluster-wide.
const DefaultInterval = 5 * time.Second

var restarts = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "podpreset_rollout_restarts_total",
	Help: "Workloads restarted because their pods were stale or had missed a preset with spec.rollout.policy OnChange, by kind.",
}, []string{"kind"})

func init() {
	metrics.Registry.MustRegister(restarts)
	for _, k := range []string{"Deployment", "StatefulSet", "DaemonSet"} {
		restarts.WithLabelValues(k) // every series from zero
	}
}

// Rollout restarts, for the presets whose spec.rollout.policy is OnChange,
// the Deployments, StatefulSets and DaemonSets whose pods are stale or
// missed the preset, as `kubectl rollout restart` does: a new
// kubectl.kubernetes.io/restartedAt on the pod template, whose new pods the
// webhook admits with the preset's current version.
//
// It is paced: one workload at a time per preset, spec.rollout.minInterval
// apart (30 s by default, 10 s at least), and one restart every Interval
// cluster-wide; a workload whose own rollout is still going, or that is
// paused, waits. Within a restart, the workload's own strategy
// (maxUnavailable, maxSurge, partitions) governs how its pods are
// replaced: that is why the preset asks for no maxUnavailable of its own.
//
// It never touches bare pods, Jobs, CronJobs, ReplicaSets without a
// Deployment, workloads that replace pods only when deleted (OnDelete), or
// workloads annotated podpreset.dev/rollout=Never; those pods stay counted
// as stale or missed. An owner reference is followed only when the owner
// exists with the UID it names. Every restart is an Event on the workload
// naming the preset and the reason.
type Rollout struct {
	Inventory *Inventory
	Store     *webhook.Store
	// Client patches workloads; Reader reads them and their ReplicaSets
	// from the API server (the cache holds neither: a few reads per
	// restart cost less than watching every workload of the cluster).
	Client client.Client
	Reader client.Reader
	// Recorder records the Events on the workloads; nil records none.
	Recorder events.EventRecorder
	// Interval is the least time between two restarts cluster-wide.
	Interval time.Duration
	Log      logr.Logger

	last    map[webhook.Key]time.Time
	lastAny time.Time
	tries   map[tryKey]int
}

// tryKey is one workload restarted for one version of one preset.
type tryKey struct {
	workload types.UID
	preset   webhook.Key
	version  string
}

// NeedLeaderElection is true: the leader restarts.
func (r *Rollout) NeedLeaderElection() bool { return true }

// Start restarts workloads, once a second at most, until ctx ends.
func (r *Rollout) Start(ctx context.Context) error {
	r.last, r.tries = map[webhook.Key]time.Time{}, map[tryKey]int{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			if r.Inventory.Synced() {
				r.step(ctx, now)
			}
		}
	}
}

// step restarts at most one workload.
func (r *Rollout) step(ctx context.Context, now time.Time) {
	if now.Sub(r.lastAny) < r.Interval {
		return
	}
	all := r.Store.Presets()
	keys := slices.SortedFunc(maps.Keys(all), func(a, b webhook.Key) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range keys {
		p := all[k]
		policy, interval := p.Rollout()
		if p.Refused() != nil || policy != v1alpha1.RolloutOnChange || now.Sub(r.last[k]) < interval {
			continue
		}
		behind := r.Inventory.Behind(k)
		if len(behind) == 0 {
			continue
		}
		if r.restartOne(ctx, k, p, behind, now) {
			r.last[k], r.lastAny = now, now
			return
		}
	}
}

// target is a workload some pods behind a preset belong to.
type target struct {
	obj           client.Object
	kind          string
	stale, missed int
}

// restartOne restarts the first workload of the pods behind that can be
// restarted now, and says whether it did.
func (r *Rollout) restartOne(ctx context.Context, k webhook.Key, p *presets.Preset, behind []Behind, now time.Time) bool {
	log := r.Log.WithValues("preset", k.String())
	var order []types.UID
	targets := map[types.UID]*target{}
	skipped := map[types.UID]bool{}
	for _, b := range behind {
		owner := metav1.GetControllerOfNoCopy(&metav1.ObjectMeta{OwnerReferences: b.Owners})
		if owner == nil || skipped[owner.UID] {
			continue // a bare pod: reported, never touched
		}
		t := targets[owner.UID]
		if t == nil {
			obj, kind, why, err := r.workloadOf(ctx, b.Pod.Namespace, owner)
			if err != nil {
				log.Error(err, "reading the owner of a pod behind the preset", "pod", b.Pod)
				skipped[owner.UID] = true
				continue
			}
			if why != "" {
				log.V(1).Info("not restarting", "pod", b.Pod, "because", why)
				skipped[owner.UID] = true
				continue
			}
			t = &target{obj: obj, kind: kind}
			targets[owner.UID] = t
			order = append(order, owner.UID)
		}
		if b.State == presets.StateMissed {
			t.missed++
		} else {
			t.stale++
		}
	}
	version := p.Version()
	for _, id := range order {
		t := targets[id]
		try := tryKey{workload: t.obj.GetUID(), preset: k, version: version}
		if r.tries[try] >= maxRestarts {
			continue
		}
		if err := r.restart(ctx, t, p, now); err != nil {
			log.Error(err, "restarting", "kind", t.kind, "workload", client.ObjectKeyFromObject(t.obj))
			continue
		}
		r.tries[try]++
		return true
	}
	return false
}

// workloadOf follows a pod's controller to the workload to restart: a
// Deployment (through its ReplicaSet), a StatefulSet or a DaemonSet, which
// must exist with the UID named. why says why it cannot be restarted.
func (r *Rollout) workloadOf(ctx context.Context, ns string, owner *metav1.OwnerReference) (obj client.Object, kind, why string, err error) {
	if !strings.HasPrefix(owner.APIVersion, "apps/") {
		return nil, "", "owned by a " + owner.Kind + ", which is never restarted", nil
	}
	uid := owner.UID
	switch owner.Kind {
	case "ReplicaSet":
		rs := &metav1.PartialObjectMetadata{}
		rs.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
		if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: owner.Name}, rs); err != nil {
			return nil, "", "", client.IgnoreNotFound(err)
		}
		if rs.UID != owner.UID {
			return nil, "", "its owner reference names no existing ReplicaSet", nil
		}
		d := metav1.GetControllerOfNoCopy(rs)
		if d == nil || d.Kind != "Deployment" || !strings.HasPrefix(d.APIVersion, "apps/") {
			return nil, "", "its ReplicaSet belongs to no Deployment", nil
		}
		obj, kind, uid = &appsv1.Deployment{}, "Deployment", d.UID
		owner = d
	case "StatefulSet":
		obj, kind = &appsv1.StatefulSet{}, "StatefulSet"
	case "DaemonSet":
		obj, kind = &appsv1.DaemonSet{}, "DaemonSet"
	default:
		return nil, "", "owned by a " + owner.Kind + ", which is never restarted", nil
	}
	if err := r.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: owner.Name}, obj); err != nil {
		return nil, "", "", client.IgnoreNotFound(err)
	}
	if obj.GetUID() != uid {
		return nil, "", "its owner reference names no existing " + kind, nil
	}
	if strings.EqualFold(obj.GetAnnotations()[AnnotationRollout], string(v1alpha1.RolloutNever)) {
		return nil, "", kind + " annotated " + AnnotationRollout + "=Never", nil
	}
	return obj, kind, busy(obj), nil
}

// busy says why a workload must not be restarted now: it replaces pods
// only when they are deleted, it is paused, or its own rollout is going.
func busy(obj client.Object) string {
	const rolling = "its own rollout is in progress"
	switch w := obj.(type) {
	case *appsv1.Deployment:
		replicas := int32(1)
		if w.Spec.Replicas != nil {
			replicas = *w.Spec.Replicas
		}
		switch {
		case w.Spec.Paused:
			return "the Deployment is paused"
		case w.Status.ObservedGeneration < w.Generation || w.Status.UpdatedReplicas < replicas || w.Status.Replicas > w.Status.UpdatedReplicas:
			return rolling
		}
	case *appsv1.StatefulSet:
		switch {
		case w.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType:
			return "updateStrategy OnDelete: its pods are replaced only when deleted"
		case w.Status.ObservedGeneration < w.Generation || w.Status.CurrentRevision != w.Status.UpdateRevision:
			return rolling
		}
	case *appsv1.DaemonSet:
		switch {
		case w.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType:
			return "updateStrategy OnDelete: its pods are replaced only when deleted"
		case w.Status.ObservedGeneration < w.Generation || w.Status.UpdatedNumberScheduled < w.Status.DesiredNumberScheduled:
			return rolling
		}
	}
	return ""
}

// restart writes a new restartedAt on the workload's pod template, and an
// Event on it.
func (r *Rollout) restart(ctx context.Context, t *target, p *presets.Preset, now time.Time) error {
	ref := p.Ref()
	by := ref.Kind + "/" + ref.Namespace + "/" + ref.Name + "@" + fmt.Sprint(ref.Generation)
	if ref.Namespace == "" {
		by = ref.Kind + "/" + ref.Name + "@" + fmt.Sprint(ref.Generation)
	}
	body, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{AnnotationRestartedAt: now.UTC().Format(time.RFC3339), AnnotationRestartedFor: by},
	}}}})
	if err != nil {
		return err
	}
	if err := r.Client.Patch(ctx, t.obj, client.RawPatch(types.MergePatchType, body)); err != nil {
		return err
	}
	restarts.WithLabelValues(t.kind).Inc()
	why := fmt.Sprintf("%d pods stale, %d missed", t.stale, t.missed)
	r.Log.Info("restarted", "kind", t.kind, "workload", client.ObjectKeyFromObject(t.obj), "preset", by, "reason", why)
	if r.Recorder != nil {
		r.Recorder.Eventf(t.obj, presetObject(ref), corev1.EventTypeNormal, "PodPresetRollout", "Restart",
			"restarted for %s %s (generation %d, rollout OnChange): %s", ref.Kind, presetName(ref), ref.Generation, why)
	}
	return nil
}

// presetObject is a reference to a preset, for an Event's related object.
func presetObject(ref presets.Ref) client.Object {
	if ref.Kind == v1alpha1.KindClusterPodPreset {
		return &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: ref.Name}}
	}
	return &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name}}
}

func presetName(ref presets.Ref) string {
	if ref.Namespace == "" {
		return ref.Name
	}
	return ref.Namespace + "/" + ref.Name
}
