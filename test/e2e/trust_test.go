package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// These tests play a tenant who may create PodPresets and edit everything
// in one namespace, and try what such a tenant would try.

// createWithWarnings creates an object and returns the warnings the API
// server sent back (the webhook's).
func createWithWarnings(t *testing.T, obj client.Object) []string {
	t.Helper()
	c, w, err := warningClient()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
	return w.take()
}

// whileWebhookIsDown runs f with the webhook stopped (and with it the
// sources controller, which runs in the same process here), as during an
// upgrade or an outage: the validating webhook fails open.
func whileWebhookIsDown(t *testing.T, f func()) {
	t.Helper()
	if err := cp.StopWebhook(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cp.StartWebhook(context.Background(), webhookBin, &webhookLog, webhookArgs...); err != nil {
			t.Fatal(err)
		}
	}()
	f()
}

// condition waits until a preset's condition has a status and its
// message contains what is wanted.
func condition(t *testing.T, obj client.Object, typ string, status metav1.ConditionStatus, reason, message string) *metav1.Condition {
	t.Helper()
	var c *metav1.Condition
	eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		c = meta.FindStatusCondition(obj.(v1alpha1.Object).PresetStatus().Conditions, typ)
		if c == nil || c.Status != status || c.Reason != reason || !strings.Contains(c.Message, message) {
			return fmt.Errorf("%s is %+v, want %s %s saying %q", typ, c, status, reason, message)
		}
		return nil
	})
	return c
}

func consulPrefixEnvFrom(name, ns, prefix string, labels map[string]string) *v1alpha1.PodPreset {
	pp := podPreset(name, ns, labels)
	pp.Spec.EnvFrom = []v1alpha1.EnvFromSource{{ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: prefix}}}
	return pp
}

// TestConsulTenancyCannotBeWalkedAround: a PodPreset in the tenant's
// namespace, under the tenancy apps/<namespace>/, asks for another
// namespace's keys every way a path can step out of its folder.
func TestConsulTenancyCannotBeWalkedAround(t *testing.T) {
	tenant, victim := namespace(t, nil), namespace(t, nil)
	labels := map[string]string{"app": "walker"}
	password := secretValue(t)
	putConsul(t, "apps/"+victim+"/db-password", password)
	putConsul(t, "apps/"+tenant+"/ok", "fine")
	escape := "apps/" + tenant + "/../" + victim + "/"

	for name, tc := range map[string]struct {
		preset *v1alpha1.PodPreset
		want   string
	}{
		"a prefix with ..": {preset: consulPrefixEnvFrom("walk", tenant, escape, labels),
			want: `spec.envFrom[0].consulKV.prefix: Invalid value: "` + escape + `": a Consul prefix must not start with /, or have an empty, . or .. segment`},
		"a key with ..": {preset: podPreset("walk", tenant, labels, consulEnv("PW", "apps/"+tenant+"/../"+victim+"/db-password")),
			want: "spec.env[0].valueFrom.consulKV.key: Invalid value"},
		"percent-encoded dots": {preset: consulPrefixEnvFrom("walk", tenant, "apps/"+tenant+"/%2e%2e/"+victim+"/", labels),
			want: `spec.envFrom[0].consulKV.prefix: Invalid value: "apps/` + tenant + `/%2e%2e/` + victim + `/": a Consul prefix must not contain '%'`},
		"a sibling namespace that starts the same": {preset: consulPrefixEnvFrom("walk", tenant, "apps/"+tenant+"-evil/", labels),
			want: "spec.envFrom[0].consulKV: Forbidden: Consul key \"apps/" + tenant + "-evil/\" is not allowed"},
		"the folder without its slash": {preset: consulPrefixEnvFrom("walk", tenant, "apps/"+tenant, labels),
			want: "spec.envFrom[0].consulKV: Forbidden"},
	} {
		t.Run("refused by the API server: "+name, func(t *testing.T) {
			err := k8s.Create(t.Context(), tc.preset)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want Invalid saying %q", err, tc.want)
			}
		})
	}

	t.Run("never read when it reached the cluster with the webhook down", func(t *testing.T) {
		// A preset the tenancy allows, so that Consul's log shows what a
		// read looks like there.
		ok := podPreset("ok", tenant, map[string]string{"app": "ok"}, consulEnv("OK", "apps/"+tenant+"/ok"))
		createSourcesPreset(t, ok)
		sourcesCondition(t, ok, metav1.ConditionTrue, 20*time.Second)
		logStart := len(consulLog.String())
		walked := consulPrefixEnvFrom("walked", tenant, escape, labels)
		whileWebhookIsDown(t, func() { createSourcesPreset(t, walked) })
		// The controller refuses it before any read, and says why.
		st := sourcesCondition(t, walked, metav1.ConditionFalse, 20*time.Second)
		if src := sourceStatus(t, st, "consul-prefix:"+escape); !strings.Contains(src.LastError, "is never read") || src.Version != "" {
			t.Errorf("status of the walked source: %+v", src)
		}
		condition(t, walked, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonInvalid, "spec.envFrom[0].consulKV.prefix")
		// The webhook never points a pod at it.
		w := createWithWarnings(t, testPod("walker", tenant, labels))
		if !slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, "PodPreset/walked@1 was not applied (Invalid)") }) {
			t.Errorf("warnings %q do not say the preset was refused", w)
		}
		// Nothing of the victim's is in the tenant's namespace, and Consul
		// was never asked for it (its log has a line per request).
		var cms corev1.ConfigMapList
		var secs corev1.SecretList
		if err := k8s.List(t.Context(), &cms, client.InNamespace(tenant)); err != nil {
			t.Fatal(err)
		}
		if err := k8s.List(t.Context(), &secs, client.InNamespace(tenant)); err != nil {
			t.Fatal(err)
		}
		for _, cm := range cms.Items {
			for k, v := range cm.Data {
				if v == password {
					t.Errorf("the victim's password is in ConfigMap %s/%s under %s", tenant, cm.Name, k)
				}
			}
		}
		for _, s := range secs.Items {
			for k, v := range s.Data {
				if string(v) == password {
					t.Errorf("the victim's password is in Secret %s/%s under %s", tenant, s.Name, k)
				}
			}
		}
		log := consulLog.String()[logStart:]
		if !strings.Contains(consulLog.String(), "/v1/kv/apps/"+tenant+"/ok") {
			t.Fatal("Consul's log has no line for the allowed read: it cannot tell what was not read")
		}
		for _, never := range []string{"/v1/kv/apps/" + tenant + "/..", "/v1/kv/apps/" + victim} {
			if strings.Contains(log, never) {
				t.Errorf("Consul was asked for %s", never)
			}
		}
	})
}

// TestPresetPolicyIsEnforced: what a namespace's presets may inject is
// bounded by the PodPresetPolicies (and their defaults), when the preset is
// created and again when a pod is.
func TestPresetPolicyIsEnforced(t *testing.T) {
	tenant := namespace(t, map[string]string{"tier": "tenant"})
	labels := map[string]string{"app": "pol"}
	withInit := func(name, ns, image string) *v1alpha1.PodPreset {
		pp := podPreset(name, ns, labels)
		pp.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: image}}
		return pp
	}
	hostPath := podPreset("hostpath", tenant, labels)
	hostPath.Spec.Volumes = []v1alpha1.Volume{{Volume: corev1.Volume{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}}
	hostPath.Spec.VolumeMounts = []corev1.VolumeMount{{Name: "root", MountPath: "/host"}}
	token := podPreset("token", tenant, labels)
	token.Spec.Volumes = []v1alpha1.Volume{{Volume: corev1.Volume{Name: "t", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "https://attacker.example", Path: "token"}}}}}}}}
	mesh := podPreset("mesh", tenant, labels)
	mesh.Spec.Annotations = map[string]string{"sidecar.istio.io/inject": "false"}
	for name, tc := range map[string]struct {
		preset *v1alpha1.PodPreset
		want   string
	}{
		"LD_PRELOAD": {preset: podPreset("preload", tenant, labels, env("LD_PRELOAD", "/tmp/evil.so")),
			want: `spec.env[0].name: Forbidden: PodPresetPolicy (defaults): environment variable "LD_PRELOAD" is denied`},
		"a proxy": {preset: podPreset("proxy", tenant, labels, env("HTTPS_PROXY", "http://attacker:3128")),
			want: `environment variable "HTTPS_PROXY" is denied (matches "*_PROXY")`},
		"an init container":  {preset: withInit("init", tenant, "busybox"), want: "spec.initContainers[0]: Forbidden: PodPresetPolicy (defaults): injected init containers are not allowed"},
		"a hostPath volume":  {preset: hostPath, want: "spec.volumes[0].hostPath: Forbidden"},
		"a token for others": {preset: token, want: "spec.volumes[0].projected.sources[0].serviceAccountToken: Forbidden"},
		"out of the mesh":    {preset: mesh, want: `spec.annotations[sidecar.istio.io/inject]: Forbidden: PodPresetPolicy (defaults): annotation key "sidecar.istio.io/inject" is denied`},
	} {
		t.Run("refused by the API server: "+name, func(t *testing.T) {
			err := k8s.Create(t.Context(), tc.preset)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want Invalid saying %q", err, tc.want)
			}
		})
	}

	t.Run("skipped for every pod when it reached the cluster with the webhook down", func(t *testing.T) {
		sneaky := podPreset("sneaky", tenant, labels, env("LD_PRELOAD", "/tmp/evil.so"), env("HARMLESS", "1"))
		whileWebhookIsDown(t, func() { create(t, sneaky) })
		const refused = `podpreset_presets_refused_total{reason="PolicyViolation"}`
		before := counters(t)[refused]
		pod := testPod("victim", tenant, labels)
		w := createWithWarnings(t, pod)
		if !slices.ContainsFunc(w, func(s string) bool {
			return strings.Contains(s, "PodPreset/sneaky@1 was not applied (PolicyViolation)") && strings.Contains(s, `"LD_PRELOAD" is denied`)
		}) {
			t.Errorf("warnings %q do not say why the preset was skipped", w)
		}
		if got := envOf(pod.Spec.Containers[0]); len(got) != 0 || strings.Contains(pod.Annotations[presets.AnnotationApplied], "sneaky") {
			t.Errorf("the pod got env %v, applied %q", got, pod.Annotations[presets.AnnotationApplied])
		}
		if n := counters(t)[refused] - before; n != 1 {
			t.Errorf("%s grew by %v, want 1", refused, n)
		}
		condition(t, sneaky, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonPolicyViolation, "spec.env[0].name")
	})

	t.Run("a policy loosens a namespace, and its changes reach existing presets", func(t *testing.T) {
		tier := "platform-" + rand.String(5)
		platform := namespace(t, map[string]string{"tier": tier})
		pol := &v1alpha1.PodPresetPolicy{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + tier}, Spec: v1alpha1.PodPresetPolicySpec{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"tier": tier}},
			InitContainers:    v1alpha1.InitContainerPolicy{AllowedImages: []string{"registry.example/platform/"}},
		}}
		create(t, pol)
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), pol) })
		// The API server defaulted the lists the policy left unset.
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pol), pol); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(pol.Spec.Env.Denied, "LD_PRELOAD") || !slices.Contains(pol.Spec.Annotations.Denied, "*istio.io/*") {
			t.Errorf("the stored policy has env %+v, annotations %+v: want the default denied lists", pol.Spec.Env, pol.Spec.Annotations)
		}
		// Once the webhook holds the policy, an allowed image passes in the
		// platform namespace only.
		eventually(t, 20*time.Second, func() error {
			return k8s.Create(t.Context(), withInit("setup", platform, "registry.example/platform/init:1"), client.DryRunAll)
		})
		create(t, withInit("setup", platform, "registry.example/platform/init:1"))
		if err := k8s.Create(t.Context(), withInit("setup", platform, "registry.example/other/init:1")); !apierrors.IsInvalid(err) ||
			!strings.Contains(err.Error(), `spec.initContainers[0].image: Forbidden: PodPresetPolicy `+pol.Name+`: image "registry.example/other/init:1" does not start with an allowed prefix`) {
			t.Errorf("another registry in the platform namespace: %v", err)
		}
		if err := k8s.Create(t.Context(), withInit("setup", tenant, "registry.example/platform/init:1")); !apierrors.IsInvalid(err) {
			t.Errorf("the tenant namespace, which no policy selects: %v", err)
		}
		// A namespace and its presets applied together (kubectl apply -f
		// of both): the namespace's labels decide, both ways, whether or
		// not the webhook's cache has seen the namespace yet (here it
		// mostly has; TestPresetInANamespaceTheCacheHasNotSeen, in
		// webhook, takes the cache's side away).
		for i := range 5 {
			if err := k8s.Create(t.Context(), withInit("setup", namespace(t, map[string]string{"tier": tier}), "registry.example/platform/init:1")); err != nil {
				t.Errorf("try %d: a preset created right after its platform namespace: %v", i, err)
			}
			if err := k8s.Create(t.Context(), withInit("setup", namespace(t, map[string]string{"tier": "tenant"}), "registry.example/platform/init:1")); !apierrors.IsInvalid(err) {
				t.Errorf("try %d: a preset created right after its tenant namespace: %v", i, err)
			}
		}
		debug := podPreset("debug", platform, labels, env("DEBUG_LEVEL", "3"))
		create(t, debug)
		condition(t, debug, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted, "")
		// The admin denies DEBUG_*: the existing preset is refused from
		// then on, and its status says so.
		eventually(t, 10*time.Second, func() error {
			if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(pol), pol); err != nil {
				return err
			}
			pol.Spec.Env.Denied = append(pol.Spec.Env.Denied, "DEBUG_*")
			return k8s.Update(t.Context(), pol)
		})
		condition(t, debug, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonPolicyViolation, `"DEBUG_LEVEL" is denied (matches "DEBUG_*")`)
		pod := testPod("after-policy-change", platform, labels)
		create(t, pod)
		if got := envOf(pod.Spec.Containers[0]); got["DEBUG_LEVEL"] != "" {
			t.Errorf("a pod got DEBUG_LEVEL after the policy denied it")
		}
	})

	t.Run("ClusterPodPresets are the admins' and exempt by default", func(t *testing.T) {
		cpp := &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: "e2e-proxy-" + rand.String(5)}}
		cpp.Spec.NamespaceSelector = metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: tenant}}
		cpp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "proxied"}}
		cpp.Spec.Env = []v1alpha1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://egress.platform:3128"}}
		createPreset(t, cpp)
		waitForPreset(t, tenant, map[string]string{"app": "proxied"}, "ClusterPodPreset/"+cpp.Name+"@1")
	})
}
