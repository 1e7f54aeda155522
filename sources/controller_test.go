package sources

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podpreset/podpreset/internal/managed"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// controllerFixture is a controller over a fake API server and a fake
// Consul, allowed to read everything.
type controllerFixture struct {
	c      *Controller
	cl     client.Client
	consul *fakeConsul
	n      *notifications
}

func newControllerFixture(t *testing.T, objs ...client.Object) *controllerFixture {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	cl := fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&v1alpha1.PodPreset{}, &v1alpha1.ClusterPodPreset{}).WithObjects(objs...).Build()
	fc := newFakeConsul()
	h, n := newTestHub(t, fc)
	ten := &Tenancy{Consul: true, Vault: true, Config: TenancyConfig{PodPresets: Allowance{ConsulPrefixes: []string{""}, VaultPaths: []string{"*"}}}}
	return &controllerFixture{c: &Controller{Client: cl, Reader: cl, Hub: h, Tenancy: ten}, cl: cl, consul: fc, n: n}
}

// sync reconciles until the hub has read every source: a first pass
// registers them, the hub's notification says they are read.
func (f *controllerFixture) sync(t *testing.T, key types.NamespacedName) {
	t.Helper()
	if _, err := f.c.Reconcile(context.Background(), reconcile.Request{NamespacedName: key}); err != nil {
		t.Logf("first pass: %v", err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case <-f.n.ch:
		case <-time.After(50 * time.Millisecond):
			if _, err := f.c.Reconcile(context.Background(), reconcile.Request{NamespacedName: key}); err != nil {
				t.Logf("reconcile: %v", err)
			}
			return
		case <-deadline:
			t.Fatal("the hub did not settle")
		}
	}
}

func (f *controllerFixture) status(t *testing.T, key types.NamespacedName) *v1alpha1.PodPresetStatus {
	t.Helper()
	var pp v1alpha1.PodPreset
	if err := f.cl.Get(context.Background(), key, &pp); err != nil {
		t.Fatal(err)
	}
	return &pp.Status
}

func filesPreset(prefix string) *v1alpha1.PodPreset {
	return &v1alpha1.PodPreset{
		ObjectMeta: metav1.ObjectMeta{Name: "conf", Namespace: "shop", UID: "uid-conf", Generation: 1},
		Spec:       v1alpha1.PodPresetSpec{Volumes: []v1alpha1.Volume{{Volume: corev1.Volume{Name: "files"}, ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: prefix}}}},
	}
}

var confKey = types.NamespacedName{Namespace: "shop", Name: "conf"}

func TestControllerReportsKeysThatCannotBeFiles(t *testing.T) {
	f := newControllerFixture(t, filesPreset("apps/shop/"))
	f.consul.put("apps/shop/app.yaml", "a: 1")
	f.consul.put("apps/shop/bad name", "b")
	f.sync(t, confKey)
	var cm corev1.ConfigMap
	if err := f.cl.Get(context.Background(), types.NamespacedName{Namespace: "shop", Name: "podpreset-conf-vol-files"}, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data["app.yaml"] != "a: 1" || len(cm.Data) != 1 {
		t.Errorf("ConfigMap data %v: want app.yaml only", cm.Data)
	}
	if !managed.Is(cm.Labels) || len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].UID != "uid-conf" {
		t.Errorf("labels %v, owners %v", cm.Labels, cm.OwnerReferences)
	}
	st := f.status(t, confKey)
	if len(st.Sources) != 1 || !strings.Contains(st.Sources[0].LastError, `"apps/shop/bad name" cannot be a file name`) {
		t.Errorf("status %+v", st.Sources)
	}
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionSourcesReady); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("condition %+v", c)
	}
}

func TestControllerRefusesValuesOverTheSizeLimit(t *testing.T) {
	f := newControllerFixture(t, filesPreset("apps/shop/"))
	f.consul.put("apps/shop/big.bin", strings.Repeat("x", MaxObjectBytes+1))
	f.sync(t, confKey)
	var cm corev1.ConfigMap
	if err := f.cl.Get(context.Background(), types.NamespacedName{Namespace: "shop", Name: "podpreset-conf-vol-files"}, &cm); err == nil {
		t.Errorf("a ConfigMap over the limit was written (%d keys)", len(cm.Data))
	}
	st := f.status(t, confKey)
	if len(st.Sources) != 1 || !strings.Contains(st.Sources[0].LastError, "over the") || !strings.Contains(st.Sources[0].LastError, "podpreset-conf-vol-files") ||
		!strings.Contains(st.Sources[0].LastError, `"apps/shop/big.bin"`) {
		t.Errorf("status %+v", st.Sources)
	}
}

func TestControllerNeverTakesOverAnotherObject(t *testing.T) {
	theirs := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "podpreset-conf-vol-files", Namespace: "shop"}, Data: map[string]string{"keep": "me"}}
	f := newControllerFixture(t, filesPreset("apps/shop/"), theirs)
	f.consul.put("apps/shop/app.yaml", "a: 1")
	f.sync(t, confKey)
	var cm corev1.ConfigMap
	if err := f.cl.Get(context.Background(), client.ObjectKeyFromObject(theirs), &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data["keep"] != "me" || len(cm.Data) != 1 {
		t.Errorf("someone else's ConfigMap was changed: %v", cm.Data)
	}
	// The status names the object, for the webhook to leave it out of
	// pods, and says so in the condition.
	st := f.status(t, confKey)
	want := []v1alpha1.ObjectReference{{Kind: "ConfigMap", Namespace: "shop", Name: "podpreset-conf-vol-files"}}
	if !slices.Equal(st.ForeignObjects, want) {
		t.Errorf("foreignObjects %+v, want %+v", st.ForeignObjects, want)
	}
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionSourcesReady); c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "is not this preset's") {
		t.Errorf("condition %+v", c)
	}
}

func TestControllerKeepsValuesWhileConsulIsDown(t *testing.T) {
	f := newControllerFixture(t, filesPreset("apps/shop/"))
	f.consul.put("apps/shop/app.yaml", "a: 1")
	f.sync(t, confKey)
	f.consul.setDown(true)
	f.sync(t, confKey)
	var cm corev1.ConfigMap
	if err := f.cl.Get(context.Background(), types.NamespacedName{Namespace: "shop", Name: "podpreset-conf-vol-files"}, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data["app.yaml"] != "a: 1" {
		t.Errorf("data while Consul is down: %v", cm.Data)
	}
	st := f.status(t, confKey)
	if len(st.Sources) != 1 || !strings.Contains(st.Sources[0].LastError, "unreachable") || st.Sources[0].LastErrorTime == nil || st.Sources[0].Version == "" {
		t.Errorf("status %+v", st.Sources)
	}
	// A preset that no longer reads the prefix loses its objects.
	var pp v1alpha1.PodPreset
	if err := f.cl.Get(context.Background(), confKey, &pp); err != nil {
		t.Fatal(err)
	}
	pp.Spec.Volumes = []v1alpha1.Volume{{Volume: corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}
	if err := f.cl.Update(context.Background(), &pp); err != nil {
		t.Fatal(err)
	}
	f.sync(t, confKey)
	if err := f.cl.Get(context.Background(), types.NamespacedName{Namespace: "shop", Name: "podpreset-conf-vol-files"}, &cm); err == nil {
		t.Error("the ConfigMap of a removed source is still there")
	}
	if st := f.status(t, confKey); len(st.Sources) != 0 || meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionSourcesReady) != nil {
		t.Errorf("the status still reports sources: %+v", st)
	}
}

// A new leader's first pass finds its sources unread: it looks again
// within a second, so that the status says what the first reads found even
// if the hub's wake-up were lost; once they are read, it waits for the
// resync.
func TestControllerLooksAgainSoonWhileASourceIsUnread(t *testing.T) {
	f := newControllerFixture(t, filesPreset("apps/shop/"))
	f.consul.put("apps/shop/app.yaml", "a: 1")
	res, err := f.c.Reconcile(context.Background(), reconcile.Request{NamespacedName: confKey})
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != firstReadPoll {
		t.Errorf("first pass: again after %s, want %s", res.RequeueAfter, firstReadPoll)
	}
	f.sync(t, confKey)
	if res, err = f.c.Reconcile(context.Background(), reconcile.Request{NamespacedName: confKey}); err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter <= firstReadPoll {
		t.Errorf("with every source read: again after %s, want the resync", res.RequeueAfter)
	}
	// A source that fails is read, too: no fast polling while Consul is down.
	f.consul.setDown(true)
	f.sync(t, confKey)
	if res, err = f.c.Reconcile(context.Background(), reconcile.Request{NamespacedName: confKey}); err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter <= firstReadPoll {
		t.Errorf("with Consul down: again after %s, want the resync", res.RequeueAfter)
	}
}

// staleCache answers Get for one preset with an old copy, as the manager's
// cache does until the watch brings the controller's own last write.
type staleCache struct {
	client.Client
	old *v1alpha1.PodPreset
}

func (s staleCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if pp, ok := obj.(*v1alpha1.PodPreset); ok && key == client.ObjectKeyFromObject(s.old) {
		s.old.DeepCopyInto(pp)
		return nil
	}
	return s.Client.Get(ctx, key, obj, opts...)
}

// The flake of TestSourcesSurviveOutages under load, reproduced: the old
// leader reported Consul down; the new leader's first pass, before its own
// first read, writes the status without the error; its first read fails
// with the same error, while its cache still shows the old leader's status,
// equal to the new one. The status must end up saying Consul is down.
func TestNewLeaderReportsAnOutageItsCacheAlreadyShows(t *testing.T) {
	f := newControllerFixture(t, filesPreset("apps/shop/"))
	f.consul.put("apps/shop/app.yaml", "a: 1")
	f.sync(t, confKey)
	f.consul.setDown(true)
	f.sync(t, confKey)
	var old v1alpha1.PodPreset
	if err := f.cl.Get(context.Background(), confKey, &old); err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(old.Status.Conditions, v1alpha1.ConditionSourcesReady); c == nil || c.Status != metav1.ConditionFalse {
		t.Fatalf("the old leader's status: %+v", old.Status)
	}

	h, n := newTestHub(t, f.consul)
	next := &Controller{Client: staleCache{Client: f.cl, old: &old}, Reader: f.cl, Hub: h, Tenancy: f.c.Tenancy}
	if _, err := next.Reconcile(context.Background(), reconcile.Request{NamespacedName: confKey}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.ch: // the first read failed
	case <-time.After(5 * time.Second):
		t.Fatal("the new leader's hub never read Consul")
	}
	if _, err := next.Reconcile(context.Background(), reconcile.Request{NamespacedName: confKey}); err != nil {
		t.Fatal(err)
	}
	st := f.status(t, confKey)
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionSourcesReady); c == nil || c.Status != metav1.ConditionFalse ||
		len(st.Sources) != 1 || !strings.Contains(st.Sources[0].LastError, "unreachable") {
		t.Errorf("the new leader's status says %+v, want Consul unreachable", st)
	}
}
