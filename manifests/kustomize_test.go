package manifests

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/podpreset/podpreset/sources"
)

// build runs kustomize on a directory, as `kubectl apply -k` does.
func build(t *testing.T, dir string) resmap.ResMap {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return m
}

// object finds one object by kind and name and decodes it.
func object(t *testing.T, m resmap.ResMap, kind, name string, into any) {
	t.Helper()
	for _, r := range m.Resources() {
		if r.GetKind() == kind && r.GetName() == name {
			b, err := r.AsYAML()
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.UnmarshalStrict(b, into); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return
		}
	}
	var have []string
	for _, r := range m.Resources() {
		have = append(have, r.GetKind()+"/"+r.GetName())
	}
	t.Fatalf("no %s %s in %v", kind, name, have)
}

func TestDefaultInstall(t *testing.T) {
	m := build(t, "default")
	var have []string
	for _, r := range m.Resources() {
		have = append(have, r.GetKind()+" "+r.GetNamespace()+"/"+r.GetName())
	}
	want := []string{
		"Namespace /podpreset-system",
		"CustomResourceDefinition /podpresets.podpreset.dev",
		"CustomResourceDefinition /clusterpodpresets.podpreset.dev",
		"CustomResourceDefinition /podpresetpolicies.podpreset.dev",
		"ServiceAccount podpreset-system/podpreset-webhook",
		"ClusterRole /podpreset-view",
		"ClusterRole /podpreset-edit",
		"Role podpreset-system/podpreset-webhook",
		"ClusterRole /podpreset-webhook",
		"RoleBinding podpreset-system/podpreset-webhook",
		"ClusterRoleBinding /podpreset-webhook",
		"Service podpreset-system/podpreset-webhook-service",
		"Deployment podpreset-system/podpreset-webhook",
		"PodDisruptionBudget podpreset-system/podpreset-webhook",
		"MutatingWebhookConfiguration /podpreset-webhook",
		"ValidatingWebhookConfiguration /podpreset-webhook",
	}
	if diff := cmp.Diff(want, have, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}

	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	object(t, m, "MutatingWebhookConfiguration", "podpreset-webhook", &mwc)
	w := mwc.Webhooks[0]
	if *w.FailurePolicy != admissionregistrationv1.Ignore || *w.TimeoutSeconds != 5 || *w.SideEffects != admissionregistrationv1.SideEffectClassNone ||
		*w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Errorf("pod webhook: failurePolicy %s, timeout %d, sideEffects %s, reinvocation %s; want Ignore, 5, None, IfNeeded",
			*w.FailurePolicy, *w.TimeoutSeconds, *w.SideEffects, *w.ReinvocationPolicy)
	}
	if got := w.Rules[0].Operations; !cmp.Equal(got, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) {
		t.Errorf("pod webhook operations %v, want CREATE only", got)
	}
	if s := w.ClientConfig.Service; s == nil || s.Namespace != "podpreset-system" || s.Name != "podpreset-webhook-service" || *s.Path != "/mutate-pods" {
		t.Errorf("pod webhook service %+v, want podpreset-system/podpreset-webhook-service /mutate-pods", s)
	}
	wantSel := `matchExpressions:
- key: kubernetes.io/metadata.name
  operator: NotIn
  values:
  - kube-system
  - podpreset-system
- key: podpreset.dev/ignore
  operator: NotIn
  values:
  - "true"
`
	sel, _ := yaml.Marshal(w.NamespaceSelector)
	if diff := cmp.Diff(wantSel, string(sel)); diff != "" {
		t.Errorf("pod webhook namespaceSelector (-want +got):\n%s", diff)
	}
	if len(mwc.Annotations) != 0 {
		t.Errorf("the self-managed install carries annotations on its webhook configuration: %v", mwc.Annotations)
	}

	var d appsv1.Deployment
	object(t, m, "Deployment", "podpreset-webhook", &d)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	switch {
	case *d.Spec.Replicas < 2:
		t.Errorf("replicas %d, want at least 2", *d.Spec.Replicas)
	case pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil:
		t.Error("no pod anti-affinity")
	case pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot:
		t.Error("the pod may run as root")
	case c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem:
		t.Error("the root filesystem is writable")
	case c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation:
		t.Error("privilege escalation allowed")
	case c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero():
		t.Error("no resource requests")
	case c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil:
		t.Error("probes missing")
	case c.Image != "ghcr.io/podpreset/podpreset-webhook:v0.1.0":
		t.Errorf("image %s", c.Image)
	case !slices.Contains(c.Args, "--cert-mode=self") || !slices.Contains(c.Args, "--webhook-config-name="+mwc.Name):
		t.Errorf("args %v: want self-managed certificates for %s", c.Args, mwc.Name)
	case len(pod.Volumes) != 0:
		t.Errorf("volumes %v: the self-managed install mounts nothing", pod.Volumes)
	}
	var ns corev1.Namespace
	object(t, m, "Namespace", "podpreset-system", &ns)
	if ns.Labels["podpreset.dev/ignore"] != "true" {
		t.Errorf("the webhook's namespace is not labelled podpreset.dev/ignore=true: %v", ns.Labels)
	}
}

func TestCertManagerInstall(t *testing.T) {
	m := build(t, "cert-manager")
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	object(t, m, "MutatingWebhookConfiguration", "podpreset-webhook", &mwc)
	if mwc.Annotations["cert-manager.io/inject-ca-from"] != "podpreset-system/podpreset-webhook" {
		t.Errorf("no cert-manager CA injection annotation: %v", mwc.Annotations)
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	object(t, m, "ValidatingWebhookConfiguration", "podpreset-webhook", &vwc)
	if vwc.Annotations["cert-manager.io/inject-ca-from"] != "podpreset-system/podpreset-webhook" {
		t.Errorf("no cert-manager CA injection annotation on the validating webhook: %v", vwc.Annotations)
	}
	var d appsv1.Deployment
	object(t, m, "Deployment", "podpreset-webhook", &d)
	c := d.Spec.Template.Spec.Containers[0]
	if !slices.Contains(c.Args, "--cert-mode=external") || !slices.Contains(c.Args, "--cert-dir=/certs") {
		t.Errorf("args %v: want external certificates from /certs", c.Args)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/certs" || d.Spec.Template.Spec.Volumes[0].Secret.SecretName != "podpreset-webhook-tls" {
		t.Errorf("mounts %v volumes %v: want Secret podpreset-webhook-tls at /certs", c.VolumeMounts, d.Spec.Template.Spec.Volumes)
	}
	var cert struct {
		Spec struct {
			SecretName string   `json:"secretName"`
			DNSNames   []string `json:"dnsNames"`
		} `json:"spec"`
	}
	for _, r := range m.Resources() {
		if r.GetKind() == "Certificate" && r.GetName() == "podpreset-webhook" {
			b, _ := r.AsYAML()
			if err := yaml.Unmarshal(b, &cert); err != nil {
				t.Fatal(err)
			}
		}
	}
	if cert.Spec.SecretName != "podpreset-webhook-tls" || !slices.Contains(cert.Spec.DNSNames, "podpreset-webhook-service.podpreset-system.svc") {
		t.Errorf("serving Certificate %+v", cert.Spec)
	}
}

func TestSourcesInstall(t *testing.T) {
	// Without sources, no access to ConfigMaps or Secrets outside the
	// webhook's own namespace.
	for _, r := range build(t, "default").Resources() {
		if r.GetKind() != "ClusterRole" {
			continue
		}
		var cr rbacv1.ClusterRole
		object(t, build(t, "default"), "ClusterRole", r.GetName(), &cr)
		for _, rule := range cr.Rules {
			if slices.Contains(rule.Resources, "secrets") || slices.Contains(rule.Resources, "configmaps") {
				t.Errorf("the default install's ClusterRole %s grants %v on %v", r.GetName(), rule.Verbs, rule.Resources)
			}
		}
	}
	m := build(t, "sources")
	// Only the sources controller's service account may touch Secrets
	// cluster-wide.
	var crb rbacv1.ClusterRoleBinding
	object(t, m, "ClusterRoleBinding", "podpreset-sources", &crb)
	if len(crb.Subjects) != 1 || crb.Subjects[0].Name != "podpreset-sources" || crb.Subjects[0].Namespace != "podpreset-system" {
		t.Errorf("the sources role is bound to %+v", crb.Subjects)
	}
	var webhookD, sourcesD appsv1.Deployment
	object(t, m, "Deployment", "podpreset-webhook", &webhookD)
	object(t, m, "Deployment", "podpreset-sources", &sourcesD)
	wc, sc := webhookD.Spec.Template.Spec.Containers[0], sourcesD.Spec.Template.Spec.Containers[0]
	if !slices.Contains(wc.Args, "--role=webhook") || !slices.Contains(wc.Args, "--sources-config=/etc/podpreset/sources.yaml") || !slices.Contains(wc.Args, "--cert-mode=self") {
		t.Errorf("webhook args %v: want --role=webhook with the configuration, for tenancy", wc.Args)
	}
	if !slices.Contains(sc.Args, "--role=sources") || !slices.Contains(sc.Args, "--sources-config=/etc/podpreset/sources.yaml") || !slices.Contains(sc.Args, "--leader-elect") {
		t.Errorf("sources args %v", sc.Args)
	}
	if webhookD.Spec.Template.Spec.ServiceAccountName != "podpreset-webhook" || sourcesD.Spec.Template.Spec.ServiceAccountName != "podpreset-sources" {
		t.Errorf("service accounts %s and %s", webhookD.Spec.Template.Spec.ServiceAccountName, sourcesD.Spec.Template.Spec.ServiceAccountName)
	}
	if sc.Image != wc.Image || sc.SecurityContext == nil || !*sc.SecurityContext.ReadOnlyRootFilesystem || sc.ReadinessProbe == nil {
		t.Errorf("sources container: image %s (webhook %s), security context %+v", sc.Image, wc.Image, sc.SecurityContext)
	}
	// The webhook mounts the configuration only; the sources controller
	// the configuration and the credentials Secret.
	if c := wc; len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/etc/podpreset" {
		t.Errorf("the webhook mounts %v", c.VolumeMounts)
	}
	if c := sc; len(c.VolumeMounts) != 2 || c.VolumeMounts[0].MountPath != "/etc/podpreset" || c.VolumeMounts[1].MountPath != "/etc/podpreset-credentials" {
		t.Errorf("the sources controller mounts %v", c.VolumeMounts)
	}
	vols := sourcesD.Spec.Template.Spec.Volumes
	if len(vols) != 2 || vols[0].ConfigMap == nil || !strings.HasPrefix(vols[0].ConfigMap.Name, "podpreset-sources-") ||
		vols[1].Secret == nil || vols[1].Secret.SecretName != "podpreset-sources-credentials" {
		t.Fatalf("volumes %v: want the generated podpreset-sources ConfigMap and the credentials Secret", vols)
	}
	// The webhook's service account may read only its certificate Secret,
	// by name: never the credentials.
	var role rbacv1.Role
	object(t, m, "Role", "podpreset-webhook", &role)
	for _, rule := range role.Rules {
		reads := slices.ContainsFunc(rule.Verbs, func(v string) bool { return v == "get" || v == "list" || v == "watch" })
		if slices.Contains(rule.Resources, "secrets") && reads && !slices.Equal(rule.ResourceNames, []string{"podpreset-webhook-certs"}) {
			t.Errorf("the webhook's Role reads Secrets %v", rule.ResourceNames)
		}
	}
	if wv := webhookD.Spec.Template.Spec.Volumes; len(wv) != 1 || wv[0].ConfigMap == nil || wv[0].ConfigMap.Name != vols[0].ConfigMap.Name {
		t.Errorf("the webhook mounts %v, the sources controller %s", wv, vols[0].ConfigMap.Name)
	}
	var cm corev1.ConfigMap
	object(t, m, "ConfigMap", vols[0].ConfigMap.Name, &cm)
	// The shipped configuration loads as the webhook would load it.
	p := filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(p, []byte(cm.Data["sources.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := sources.LoadConfig(p)
	if err != nil {
		t.Fatalf("the shipped sources.yaml: %v", err)
	}
	// and the server can start with it: no file it names is missing.
	if _, err := sources.NewConsul(cfg.Consul); err != nil {
		t.Errorf("the shipped Consul section: %v", err)
	}
	if _, err := sources.NewVault(cfg.Vault); err != nil {
		t.Errorf("the shipped Vault section: %v", err)
	}
}

// TestUserRolesAggregateOnlyWhenAskedTo checks that podpreset-view and
// podpreset-edit reach the built-in view, edit and admin roles only
// through the opt-in component, and what they grant.
func TestUserRolesAggregateOnlyWhenAskedTo(t *testing.T) {
	var view, edit rbacv1.ClusterRole
	m := build(t, "default")
	object(t, m, "ClusterRole", "podpreset-view", &view)
	object(t, m, "ClusterRole", "podpreset-edit", &edit)
	for _, r := range []rbacv1.ClusterRole{view, edit} {
		for k := range r.Labels {
			if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
				t.Errorf("%s aggregates by default (%s)", r.Name, k)
			}
		}
	}
	// edit writes PodPresets only: never ClusterPodPresets, policies or
	// status.
	for _, rule := range edit.Rules {
		writes := slices.ContainsFunc(rule.Verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" })
		if writes && !slices.Equal(rule.Resources, []string{"podpresets"}) {
			t.Errorf("podpreset-edit writes %v", rule.Resources)
		}
	}
	for _, rule := range view.Rules {
		if !slices.Equal(rule.Verbs, []string{"get", "list", "watch"}) {
			t.Errorf("podpreset-view may %v %v", rule.Verbs, rule.Resources)
		}
	}

	m = build(t, filepath.Join("testdata", "with-components"))
	object(t, m, "ClusterRole", "podpreset-view", &view)
	object(t, m, "ClusterRole", "podpreset-edit", &edit)
	if view.Labels["rbac.authorization.k8s.io/aggregate-to-view"] != "true" ||
		edit.Labels["rbac.authorization.k8s.io/aggregate-to-edit"] != "true" || edit.Labels["rbac.authorization.k8s.io/aggregate-to-admin"] != "true" {
		t.Errorf("with the component: view labels %v, edit labels %v", view.Labels, edit.Labels)
	}
	var np networkingv1.NetworkPolicy
	object(t, m, "NetworkPolicy", "podpreset-webhook", &np)
	var d appsv1.Deployment
	object(t, m, "Deployment", "podpreset-webhook", &d)
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) || np.Namespace != d.Namespace {
		t.Errorf("the NetworkPolicy (%s/%v) does not select the webhook's pods (%s/%v)", np.Namespace, np.Spec.PodSelector, d.Namespace, d.Spec.Template.Labels)
	}
	for _, in := range np.Spec.Ingress {
		for _, p := range in.Ports {
			if p.Port.IntValue() == 9443 && (len(in.From) != 1 || in.From[0].IPBlock == nil || len(in.From[0].IPBlock.Except) == 0) {
				t.Errorf("port 9443 is open to %+v: want every address but the pod network", in.From)
			}
		}
	}
}
