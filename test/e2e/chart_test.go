package e2e

import (
	"bytes"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/internal/dist"
	"github.com/podpreset/podpreset/manifests"
)

// TestChartDryRuns: every documented values combination of the Helm chart
// (manifests.ChartValueCases) is accepted by the API server, object by
// object, in a server-side dry run, as helm install sends them; and so is
// manifests/monitoring, as kubectl apply -k sends it, and the install
// bundle of make dist. cert-manager
// and the Prometheus Operator do not run here: their kinds (Issuer,
// Certificate, ServiceMonitor) are served by stand-in CRDs without a
// schema, so for those the dry run checks the kind, the scope and the
// metadata, not the spec.
func TestChartDryRuns(t *testing.T) {
	ctx := t.Context()
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range []struct{ group, kind, plural string }{
		{"cert-manager.io", "Issuer", "issuers"},
		{"cert-manager.io", "Certificate", "certificates"},
		{"monitoring.coreos.com", "ServiceMonitor", "servicemonitors"},
		{"monitoring.coreos.com", "PrometheusRule", "prometheusrules"},
	} {
		standIn := &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: crd.plural + "." + crd.group},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: crd.group, Scope: apiextensionsv1.NamespaceScoped,
				Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: crd.kind, Plural: crd.plural},
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
					Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
						Type: "object", XPreserveUnknownFields: ptr.To(true)}}}},
			},
		}
		if err := c.Create(ctx, standIn); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	// Until the stand-ins are served.
	eventually(t, 30*time.Second, func() error {
		for _, gvk := range []schema.GroupVersionKind{{Group: "cert-manager.io", Version: "v1", Kind: "IssuerList"}, {Group: "cert-manager.io", Version: "v1", Kind: "CertificateList"},
			{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitorList"}, {Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRuleList"}} {
			l := &unstructured.UnstructuredList{}
			l.SetGroupVersionKind(gvk)
			if err := c.List(ctx, l); err != nil {
				return err
			}
		}
		return nil
	})
	// A release of its own name in a namespace of its own: nothing it
	// renders exists already, so that each object is created (dry run).
	const release, namespace = "chart", "chart-dry-run"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, name := range slices.Sorted(maps.Keys(manifests.ChartValueCases)) {
		t.Run(name, func(t *testing.T) {
			objs, err := manifests.RenderChartCase(name, release, namespace)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				if err := c.Create(ctx, o, client.DryRunAll); err != nil {
					t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
				}
			}
			if len(objs) < 10 {
				t.Errorf("only %d objects rendered", len(objs))
			}
		})
	}
	t.Run("the release's install bundle", func(t *testing.T) {
		image := "registry.example.com/podpreset-webhook@sha256:" + strings.Repeat("0f", 32)
		bundle, err := dist.Bundle(cp.Root, image)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := cp.Kubectl(ctx, bytes.NewReader(bundle), "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, want := range []string{"namespace/podpreset-system", "customresourcedefinition.apiextensions.k8s.io/podpresets.podpreset.dev",
			"deployment.apps/podpreset-webhook", "mutatingwebhookconfiguration.admissionregistration.k8s.io/podpreset-webhook"} {
			if !strings.Contains(out, want+" serverside-applied (server dry run)") {
				t.Errorf("kubectl printed no %q:\n%s", want, out)
			}
		}
	})
	t.Run("manifests/monitoring", func(t *testing.T) {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "podpreset-system"}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		out, _, err := cp.Kubectl(ctx, nil, "apply", "--server-side", "--dry-run=server", "-k", filepath.Join(cp.Root, "manifests", "monitoring"))
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, want := range []string{"configmap/podpreset-dashboard", "service/podpreset-metrics", "prometheusrule.monitoring.coreos.com/podpreset", "servicemonitor.monitoring.coreos.com/podpreset"} {
			if !strings.Contains(out, want+" serverside-applied (server dry run)") {
				t.Errorf("kubectl printed no %q:\n%s", want, out)
			}
		}
	})
}
