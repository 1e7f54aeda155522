package policy

import (
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// What a tenant with create podpreset in namespace "team" would try, and
// what the default policy says of it.
func TestDefaultPolicyRefusesWhatATenantWouldTry(t *testing.T) {
	saToken := v1alpha1.Volume{Volume: corev1.Volume{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "https://attacker.example", Path: "t"}}}}}}}
	hostPath := v1alpha1.Volume{Volume: corev1.Volume{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
	privileged := corev1.Container{Name: "x", Image: "registry.example.com/platform/init", SecurityContext: &corev1.SecurityContext{
		Privileged: new(true), AllowPrivilegeEscalation: new(true), Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "SYS_ADMIN"}}}}
	hostPort := corev1.Container{Name: "x", Image: "registry.example.com/platform/init", Ports: []corev1.ContainerPort{{ContainerPort: 80, HostPort: 80}}}
	cases := map[string]struct {
		spec   v1alpha1.PodPresetSpec
		policy *v1alpha1.PodPresetPolicySpec // nil: the defaults
		want   []string                      // field: a part of the message
	}{
		"plain env, a ConfigMap volume, annotations of its own": {
			spec: v1alpha1.PodPresetSpec{Env: []v1alpha1.EnvVar{{Name: "LOG_LEVEL", Value: "debug"}},
				Volumes:     []v1alpha1.Volume{{Volume: corev1.Volume{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}}}},
				Annotations: map[string]string{"team.example.com/owner": "team"}},
		},
		"LD_PRELOAD": {
			spec: v1alpha1.PodPresetSpec{Env: []v1alpha1.EnvVar{{Name: "LD_PRELOAD", Value: "/tmp/evil.so"}}},
			want: []string{`spec.env[0].name: Forbidden: PodPresetPolicy (defaults): environment variable "LD_PRELOAD" is denied (matches "LD_PRELOAD")`},
		},
		"a proxy, in lower case": {
			spec: v1alpha1.PodPresetSpec{Env: []v1alpha1.EnvVar{{Name: "https_proxy", Value: "http://attacker:3128"}}},
			want: []string{`spec.env[0].name: Forbidden: PodPresetPolicy (defaults): environment variable "https_proxy" is denied (matches "*_PROXY")`},
		},
		"a hostPath volume": {
			spec: v1alpha1.PodPresetSpec{Volumes: []v1alpha1.Volume{hostPath}},
			want: []string{"spec.volumes[0].hostPath: Forbidden: PodPresetPolicy (defaults): hostPath volumes are not allowed"},
		},
		"a projected service account token for another audience": {
			spec: v1alpha1.PodPresetSpec{Volumes: []v1alpha1.Volume{saToken}},
			want: []string{"spec.volumes[0].projected.sources[0].serviceAccountToken: Forbidden: PodPresetPolicy (defaults): projected service account tokens are not allowed"},
		},
		"an init container at all": {
			spec: v1alpha1.PodPresetSpec{InitContainers: []corev1.Container{{Name: "x", Image: "busybox"}}},
			want: []string{"spec.initContainers[0]: Forbidden: PodPresetPolicy (defaults): injected init containers are not allowed"},
		},
		"an image from elsewhere": {
			spec:   v1alpha1.PodPresetSpec{InitContainers: []corev1.Container{{Name: "x", Image: "registry.example.com/platform-evil/x"}}},
			policy: &v1alpha1.PodPresetPolicySpec{InitContainers: v1alpha1.InitContainerPolicy{AllowedImages: []string{"registry.example.com/platform/"}}},
			want:   []string{`spec.initContainers[0].image: Forbidden: PodPresetPolicy p: image "registry.example.com/platform-evil/x" does not start with an allowed prefix`},
		},
		"an allowed image, privileged, adding capabilities": {
			spec:   v1alpha1.PodPresetSpec{InitContainers: []corev1.Container{privileged}},
			policy: &v1alpha1.PodPresetPolicySpec{InitContainers: v1alpha1.InitContainerPolicy{AllowedImages: []string{"registry.example.com/platform/"}, AllowedCapabilities: []string{"CAP_NET_ADMIN"}}},
			want: []string{"spec.initContainers[0].securityContext.privileged: Forbidden", "spec.initContainers[0].securityContext.allowPrivilegeEscalation: Forbidden",
				"spec.initContainers[0].securityContext.capabilities.add[1]: Forbidden: PodPresetPolicy p: capability SYS_ADMIN is not allowed"},
		},
		"a host port": {
			spec:   v1alpha1.PodPresetSpec{InitContainers: []corev1.Container{hostPort}},
			policy: &v1alpha1.PodPresetPolicySpec{InitContainers: v1alpha1.InitContainerPolicy{AllowedImages: []string{"*"}}},
			want:   []string{"spec.initContainers[0].ports[0].hostPort: Forbidden"},
		},
		"LD_PRELOAD in an injected init container's own env": {
			spec: v1alpha1.PodPresetSpec{InitContainers: []corev1.Container{{Name: "x", Image: "registry.example.com/platform/init",
				Env: []corev1.EnvVar{{Name: "LD_PRELOAD", Value: "x"}}}}},
			policy: &v1alpha1.PodPresetPolicySpec{InitContainers: v1alpha1.InitContainerPolicy{AllowedImages: []string{"registry.example.com/platform/"}}},
			want:   []string{`spec.initContainers[0].env[0].name: Forbidden: PodPresetPolicy p: environment variable "LD_PRELOAD" is denied`},
		},
		"taking pods out of the mesh": {
			spec: v1alpha1.PodPresetSpec{Annotations: map[string]string{"sidecar.istio.io/inject": "false", "cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}},
			want: []string{`spec.annotations[cluster-autoscaler.kubernetes.io/safe-to-evict]: Forbidden: PodPresetPolicy (defaults): annotation key "cluster-autoscaler.kubernetes.io/safe-to-evict" is denied (matches "*kubernetes.io/*")`,
				`spec.annotations[sidecar.istio.io/inject]: Forbidden: PodPresetPolicy (defaults): annotation key "sidecar.istio.io/inject" is denied (matches "*istio.io/*")`},
		},
		"a Vault agent injector annotation": {
			spec: v1alpha1.PodPresetSpec{Annotations: map[string]string{"vault.hashicorp.com/role": "admin"}},
			want: []string{`annotation key "vault.hashicorp.com/role" is denied`},
		},
		"an allow list": {
			spec:   v1alpha1.PodPresetSpec{Env: []v1alpha1.EnvVar{{Name: "APP_MODE", Value: "x"}, {Name: "OTHER", Value: "y"}}},
			policy: &v1alpha1.PodPresetPolicySpec{Env: v1alpha1.EnvPolicy{Allowed: []string{"APP_*"}}},
			want:   []string{`spec.env[1].name: Forbidden: PodPresetPolicy p: environment variable "OTHER" is not in the allowed list (APP_*)`},
		},
		"an empty deny list denies nothing": {
			spec:   v1alpha1.PodPresetSpec{Env: []v1alpha1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://proxy:3128"}}},
			policy: &v1alpha1.PodPresetPolicySpec{Env: v1alpha1.EnvPolicy{Denied: []string{}}},
		},
		"allowed volume types": {
			spec: v1alpha1.PodPresetSpec{Volumes: []v1alpha1.Volume{{Volume: corev1.Volume{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				{Volume: corev1.Volume{Name: "n", VolumeSource: corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "x", Path: "/"}}}}}},
			policy: &v1alpha1.PodPresetPolicySpec{Volumes: v1alpha1.VolumePolicy{AllowedTypes: []string{"emptyDir", "configMap"}}},
			want:   []string{"spec.volumes[1].nfs: Forbidden: PodPresetPolicy p: nfs volumes are not allowed: volumes.allowedTypes is emptyDir, configMap"},
		},
		"everything allowed": {
			spec:   v1alpha1.PodPresetSpec{Volumes: []v1alpha1.Volume{hostPath, saToken}, InitContainers: []corev1.Container{privileged}},
			policy: &v1alpha1.PodPresetPolicySpec{Volumes: v1alpha1.VolumePolicy{AllowHostPath: true, AllowServiceAccountTokens: true}, InitContainers: v1alpha1.InitContainerPolicy{AllowedImages: []string{"*"}, AllowPrivileged: true, AllowedCapabilities: []string{"NET_ADMIN", "SYS_ADMIN"}}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := Default()
			if tc.policy != nil {
				p = v1alpha1.PodPresetPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: *tc.policy}
				SetDefaults(&p.Spec)
			}
			errs := Check(&p, &tc.spec)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("error %d:\n%s\nwant it to contain\n%s", i, got[i], w)
				}
			}
		})
	}
}

func TestGoverningPolicies(t *testing.T) {
	strict := v1alpha1.PodPresetPolicy{ObjectMeta: metav1.ObjectMeta{Name: "strict"},
		Spec: v1alpha1.PodPresetPolicySpec{NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"tier": "tenant"}}}}
	platform := v1alpha1.PodPresetPolicy{ObjectMeta: metav1.ObjectMeta{Name: "platform"},
		Spec: v1alpha1.PodPresetPolicySpec{NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"tier": "platform"}},
			InitContainers: v1alpha1.InitContainerPolicy{AllowedImages: []string{"*"}}}}
	clusterToo := v1alpha1.PodPresetPolicy{ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
		Spec: v1alpha1.PodPresetPolicySpec{NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"none": "none"}}, ClusterPodPresets: true}}
	set, err := NewSet(strict, platform, clusterToo)
	if err != nil {
		t.Fatal(err)
	}
	names := func(ps []v1alpha1.PodPresetPolicy) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	for name, tc := range map[string]struct {
		kind   string
		labels map[string]string
		want   []string
	}{
		"a tenant namespace":              {kind: v1alpha1.KindPodPreset, labels: map[string]string{"tier": "tenant"}, want: []string{"strict"}},
		"a platform namespace":            {kind: v1alpha1.KindPodPreset, labels: map[string]string{"tier": "platform"}, want: []string{"platform"}},
		"a namespace no policy selects":   {kind: v1alpha1.KindPodPreset, labels: map[string]string{}, want: []string{DefaultName}},
		"ClusterPodPresets, when told to": {kind: v1alpha1.KindClusterPodPreset, want: []string{"cluster"}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := names(set.Governing(tc.kind, tc.labels)); !slices.Equal(got, tc.want) {
				t.Errorf("governed by %v, want %v", got, tc.want)
			}
		})
	}
	// With no policy saying so, ClusterPodPresets are exempt.
	if got := (*Set)(nil).Governing(v1alpha1.KindClusterPodPreset, nil); len(got) != 0 {
		t.Errorf("a ClusterPodPreset is governed by %v without a policy", names(got))
	}
	// The checker is a presets.Check that names the policy.
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team"},
		Spec: v1alpha1.PodPresetSpec{InitContainers: []corev1.Container{{Name: "x", Image: "busybox"}}}}
	c := &Checker{Policies: set, Namespaces: func(string) map[string]string { return map[string]string{"tier": "platform"} }}
	if _, errs := presets.Load(pp, c); len(errs) != 0 {
		t.Errorf("a platform namespace may inject init containers: %v", errs)
	}
	c.Namespaces = func(string) map[string]string { return map[string]string{"tier": "tenant"} }
	p, errs := presets.Load(pp, c)
	if len(errs) != 1 || p.Refused() == nil || p.Refused().Reason != v1alpha1.ReasonPolicyViolation || !strings.Contains(p.Refused().Message, "PodPresetPolicy strict") {
		t.Errorf("a tenant namespace: errors %v, refusal %+v", errs, p.Refused())
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		fold, want    bool
	}{
		{"LD_PRELOAD", "LD_PRELOAD", false, true},
		{"LD_PRELOAD", "LD_PRELOADX", false, false},
		{"*_PROXY", "HTTPS_PROXY", false, true},
		{"*_PROXY", "https_proxy", true, true},
		{"*_PROXY", "https_proxy", false, false},
		{"*_PROXY", "_PROXY", false, true},
		{"*_PROXY", "PROXY", false, false},
		{"sidecar.istio.io/*", "sidecar.istio.io/inject", false, true},
		{"*istio.io/*", "sidecar.istio.io/inject", false, true},
		{"*istio.io/*", "istio.io/rev", false, true},
		{"*kubernetes.io/*", "kubernetes.io/psp", false, true},
		{"*kubernetes.io/*", "example.com/kubernetes", false, false},
		{"a*b*c", "abc", false, true},
		{"a*b*c", "axxbyyc", false, true},
		{"a*b*c", "axxcyyb", false, false},
		{"*", "", false, true},
	} {
		if got := Match(tc.pattern, tc.name, tc.fold); got != tc.want {
			t.Errorf("Match(%q, %q, %v) = %v, want %v", tc.pattern, tc.name, tc.fold, got, tc.want)
		}
	}
}

// TestCRDDefaultsAreTheDefaults checks that the API server defaults a
// policy to what Default and SetDefaults say (the CRD's +kubebuilder:default
// markers), so that the cluster and the CLI agree.
func TestCRDDefaultsAreTheDefaults(t *testing.T) {
	b, err := os.ReadFile("../../manifests/crd/podpreset.dev_podpresetpolicies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	for field, want := range map[string][]string{"env": DefaultDeniedEnv, "annotations": DefaultDeniedAnnotations} {
		denied := spec.Properties[field].Properties["denied"]
		var got []string
		if denied.Default == nil || yaml.Unmarshal(denied.Default.Raw, &got) != nil || !slices.Equal(got, want) {
			t.Errorf("spec.%s.denied defaults to %s in the CRD, want %v", field, denied.Default, want)
		}
		if d := spec.Properties[field].Default; d == nil || string(d.Raw) != "{}" {
			t.Errorf("spec.%s defaults to %v, want {} (so that the list's default applies)", field, d)
		}
	}
}
