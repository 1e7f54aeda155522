package sources

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/internal/managed"
	"github.com/podpreset/podpreset/presets"
)

// errForeign is the error of an object of the planned name that is not the
// preset's: it is never taken over, and pods are never pointed at it.
var errForeign = errors.New("exists and is not this preset's (no owner reference to it): rename or delete it")

// object is the ConfigMap or Secret to write for a desired object, in a
// namespace, owned by the preset.
func object(owner metav1.OwnerReference, ns string, d *desiredObject) client.Object {
	om := metav1.ObjectMeta{Name: d.Name, Namespace: ns, Labels: managed.Labels(), OwnerReferences: []metav1.OwnerReference{owner}}
	if d.Kind == presets.KindSecret {
		s := &corev1.Secret{ObjectMeta: om, Type: corev1.SecretTypeOpaque, Data: d.Data}
		if d.TLS {
			s.Type = corev1.SecretTypeTLS
		}
		return s
	}
	cm := &corev1.ConfigMap{ObjectMeta: om}
	for k, v := range d.Data {
		if utf8.Valid(v) {
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			cm.Data[k] = string(v)
		} else {
			if cm.BinaryData == nil {
				cm.BinaryData = map[string][]byte{}
			}
			cm.BinaryData[k] = v
		}
	}
	return cm
}

// upsert creates an object, or repairs it to the wanted content. It never
// takes over an object that is not the preset's (errForeign). The cache may
// lag the controller's own last write: on a conflict, the object is read
// again from the API server.
func (c *Controller) upsert(ctx context.Context, want client.Object) error {
	key := client.ObjectKeyFromObject(want)
	what := fmt.Sprintf("%s %s", kindOf(want), key)
	uid := want.GetOwnerReferences()[0].UID
	have := want.DeepCopyObject().(client.Object)
	err := c.Client.Get(ctx, key, have)
	if apierrors.IsNotFound(err) {
		err = c.Client.Create(ctx, want)
		if err == nil {
			objectWrites.WithLabelValues(kindOf(want), "create").Inc()
			ctrl.LoggerFrom(ctx).Info("materialised", "kind", kindOf(want), "namespace", key.Namespace, "name", key.Name, "keys", len(dataKeys(want)))
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s: %w", what, err)
		}
		// It exists without our label, so the cache does not hold it.
		err = c.Reader.Get(ctx, key, have)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", what, err)
	}
	first := true
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			if err := c.Reader.Get(ctx, key, have); err != nil {
				return err
			}
		}
		first = false
		if !owned(have, uid) {
			return errForeign
		}
		if sameContent(have, want) {
			return nil
		}
		if err := c.Client.Update(ctx, repaired(have, want)); err != nil {
			return err
		}
		objectWrites.WithLabelValues(kindOf(want), "update").Inc()
		ctrl.LoggerFrom(ctx).Info("updated", "kind", kindOf(want), "namespace", key.Namespace, "name", key.Name, "keys", len(dataKeys(want)))
		return nil
	})
	if err != nil {
		return fmt.Errorf("updating %s: %w", what, err)
	}
	return nil
}

func owned(o client.Object, uid types.UID) bool {
	return slices.ContainsFunc(o.GetOwnerReferences(), func(r metav1.OwnerReference) bool { return r.UID == uid })
}

// repaired is have with our label and our data; whatever else someone
// added stays.
func repaired(have, want client.Object) client.Object {
	upd := have.DeepCopyObject().(client.Object)
	lbl := upd.GetLabels()
	if lbl == nil {
		lbl = map[string]string{}
	}
	maps.Copy(lbl, managed.Labels())
	upd.SetLabels(lbl)
	switch u := upd.(type) {
	case *corev1.ConfigMap:
		w := want.(*corev1.ConfigMap)
		u.Data, u.BinaryData = w.Data, w.BinaryData
	case *corev1.Secret:
		w := want.(*corev1.Secret)
		u.Data, u.StringData = w.Data, nil
	}
	return upd
}

// dataKeys lists an object's keys (never its values), for logs.
func dataKeys(o client.Object) []string {
	switch o := o.(type) {
	case *corev1.ConfigMap:
		return append(slices.Collect(maps.Keys(o.Data)), slices.Collect(maps.Keys(o.BinaryData))...)
	case *corev1.Secret:
		return slices.Collect(maps.Keys(o.Data))
	}
	return nil
}

// kindOf is ConfigMap or Secret.
func kindOf(o client.Object) string {
	if _, ok := o.(*corev1.Secret); ok {
		return presets.KindSecret
	}
	return presets.KindConfigMap
}

func sameContent(have, want client.Object) bool {
	if !managed.Is(have.GetLabels()) {
		return false
	}
	switch h := have.(type) {
	case *corev1.ConfigMap:
		w := want.(*corev1.ConfigMap)
		return equality.Semantic.DeepEqual(h.Data, w.Data) && equality.Semantic.DeepEqual(h.BinaryData, w.BinaryData)
	case *corev1.Secret:
		w := want.(*corev1.Secret)
		return equality.Semantic.DeepEqual(h.Data, w.Data)
	}
	return false
}

// sweep deletes the objects a preset owns that it no longer needs: those
// of a source that was removed, and for a ClusterPodPreset, those in
// namespaces it no longer selects. keep holds what to keep, by namespace.
func (c *Controller) sweep(ctx context.Context, r *reconcileState, keep map[string]map[objectKey]bool) error {
	opts := []client.ListOption{client.MatchingLabels(managed.Labels())}
	if r.obj.PresetNamespaceSelector() == nil {
		opts = append(opts, client.InNamespace(r.obj.GetNamespace()))
	}
	var cms corev1.ConfigMapList
	var secs corev1.SecretList
	if err := c.Client.List(ctx, &cms, opts...); err != nil {
		return fmt.Errorf("listing ConfigMaps: %w", err)
	}
	if err := c.Client.List(ctx, &secs, opts...); err != nil {
		return fmt.Errorf("listing Secrets: %w", err)
	}
	var stale []client.Object
	for i := range cms.Items {
		stale = append(stale, &cms.Items[i])
	}
	for i := range secs.Items {
		stale = append(stale, &secs.Items[i])
	}
	var errs []error
	for _, o := range stale {
		if !owned(o, r.obj.GetUID()) || keep[o.GetNamespace()][objectKey{Kind: kindOf(o), Name: o.GetName()}] {
			continue
		}
		if err := c.Client.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting %s %s/%s: %w", kindOf(o), o.GetNamespace(), o.GetName(), err))
		} else {
			objectWrites.WithLabelValues(kindOf(o), "delete").Inc()
		}
	}
	return errors.Join(errs...)
}
