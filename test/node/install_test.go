package node

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/test/cluster"
)

const (
	installNS     = cluster.InstallNamespace
	webhookDeploy = "podpreset-webhook"
)

// podEvents lists a pod's events, one a line.
func podEvents(t *testing.T, p corev1.Pod) string {
	var evs corev1.EventList
	if err := k8s.List(t.Context(), &evs, client.InNamespace(p.Namespace)); err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range evs.Items {
		if e.InvolvedObject.UID == p.UID {
			fmt.Fprintf(&b, "  %s %s %s (x%d): %s\n", e.LastTimestamp.Format(time.TimeOnly), e.Type, e.Reason, e.Count, e.Message)
		}
	}
	return b.String()
}

// overlay is an overlay's directory, for kubectl -k.
func overlay(rel string) string { return filepath.Join(cp.Root, rel) }

// TestInstallRunsOnTheNode: manifests/default, with only the image
// swapped, runs: both replicas Ready through their real probes, the
// certificate issued by the pods themselves, and the API server calling the
// webhook through its Service.
func TestInstallRunsOnTheNode(t *testing.T) {
	// Both replicas Ready, through their probes (a moment after another
	// test's rollout, a replica may still be starting).
	var d appsv1.Deployment
	var pods corev1.PodList
	deadline := time.Now().Add(60 * time.Second)
	for {
		var problems []string
		if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: installNS, Name: webhookDeploy}, &d); err != nil {
			t.Fatal(err)
		}
		if d.Status.ReadyReplicas != 2 || d.Status.UpdatedReplicas != 2 || d.Status.Replicas != 2 {
			problems = append(problems, fmt.Sprintf("%d ready, %d updated replicas of %d, want 2", d.Status.ReadyReplicas, d.Status.UpdatedReplicas, d.Status.Replicas))
		}
		if err := k8s.List(t.Context(), &pods, client.InNamespace(installNS), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			c := p.Status.ContainerStatuses
			if len(c) != 1 || !c[0].Ready || c[0].Image != webhookImage || p.Spec.NodeName == "" || p.Status.PodIP == "" {
				problems = append(problems, fmt.Sprintf("pod %s: %+v on node %q, IP %q; events:\n%s", p.Name, c, p.Spec.NodeName, p.Status.PodIP, podEvents(t, p)))
			}
		}
		if len(problems) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s:\n%s", strings.Join(problems, "\n"))
		}
		time.Sleep(time.Second)
	}
	// The pods issued the certificate, for the Service's names, and
	// published its CA in both webhook configurations.
	var s corev1.Secret
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: installNS, Name: "podpreset-webhook-certs"}, &s); err != nil {
		t.Fatalf("the certificate Secret: %v", err)
	}
	if !slices.ContainsFunc(s.ManagedFields, func(f metav1.ManagedFieldsEntry) bool { return f.Manager == "podpreset-webhook" }) {
		t.Errorf("the certificate Secret was written by %v, not by the webhook's pods", s.ManagedFields)
	}
	certs, err := certutil.ParseCertsPEM(s.Data["tls.crt"])
	if err != nil || len(certs) == 0 || !slices.Contains(certs[0].DNSNames, "podpreset-webhook-service.podpreset-system.svc") {
		t.Fatalf("the serving certificate (%v): %+v", err, certs)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := k8s.Get(t.Context(), client.ObjectKey{Name: "podpreset-webhook"}, &mwc); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(mwc.Webhooks[0].ClientConfig.CABundle) {
		t.Fatal("the caBundle is empty")
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: "podpreset-webhook-service.podpreset-system.svc"}); err != nil {
		t.Errorf("the caBundle does not trust the served certificate: %v", err)
	}
	if svc := mwc.Webhooks[0].ClientConfig.Service; svc == nil || svc.Name != "podpreset-webhook-service" || mwc.Webhooks[0].ClientConfig.URL != nil {
		t.Errorf("the pod webhook is called at %+v, want the Service", mwc.Webhooks[0].ClientConfig)
	}
	// The only way to the webhook here is its Service: a preset reaches a
	// running pod.
	ns := namespace(t, nil)
	labels := map[string]string{"app": "hello"}
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: ns},
		Spec: v1alpha1.PodPresetSpec{Selector: metav1.LabelSelector{MatchLabels: labels}, Env: []v1alpha1.EnvVar{{Name: "GREETING", Value: "from a preset"}}}}
	if err := k8s.Create(t.Context(), pp); err != nil {
		t.Fatal(err)
	}
	waitForPreset(t, ns, labels, "PodPreset/hello@1")
	if err := k8s.Create(t.Context(), reportPod("hello", ns, labels)); err != nil {
		t.Fatal(err)
	}
	report(t, ns, "hello", "app", func(lines []string) error {
		if got := envOf(lines)["GREETING"]; got != "from a preset" {
			return fmt.Errorf("GREETING is %q in the container", got)
		}
		return nil
	})
}

// waitForPreset waits until the webhook applies a preset to a pod with
// these labels, probing with server-side dry-run creations: ten in a row,
// as the API server picks one of the replicas for each, and each replica's
// cache receives the preset on its own.
func waitForPreset(t *testing.T, ns string, labels map[string]string, ref string) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		for range 10 {
			probe := reportPod("probe", ns, labels)
			if err := k8s.Create(t.Context(), probe, client.DryRunAll); err != nil {
				return err
			}
			if got := probe.Annotations["podpreset.dev/applied"]; !strings.Contains(got, ref) {
				return fmt.Errorf("a pod labelled %v in %s got %q, not %s", labels, ns, got, ref)
			}
		}
		return nil
	})
}

// uninstall deletes what an overlay installed, as a person would, and
// checks that it is all gone and that pods created afterwards start
// without presets.
func uninstall(ctx context.Context, rel string) error {
	if out, _, err := cp.Kubectl(ctx, nil, "delete", "-k", overlay(rel), "--wait=true", "--timeout=180s"); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	var leftovers []string
	for _, kind := range []string{"namespace/" + installNS, "crd/podpresets.podpreset.dev", "crd/clusterpodpresets.podpreset.dev",
		"crd/podpresetpolicies.podpreset.dev", "mutatingwebhookconfiguration/podpreset-webhook", "validatingwebhookconfiguration/podpreset-webhook",
		"clusterrole/podpreset-webhook", "clusterrolebinding/podpreset-webhook", "clusterrole/podpreset-view", "clusterrole/podpreset-edit"} {
		if out, _, err := cp.Kubectl(ctx, nil, "get", kind, "--ignore-not-found", "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
			leftovers = append(leftovers, fmt.Sprintf("%s (%v)", kind, err))
		}
	}
	if len(leftovers) > 0 {
		return fmt.Errorf("still there after kubectl delete -k: %s", strings.Join(leftovers, ", "))
	}
	// A pod created now starts, and gets nothing.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "after-uninstall"}}
	if err := k8s.Create(ctx, ns); err != nil {
		return err
	}
	pod := reportPod("after", ns.Name, map[string]string{"app": "hello"})
	if err := k8s.Create(ctx, pod); err != nil {
		return fmt.Errorf("creating a pod after the uninstall: %w", err)
	}
	if len(pod.Annotations) != 0 || len(pod.Spec.Containers[0].Env) != 0 {
		return fmt.Errorf("a pod created after the uninstall was changed: %v %v", pod.Annotations, pod.Spec.Containers[0].Env)
	}
	return waitFor(90*time.Second, func() error {
		var p corev1.Pod
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), &p); err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("the pod created after the uninstall is %s", p.Status.Phase)
		}
		return nil
	})
}

// waitFor retries f until it returns nil or the time is up.
func waitFor(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}
