package sources

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podpreset/podpreset/certs"
	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Labels and limits of materialised objects.
const (
	// LabelManagedBy marks every ConfigMap and Secret the controller writes;
	// the controller's cache holds only objects with it.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is its value.
	ManagedBy = "podpreset"
	// MaxObjectBytes is the most data one materialised ConfigMap or Secret
	// holds: the API server's 1 MiB object limit, less room for metadata.
	MaxObjectBytes = 1<<20 - 16<<10
	// statusResync is how often an unchanged source's lastSyncTime is
	// brought up to date.
	statusResync = 10 * time.Minute
)

// Controller materialises the Consul and Vault sources of PodPresets and
// ClusterPodPresets into ConfigMaps and Secrets. Only the leader runs it.
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

	events chan event.TypedGenericEvent[types.NamespacedName]
}

// SetupWithManager registers the controller, its watches, and the hub's
// loops (leader only, like the controller).
func (c *Controller) SetupWithManager(mgr manager.Manager) error {
	c.events = make(chan event.TypedGenericEvent[types.NamespacedName], 1024)
	c.Hub.Notify = func(keys []types.NamespacedName) {
		for _, k := range keys {
			c.events <- event.TypedGenericEvent[types.NamespacedName]{Object: k}
		}
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		c.Hub.Start(ctx)
		<-ctx.Done()
		return nil
	})); err != nil {
		return err
	}
	byOwner := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		var out []reconcile.Request
		for _, ref := range o.GetOwnerReferences() {
			switch {
			case ref.APIVersion == v1alpha1.GroupVersion.String() && ref.Kind == v1alpha1.KindPodPreset:
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}})
			case ref.APIVersion == v1alpha1.GroupVersion.String() && ref.Kind == v1alpha1.KindClusterPodPreset:
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: ref.Name}})
			}
		}
		return out
	})
	// A namespace that appears or changes labels may be selected by a
	// ClusterPodPreset.
	byNamespace := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.ClusterPodPresetList
		if err := c.Client.List(ctx, &list); err != nil {
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
	hubEvents := source.TypedChannel(c.events, handler.TypedFuncs[types.NamespacedName, reconcile.Request]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[types.NamespacedName], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.Add(reconcile.Request{NamespacedName: e.Object})
		},
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("sources").
		Watches(&v1alpha1.PodPreset{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.ClusterPodPreset{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.ConfigMap{}, byOwner).
		Watches(&corev1.Secret{}, byOwner).
		Watches(&corev1.Namespace{}, byNamespace, builder.WithPredicates(predicate.Or(predicate.LabelChangedPredicate{}, predicate.Funcs{
			UpdateFunc: func(event.UpdateEvent) bool { return false },
		}))).
		WatchesRawSource(hubEvents).
		Complete(c)
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// preset is a PodPreset or ClusterPodPreset, as the controller needs it.
type preset struct {
	obj     client.Object
	ref     metav1.OwnerReference
	spec    *v1alpha1.PodPresetSpec
	status  *v1alpha1.PodPresetStatus
	nsSel   *metav1.LabelSelector // ClusterPodPreset only
	invalid field.ErrorList
}

func (c *Controller) get(ctx context.Context, key types.NamespacedName) (*preset, error) {
	gv := v1alpha1.GroupVersion.String()
	if key.Namespace == "" {
		var cpp v1alpha1.ClusterPodPreset
		if err := c.Client.Get(ctx, key, &cpp); err != nil {
			return nil, err
		}
		return &preset{obj: &cpp, spec: &cpp.Spec.PodPresetSpec, status: &cpp.Status, nsSel: &cpp.Spec.NamespaceSelector,
			ref:     metav1.OwnerReference{APIVersion: gv, Kind: v1alpha1.KindClusterPodPreset, Name: cpp.Name, UID: cpp.UID, Controller: new(true)},
			invalid: presets.ValidateClusterPodPreset(&cpp)}, nil
	}
	var pp v1alpha1.PodPreset
	if err := c.Client.Get(ctx, key, &pp); err != nil {
		return nil, err
	}
	return &preset{obj: &pp, spec: &pp.Spec, status: &pp.Status,
		ref:     metav1.OwnerReference{APIVersion: gv, Kind: v1alpha1.KindPodPreset, Name: pp.Name, UID: pp.UID, Controller: new(true)},
		invalid: presets.ValidatePodPreset(&pp)}, nil
}

// sourceState is what the status will say of one source.
type sourceState struct {
	version  string
	synced   time.Time
	errs     []string
	errSince time.Time
	pending  bool
}

// Reconcile materialises one preset's sources in every namespace it serves
// and reports in its status.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	key := req.NamespacedName
	if !c.Hub.Running() {
		// The hub and the controller start together on the new leader.
		return reconcile.Result{RequeueAfter: 200 * time.Millisecond}, nil
	}
	p, err := c.get(ctx, key)
	if apierrors.IsNotFound(err) {
		c.Hub.Want(key, nil) // its objects go with it: they are owned
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if p.obj.GetDeletionTimestamp() != nil {
		c.Hub.Want(key, nil)
		return reconcile.Result{}, nil
	}
	if !presets.HasSources(p.spec) {
		c.Hub.Want(key, nil)
		if len(p.status.Sources) == 0 && meta.FindStatusCondition(p.status.Conditions, v1alpha1.ConditionSourcesReady) == nil {
			return reconcile.Result{}, nil
		}
		// Sources were removed: the objects are left to the stale sweep,
		// and the status forgets them.
		if err := c.sweep(ctx, p, nil, nil); err != nil {
			return reconcile.Result{}, err
		}
		next := p.status.DeepCopy()
		next.Sources = nil
		meta.RemoveStatusCondition(&next.Conditions, v1alpha1.ConditionSourcesReady)
		return reconcile.Result{}, c.patchStatus(ctx, p, next)
	}

	plan := presets.SourcePlan(p.obj.GetName(), p.spec)
	states := map[string]*sourceState{}
	state := func(s presets.Source) *sourceState {
		if st := states[s.ID()]; st != nil {
			return st
		}
		st := &sourceState{}
		states[s.ID()] = st
		return st
	}
	now := c.now()
	// Defence in depth: the validating webhook checks all of this too, but
	// its failurePolicy is Ignore, and the configuration may have changed.
	var wanted []presets.Source
	denied := map[string]bool{}
	for _, o := range plan {
		for _, it := range o.Items {
			st := state(it.Source)
			if errs := fieldErrorsUnder(p.invalid, it.Field); len(errs) > 0 {
				st.errs = append(st.errs, errs...)
				denied[it.ID()] = true
				continue
			}
			if err := c.Tenancy.Allowed(key.Namespace, it.Source); err != nil {
				st.errs = append(st.errs, err.Error())
				denied[it.ID()] = true
				continue
			}
			if it.Kind != presets.SourceVaultPKI && !slices.ContainsFunc(wanted, func(s presets.Source) bool { return s.ID() == it.ID() }) {
				wanted = append(wanted, it.Source)
			}
		}
	}
	snaps := c.Hub.Want(key, wanted)
	for _, s := range wanted {
		st, snap := state(s), snaps[s.ID()]
		st.version, st.synced = snap.Version, snap.SyncedAt
		if snap.Err != nil {
			st.errs = append(st.errs, snap.Err.Error())
			st.errSince = snap.ErrSince
		}
		st.pending = !snap.Has
	}

	namespaces, err := c.namespaces(ctx, p)
	if err != nil {
		return reconcile.Result{}, err
	}
	var requeue time.Duration
	desired := map[string]client.Object{} // by kind/name
	for _, o := range plan {
		data, ok, renewIn := c.build(ctx, p, o, namespaces, snaps, denied, state, now)
		if renewIn > 0 && (requeue == 0 || renewIn < requeue) {
			requeue = renewIn
		}
		if !ok {
			// Not ready (never read, or not allowed): leave what is
			// materialised alone, and keep it through the sweep.
			desired[kindOf(o)+"/"+o.Name] = nil
			continue
		}
		desired[kindOf(o)+"/"+o.Name] = c.object(p, o, data)
	}
	var writeErrs []error
	for _, ns := range namespaces {
		for k, obj := range desired {
			if obj == nil {
				continue
			}
			if err := c.upsert(ctx, ns, obj); err != nil {
				writeErrs = append(writeErrs, err)
				for _, o := range plan {
					if kindOf(o)+"/"+o.Name == k {
						for _, it := range o.Items {
							state(it.Source).errs = append(state(it.Source).errs, err.Error())
						}
					}
				}
			}
		}
	}
	if err := c.sweep(ctx, p, namespaces, desired); err != nil {
		writeErrs = append(writeErrs, err)
	}
	if err := c.writeStatus(ctx, p, states, now); err != nil {
		writeErrs = append(writeErrs, err)
	}
	if err := errors.Join(writeErrs...); err != nil {
		return reconcile.Result{}, err
	}
	if requeue == 0 || requeue > statusResync {
		requeue = statusResync
	}
	return reconcile.Result{RequeueAfter: requeue}, nil
}

func kindOf(o presets.Object) string {
	if o.Secret {
		return "Secret"
	}
	return "ConfigMap"
}

// fieldErrorsUnder returns the messages of the validation errors at or
// under a field path.
func fieldErrorsUnder(errs field.ErrorList, path string) []string {
	var out []string
	for _, e := range errs {
		if e.Field == path || strings.HasPrefix(e.Field, path+".") {
			out = append(out, e.Error())
		}
	}
	return out
}

// namespaces lists the namespaces a preset serves: its own, or every
// namespace a ClusterPodPreset selects.
func (c *Controller) namespaces(ctx context.Context, p *preset) ([]string, error) {
	if p.nsSel == nil {
		return []string{p.obj.GetNamespace()}, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(p.nsSel)
	if err != nil {
		return nil, nil // invalid: reported by validation
	}
	var list corev1.NamespaceList
	if err := c.Client.List(ctx, &list, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, err
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

// build computes one object's data. ok is false when the object must be left
// as it is: a source was never read, or is not allowed. renewIn is when a
// certificate is due for renewal.
func (c *Controller) build(ctx context.Context, p *preset, o presets.Object, namespaces []string, snaps map[string]Snapshot,
	denied map[string]bool, state func(presets.Source) *sourceState, now time.Time) (data map[string][]byte, ok bool, renewIn time.Duration) {
	data = map[string][]byte{}
	ok = true
	from := map[string]string{} // data key -> the source key it came from, for collisions
	put := func(st *sourceState, k, origin string, v []byte) {
		if prev, dup := from[k]; dup {
			st.errs = append(st.errs, fmt.Sprintf("%q and %q both become %q; %q is left out", prev, origin, k, origin))
			return
		}
		from[k] = origin
		data[k] = v
	}
	for _, it := range o.Items {
		st := state(it.Source)
		if denied[it.ID()] {
			ok = false
			continue
		}
		if it.Kind == presets.SourceVaultPKI {
			d, renew, good := c.certificate(ctx, p, o, it, namespaces, st, now)
			if !good {
				ok = false
				continue
			}
			maps.Copy(data, d)
			renewIn = renew
			continue
		}
		snap := snaps[it.ID()]
		if !snap.Has {
			ok = false
			continue
		}
		if !snap.Exists {
			if !it.Optional {
				what := "the Consul key"
				if it.Kind == presets.SourceVault {
					what = "the Vault secret"
				}
				st.errs = append(st.errs, fmt.Sprintf("%s %s does not exist (%s)", what, it.Path, it.Field))
			}
			continue
		}
		switch it.Layout {
		case presets.LayoutKey:
			k := ""
			if it.Kind == presets.SourceVault {
				k = it.VaultField
			}
			v, found := snap.Data[k]
			if !found {
				if !it.Optional {
					st.errs = append(st.errs, fmt.Sprintf("the Vault secret %s has no field %q (%s)", it.Path, it.VaultField, it.Field))
				}
				continue
			}
			put(st, it.DataKey, it.Path, v)
		case presets.LayoutEnv:
			for _, rel := range slices.Sorted(maps.Keys(snap.Data)) {
				name := presets.EnvName(rel)
				if name == "" {
					continue
				}
				put(st, name, joinKey(it.Path, rel), snap.Data[rel])
			}
		case presets.LayoutFiles:
			for _, rel := range slices.Sorted(maps.Keys(snap.Data)) {
				name, valid := presets.FileName(rel)
				if !valid {
					st.errs = append(st.errs, fmt.Sprintf("key %q cannot be a file name (%s): left out", joinKey(it.Path, rel), it.Field))
					continue
				}
				put(st, name, joinKey(it.Path, rel), snap.Data[rel])
			}
		}
	}
	size, largest := 0, ""
	for k, v := range data {
		size += len(k) + len(v)
		if largest == "" || len(v) > len(data[largest]) {
			largest = k
		}
	}
	if size > MaxObjectBytes {
		origin := from[largest]
		if origin == "" {
			origin = largest
		}
		for _, it := range o.Items {
			state(it.Source).errs = append(state(it.Source).errs,
				fmt.Sprintf("%s %s would hold %d bytes, over the %d-byte limit (the largest value: %q, %d bytes): not updated",
					kindOf(o), o.Name, size, MaxObjectBytes, origin, len(data[largest])))
		}
		return nil, false, renewIn
	}
	return data, ok, renewIn
}

func joinKey(prefix, rel string) string {
	if prefix == "" || strings.HasSuffix(prefix, "/") {
		return prefix + rel
	}
	return prefix + "/" + rel
}

// certificate returns the data of a vaultPKI Secret: the one already
// materialised while it is valid for the request and not due for renewal
// (two thirds of its lifetime), or a new one from Vault.
func (c *Controller) certificate(ctx context.Context, p *preset, o presets.Object, it presets.Item, namespaces []string,
	st *sourceState, now time.Time) (map[string][]byte, time.Duration, bool) {
	var existing map[string][]byte
	for _, ns := range namespaces {
		var s corev1.Secret
		if err := c.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: o.Name}, &s); err == nil && owned(&s, p.ref.UID) {
			existing = s.Data
			break
		}
	}
	if cert := parseCert(existing["tls.crt"]); cert != nil && len(existing["tls.key"]) > 0 && matches(cert, it.PKI) {
		renewAt := renewalTime(cert, it.PKI)
		if now.Before(renewAt) {
			st.version, st.synced = serial(cert), time.Time{}
			return existing, renewAt.Sub(now), true
		}
	}
	if c.Vault == nil {
		st.errs = append(st.errs, "Vault is not configured")
		return nil, 0, false
	}
	issued, err := c.Vault.Issue(ctx, it.PKI.Mount, it.PKI.Role, PKIRequest{CommonName: it.PKI.CommonName, AltNames: it.PKI.AltNames, TTL: ttlOf(it.PKI)})
	if err != nil {
		st.errs = append(st.errs, err.Error())
		st.errSince = now
		if existing != nil {
			// Keep serving the old certificate; retry soon.
			return existing, 10 * time.Second, true
		}
		return nil, 10 * time.Second, false
	}
	certificatesIssued.Inc()
	cert := parseCert(issued.CertPEM)
	if cert == nil {
		st.errs = append(st.errs, "vault PKI returned a certificate that does not parse")
		return nil, 10 * time.Second, false
	}
	st.version, st.synced = serial(cert), now
	renewAt := renewalTime(cert, it.PKI)
	return map[string][]byte{"tls.crt": issued.CertPEM, "tls.key": issued.KeyPEM, "ca.crt": issued.CAPEM}, max(renewAt.Sub(now), time.Second), true
}

// renewalTime is when two thirds of a certificate's lifetime have passed.
// Vault PKI backdates NotBefore (30 seconds by default) against clock skew,
// so the lifetime is the requested TTL when it is shorter than what the
// certificate says, and the renewal is counted back from NotAfter: a 15s
// certificate is renewed 10s after it was issued, not at once.
func renewalTime(c *x509.Certificate, k *v1alpha1.VaultPKISource) time.Time {
	lifetime := c.NotAfter.Sub(c.NotBefore)
	if ttl := ttlOf(k); ttl > 0 && ttl < lifetime {
		lifetime = ttl
	}
	return c.NotAfter.Add(-lifetime / 3)
}

func ttlOf(k *v1alpha1.VaultPKISource) time.Duration {
	if k.TTL == nil {
		return 0
	}
	return k.TTL.Duration
}

// parseCert is the first certificate of a PEM file, or nil.
func parseCert(b []byte) *x509.Certificate {
	if cs := certs.ParseBundle(b); len(cs) > 0 {
		return cs[0]
	}
	return nil
}

func serial(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// matches says whether a certificate carries the names a request asks for.
func matches(c *x509.Certificate, k *v1alpha1.VaultPKISource) bool {
	if c.Subject.CommonName != k.CommonName {
		return false
	}
	for _, n := range k.AltNames {
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(c.DNSNames, n) {
			return false
		}
	}
	return true
}

func owned(o client.Object, uid types.UID) bool {
	return slices.ContainsFunc(o.GetOwnerReferences(), func(r metav1.OwnerReference) bool { return r.UID == uid })
}

// object is the ConfigMap or Secret to materialise (without namespace).
func (c *Controller) object(p *preset, o presets.Object, data map[string][]byte) client.Object {
	om := metav1.ObjectMeta{Name: o.Name, Labels: map[string]string{LabelManagedBy: ManagedBy}, OwnerReferences: []metav1.OwnerReference{p.ref}}
	if o.Secret {
		s := &corev1.Secret{ObjectMeta: om, Type: corev1.SecretTypeOpaque, Data: data}
		if len(o.Items) == 1 && o.Items[0].Layout == presets.LayoutTLS {
			s.Type = corev1.SecretTypeTLS
		}
		return s
	}
	cm := &corev1.ConfigMap{ObjectMeta: om}
	for k, v := range data {
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

// upsert creates or repairs one object in a namespace. It never takes over
// an object that another owner has.
func (c *Controller) upsert(ctx context.Context, ns string, want client.Object) error {
	want = want.DeepCopyObject().(client.Object)
	want.SetNamespace(ns)
	have := want.DeepCopyObject().(client.Object)
	err := c.Client.Get(ctx, client.ObjectKeyFromObject(want), have)
	if apierrors.IsNotFound(err) {
		err = c.Client.Create(ctx, want)
		if err == nil {
			objectWrites.WithLabelValues(kindName(want), "create").Inc()
			ctrl.LoggerFrom(ctx).Info("materialised", "kind", kindName(want), "namespace", ns, "name", want.GetName(), "keys", len(dataKeys(want)))
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s %s/%s: %w", kindName(want), ns, want.GetName(), err)
		}
		// It exists without our label, so the cache does not hold it.
		if err := c.Reader.Get(ctx, client.ObjectKeyFromObject(want), have); err != nil {
			return fmt.Errorf("reading %s %s/%s: %w", kindName(want), ns, want.GetName(), err)
		}
	} else if err != nil {
		return fmt.Errorf("reading %s %s/%s: %w", kindName(want), ns, want.GetName(), err)
	}
	if !owned(have, want.GetOwnerReferences()[0].UID) {
		return notOurs(want, ns)
	}
	// The cache may lag our own last write: on a conflict, read the
	// object from the API server and try again.
	for attempt := 0; ; attempt++ {
		if sameContent(have, want) {
			return nil
		}
		err := c.Client.Update(ctx, repaired(have, want))
		if err == nil {
			objectWrites.WithLabelValues(kindName(want), "update").Inc()
			ctrl.LoggerFrom(ctx).Info("updated", "kind", kindName(want), "namespace", ns, "name", want.GetName(), "keys", len(dataKeys(want)))
			return nil
		}
		if !apierrors.IsConflict(err) || attempt == 3 {
			return fmt.Errorf("updating %s %s/%s: %w", kindName(want), ns, want.GetName(), err)
		}
		if err := c.Reader.Get(ctx, client.ObjectKeyFromObject(want), have); err != nil {
			return fmt.Errorf("reading %s %s/%s: %w", kindName(want), ns, want.GetName(), err)
		}
		if !owned(have, want.GetOwnerReferences()[0].UID) {
			return notOurs(want, ns)
		}
	}
}

// notOurs is the error for an object of the planned name that another owner
// has: it is never taken over.
func notOurs(want client.Object, ns string) error {
	return fmt.Errorf("%s %s/%s exists and is not this preset's (no owner reference to it): rename or delete it", kindName(want), ns, want.GetName())
}

// repaired is have with our label and our data; whatever else someone
// added stays.
func repaired(have, want client.Object) client.Object {
	upd := have.DeepCopyObject().(client.Object)
	lbl := upd.GetLabels()
	if lbl == nil {
		lbl = map[string]string{}
	}
	lbl[LabelManagedBy] = ManagedBy
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

func kindName(o client.Object) string {
	if _, ok := o.(*corev1.Secret); ok {
		return "Secret"
	}
	return "ConfigMap"
}

func sameContent(have, want client.Object) bool {
	if have.GetLabels()[LabelManagedBy] != ManagedBy {
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

// sweep deletes the objects this preset owns that it no longer needs: those
// of a source that was removed, and for a ClusterPodPreset, those in
// namespaces it no longer selects. desired maps kind/name to the objects to
// keep.
func (c *Controller) sweep(ctx context.Context, p *preset, namespaces []string, desired map[string]client.Object) error {
	var opts []client.ListOption
	opts = append(opts, client.MatchingLabels{LabelManagedBy: ManagedBy})
	if p.nsSel == nil {
		opts = append(opts, client.InNamespace(p.obj.GetNamespace()))
	}
	var cms corev1.ConfigMapList
	var secs corev1.SecretList
	if err := c.Client.List(ctx, &cms, opts...); err != nil {
		return err
	}
	if err := c.Client.List(ctx, &secs, opts...); err != nil {
		return err
	}
	var stale []client.Object
	keep := func(o client.Object, kind string) bool {
		_, ok := desired[kind+"/"+o.GetName()]
		return ok && slices.Contains(namespaces, o.GetNamespace())
	}
	for i := range cms.Items {
		if o := &cms.Items[i]; owned(o, p.ref.UID) && !keep(o, "ConfigMap") {
			stale = append(stale, o)
		}
	}
	for i := range secs.Items {
		if o := &secs.Items[i]; owned(o, p.ref.UID) && !keep(o, "Secret") {
			stale = append(stale, o)
		}
	}
	var errs []error
	for _, o := range stale {
		if err := c.Client.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting %s %s/%s: %w", kindName(o), o.GetNamespace(), o.GetName(), err))
		} else {
			objectWrites.WithLabelValues(kindName(o), "delete").Inc()
		}
	}
	return errors.Join(errs...)
}

// writeStatus reports every source and the SourcesReady condition, when
// they changed. An unchanged source's lastSyncTime moves at most every
// statusResync, so that a quiet preset is not rewritten on every read.
func (c *Controller) writeStatus(ctx context.Context, p *preset, states map[string]*sourceState, now time.Time) error {
	prev := map[string]v1alpha1.SourceStatus{}
	for _, s := range p.status.Sources {
		prev[s.Source] = s
	}
	var out []v1alpha1.SourceStatus
	var failing, pending []string
	for _, id := range slices.Sorted(maps.Keys(states)) {
		st := states[id]
		old := prev[id]
		s := v1alpha1.SourceStatus{Source: id, Version: st.version, LastSyncTime: old.LastSyncTime}
		if st.version == "" {
			s.Version = old.Version
		}
		if !st.synced.IsZero() && (old.LastSyncTime == nil || old.Version != s.Version || st.synced.Sub(old.LastSyncTime.Time) >= statusResync) {
			s.LastSyncTime = &metav1.Time{Time: st.synced.Truncate(time.Second)}
		}
		if len(st.errs) > 0 {
			s.LastError = truncate(strings.Join(st.errs, "; "), 1024)
			switch {
			case old.LastErrorTime != nil:
				s.LastErrorTime = old.LastErrorTime
			case !st.errSince.IsZero():
				s.LastErrorTime = &metav1.Time{Time: st.errSince.Truncate(time.Second)}
			default:
				s.LastErrorTime = &metav1.Time{Time: now.Truncate(time.Second)}
			}
			failing = append(failing, id+": "+s.LastError)
		} else if st.pending && old.Version == "" {
			// Never materialised. (A new leader has not read a source yet
			// but its last values are in place: that is not pending.)
			pending = append(pending, id)
		}
		out = append(out, s)
	}
	cond := metav1.Condition{Type: v1alpha1.ConditionSourcesReady, ObservedGeneration: p.obj.GetGeneration()}
	switch {
	case len(failing) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, "SourceError"
		cond.Message = truncate(strings.Join(failing, "\n"), 4096)
	case len(pending) > 0:
		cond.Status, cond.Reason = metav1.ConditionUnknown, "Pending"
		cond.Message = "not read yet: " + strings.Join(pending, ", ")
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, "Materialised"
		cond.Message = fmt.Sprintf("%d sources materialised", len(out))
	}
	next := p.status.DeepCopy()
	next.Sources = out
	next.ObservedGeneration = p.obj.GetGeneration()
	meta.SetStatusCondition(&next.Conditions, cond)
	if equality.Semantic.DeepEqual(next, p.status) {
		return nil
	}
	return c.patchStatus(ctx, p, next)
}

// patchStatus writes a status whole, as a merge patch without a
// resourceVersion: the leader is its only writer, and the cache may lag its
// own last write, so an Update would often conflict.
func (c *Controller) patchStatus(ctx context.Context, p *preset, next *v1alpha1.PodPresetStatus) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{
		"observedGeneration": next.ObservedGeneration, "conditions": next.Conditions, "sources": next.Sources}})
	if err != nil {
		return err
	}
	if err := c.Client.Status().Patch(ctx, p.obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("updating the status: %w", err)
	}
	*p.status = *next
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// CacheSelector is the label selector the manager's cache must use for
// ConfigMaps and Secrets: only the objects the controller writes.
func CacheSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy})
}
