package webhook

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// TestPodsWaitForAPresetValidatedAMomentBefore plays the race of a preset
// applied together with its pods: the validator has allowed the preset, the
// watch has not brought it yet, and a pod of its namespace arrives.
func TestPodsWaitForAPresetValidatedAMomentBefore(t *testing.T) {
	s := NewStore()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	pp := cartPresets()[0].(*v1alpha1.PodPreset)
	key := Key{Kind: v1alpha1.KindPodPreset, NamespacedName: types.NamespacedName{Namespace: "shop", Name: pp.Name}}

	// Nothing expected: no wait, whatever the limit.
	s.WaitFor(ctx, "shop", time.Hour)

	v := &PresetValidator{Checks: s.Checks, Expect: s.Expect}
	if resp := validate(t, v, pp, false); !resp.Allowed {
		t.Fatalf("the preset was refused: %v", resp.Result)
	}
	// Another namespace does not wait for it.
	s.WaitFor(ctx, "other", time.Hour)

	// A pod of its namespace waits until the index holds it.
	var loaded atomic.Bool
	go func() {
		time.Sleep(50 * time.Millisecond)
		loaded.Store(true)
		if _, err := s.Load(pp); err != nil {
			t.Error(err)
		}
	}()
	s.WaitFor(ctx, "shop", time.Hour)
	if !loaded.Load() || s.Get(key) == nil || len(s.Set().Match(presets.Namespace{Name: "shop"}, map[string]string{"app": "cart"})) != 1 {
		t.Fatal("the pod went on before the preset was in the index")
	}

	// An update that changes nothing the preset injects waits for nothing.
	pp.Spec.Rollout = &v1alpha1.Rollout{Policy: v1alpha1.RolloutOnChange}
	validate(t, v, pp, false)
	s.WaitFor(ctx, "shop", time.Hour)

	// A dry run promises nothing.
	pp.Spec.Env[0].Value = "db2.shop.svc"
	validate(t, v, pp, true)
	s.WaitFor(ctx, "shop", time.Hour)

	// A preset that never arrives holds pods no longer than the limit.
	validate(t, v, pp, false)
	start := time.Now()
	s.WaitFor(ctx, "shop", 100*time.Millisecond)
	if waited := time.Since(start); waited < 100*time.Millisecond || waited > time.Minute {
		t.Errorf("waited %s for a preset that never came, want the 100ms limit", waited)
	}

	// A ClusterPodPreset is awaited in every namespace.
	cpp := cartPresets()[1].(*v1alpha1.ClusterPodPreset)
	validate(t, v, cpp, false)
	loaded.Store(false)
	go func() {
		time.Sleep(50 * time.Millisecond)
		loaded.Store(true)
		if _, err := s.Load(pp); err != nil { // the update above, at last
			t.Error(err)
		}
		if _, err := s.Load(cpp); err != nil {
			t.Error(err)
		}
	}()
	s.WaitFor(ctx, "anywhere", time.Hour)
	if !loaded.Load() {
		t.Fatal("a pod went on before the ClusterPodPreset was in the index")
	}
}

// validate runs the validator on a preset create.
func validate(t *testing.T, v *PresetValidator, obj v1alpha1.Object, dryRun bool) *admissionv1.AdmissionResponse {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	raw := json.RawMessage(b)
	req := &Request[json.RawMessage]{UID: "1", Operation: admissionv1.Create, Name: obj.GetName(), Namespace: obj.GetNamespace(),
		Kind: metav1.GroupVersionKind{Group: v1alpha1.GroupVersion.Group, Version: v1alpha1.GroupVersion.Version, Kind: obj.PresetKind()}, Object: &raw, DryRun: &dryRun}
	resp, err := v.Handle(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
