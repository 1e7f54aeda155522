package webhook

import (
	"testing"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/admissionpolicy"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// TestPoliciesAreOwnedByTheWebhookConfiguration: the leader's policies and
// bindings are owned by the MutatingWebhookConfiguration an uninstall
// deletes, at its UID; while it is missing (an uninstall under way with
// the leader still running) no policy is written and those there are
// retired, so none can outlive the uninstall without an owner. The garbage
// collector's part is TestAdmissionModeAuto's (e2e).
func TestPoliciesAreOwnedByTheWebhookConfiguration(t *testing.T) {
	sch := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "shop", Generation: 1}}
	pp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	pp.Spec.Env = []v1alpha1.EnvVar{{Name: "LEVEL", Value: "1"}}
	p, errs := presets.Load(pp)
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	store := NewStore()
	store.published = map[Key]*presets.Preset{{Kind: v1alpha1.KindPodPreset, NamespacedName: types.NamespacedName{Namespace: "shop", Name: "settings"}}: p}
	name := admissionpolicy.NamespacePolicyName("shop")
	managed := client.MatchingLabels{admissionpolicy.LabelManagedBy: admissionpolicy.ManagedBy}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "podpreset-webhook", UID: "uid-1"}}
	c := fake.NewClientBuilder().WithScheme(sch).WithObjects(mwc).Build()
	ctl := &PolicyController{Client: c, Reader: c, Store: store, Owner: mwc.Name, Log: logr.Discard()}

	owners := func() [][]metav1.OwnerReference {
		var pol admissionregistrationv1.MutatingAdmissionPolicy
		var b admissionregistrationv1.MutatingAdmissionPolicyBinding
		if err := c.Get(t.Context(), client.ObjectKey{Name: name}, &pol); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(t.Context(), client.ObjectKey{Name: name}, &b); err != nil {
			t.Fatal(err)
		}
		return [][]metav1.OwnerReference{pol.OwnerReferences, b.OwnerReferences}
	}
	want := func(uid types.UID) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration", Name: mwc.Name, UID: uid}}
	}
	if _, err := ctl.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, got := range owners() {
		if !sameOwners(got, want("uid-1")) {
			t.Errorf("owned by %+v, want %+v", got, want("uid-1"))
		}
	}

	// Reinstalled: a new configuration, a new UID; the policy follows it.
	if err := c.Delete(t.Context(), mwc); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(t.Context(), &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mwc.Name, UID: "uid-2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, got := range owners() {
		if !sameOwners(got, want("uid-2")) {
			t.Errorf("after a reinstall owned by %+v, want %+v", got, want("uid-2"))
		}
	}

	// Uninstalled under a running leader: nothing is written, nothing
	// loses its owner, and what is there is retired, then deleted.
	if err := c.DeleteAllOf(t.Context(), &admissionregistrationv1.MutatingWebhookConfiguration{}); err != nil {
		t.Fatal(err)
	}
	ctl.RetireAfter = 1 // ns: deleted at the next reconcile
	for range 2 {
		if _, err := ctl.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	var policies admissionregistrationv1.MutatingAdmissionPolicyList
	var bindings admissionregistrationv1.MutatingAdmissionPolicyBindingList
	if err := c.List(t.Context(), &policies, managed); err != nil {
		t.Fatal(err)
	}
	if err := c.List(t.Context(), &bindings, managed); err != nil {
		t.Fatal(err)
	}
	if len(policies.Items)+len(bindings.Items) > 0 {
		t.Errorf("with no MutatingWebhookConfiguration, %d policies and %d bindings are left", len(policies.Items), len(bindings.Items))
	}
}
