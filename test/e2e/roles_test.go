package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/test/cluster"
)

// TestSourcesControllerInItsOwnProcess runs the webhook with --role=webhook
// and the sources controller as a process of its own (--role=sources), as
// manifests/sources installs them: values are materialised by the sources
// process, the webhook still enforces tenancy and rewrites references, and
// the webhook reads neither Consul nor Vault.
func TestSourcesControllerInItsOwnProcess(t *testing.T) {
	if err := cp.StopWebhook(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cp.StopWebhook()
		_ = cp.StartWebhook(context.Background(), webhookBin, &webhookLog, webhookArgs...)
	})
	if err := cp.StartWebhook(context.Background(), webhookBin, &webhookLog, append(webhookArgs, "--role=webhook")...); err != nil {
		t.Fatal(err)
	}
	var srcCfg string
	for _, a := range webhookArgs {
		if v, ok := strings.CutPrefix(a, "--sources-config="); ok {
			srcCfg = v
		}
	}
	// The sources process runs as the podpreset-sources service account,
	// with the RBAC of manifests/sources and nothing more.
	kubeconfig := serviceAccountKubeconfig(t, "manifests/sources/rbac.yaml", "podpreset-sources")
	proc, err := cp.StartProcess(context.Background(), "podpreset-sources", webhookBin, &webhookLog,
		"--kubeconfig="+kubeconfig, "--role=sources", "--sources-config="+srcCfg, "--namespace="+cluster.WebhookNamespace, "--leader-elect")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := proc.Stop(); err != nil {
			t.Error(err)
		}
	})

	ns := namespace(t, nil)
	labels := map[string]string{"app": "split"}
	putConsul(t, "apps/"+ns+"/mode", "split")
	pp := podPreset("split", ns, labels, consulEnv("MODE", "apps/"+ns+"/mode"))
	createSourcesPreset(t, pp)
	configMapData(t, ns, "podpreset-split", 20*time.Second, hasValue(presets.ConsulDataKey("apps/"+ns+"/mode"), "split"))
	sourcesCondition(t, pp, metav1.ConditionTrue, 10*time.Second)
	waitForPreset(t, ns, labels, "PodPreset/split@1")
	pod := createPod(t, testPod("split", ns, labels))
	if e := pod.Spec.Containers[0].Env; len(e) != 1 || e[0].ValueFrom == nil || e[0].ValueFrom.ConfigMapKeyRef == nil {
		t.Errorf("the pod's env %+v, want a configMapKeyRef", e)
	}
	// Tenancy is the webhook's, with or without the controller.
	if err := k8s.Create(t.Context(), podPreset("steal", ns, labels, consulEnv("X", "apps/other/x"))); err == nil || !strings.Contains(err.Error(), "is not allowed") {
		t.Errorf("the webhook without the controller accepted another namespace's key: %v", err)
	}
	// The sources process read Consul; the webhook did not.
	sourcesMetrics, err := get("http://" + proc.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^podpreset_source_reads_total\{result="changed",source="consul"\} [1-9]`).MatchString(sourcesMetrics) {
		t.Error("the sources process counted no Consul read")
	}
	webhookMetrics, err := cp.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	// (Its counters exist, at zero: every series starts there.)
	for _, line := range strings.Split(webhookMetrics, "\n") {
		if strings.HasPrefix(line, "podpreset_source_reads_total{") && !strings.HasSuffix(line, " 0") {
			t.Errorf("the webhook with --role=webhook read Consul or Vault: %s", line)
		}
	}
}

// serviceAccountKubeconfig applies an RBAC manifest of the repository and
// writes a kubeconfig that authenticates as the service account it names,
// in the webhook's namespace.
func serviceAccountKubeconfig(t *testing.T, manifest, sa string) string {
	t.Helper()
	if out, _, err := cp.Kubectl(t.Context(), nil, "apply", "--server-side", "-f", filepath.Join(cp.Root, manifest)); err != nil {
		t.Fatalf("applying %s: %v\n%s", manifest, err, out)
	}
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := serviceAccountToken(t.Context(), cs, cluster.WebhookNamespace, sa)
	if err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["e2e"] = &clientcmdapi.Cluster{Server: cp.Config.Host, CertificateAuthorityData: cp.Config.CAData}
	kc.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tok}
	kc.Contexts[sa] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: sa}
	kc.CurrentContext = sa
	path := filepath.Join(t.TempDir(), sa+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
