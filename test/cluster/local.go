package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// What make run and the node tests install on the node: the kustomize
// overlays of hack/local (manifests/default, and manifests/sources, with
// the image that make image builds), and the examples, whose workloads run
// the report image.

// Local overlays and the webhook image they name.
const (
	LocalInstall        = "hack/local/install"
	LocalSourcesInstall = "hack/local/sources"
	// LocalRunInstall is make run's: LocalSourcesInstall with
	// --admission-mode=auto.
	LocalRunInstall   = "hack/local/run"
	LocalWebhookImage = "podpreset.local/podpreset-webhook:test"
	// InstallNamespace is where the overlays install podpreset.
	InstallNamespace = "podpreset-system"
)

// LoadWebhookImage builds the webhook image and loads it into the node.
func (c *Cluster) LoadWebhookImage(ctx context.Context) error {
	tarball := filepath.Join(c.node.dir, "images", "podpreset-webhook.tar")
	if err := c.WebhookImage(ctx, LocalWebhookImage, tarball); err != nil {
		return err
	}
	return c.LoadImage(ctx, tarball)
}

// Install applies an overlay (a directory under the repository) with
// kubectl, as a person would, and waits until the Deployments have rolled
// out.
func (c *Cluster) Install(ctx context.Context, overlay string, deployments ...string) error {
	dir := filepath.Join(c.Root, overlay)
	if out, _, err := c.Kubectl(ctx, nil, "apply", "--server-side", "--force-conflicts", "-k", dir); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	for _, d := range deployments {
		if out, _, err := c.Kubectl(ctx, nil, "rollout", "status", "-n", InstallNamespace, "deployment/"+d, "--timeout=180s"); err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
	}
	return nil
}

// LocalSources are Consul and Vault dev servers on the node's address,
// where the sources Deployment reaches them.
type LocalSources struct {
	Consul *Consul
	Vault  *Vault
	// VaultClient is a root client of Vault.
	VaultClient *vaultapi.Client
}

// Stop stops both.
func (s *LocalSources) Stop() {
	s.Consul.Stop()
	s.Vault.Stop()
}

// localSourcesPolicy is what the sources controller's Vault token may do.
const localSourcesPolicy = `
path "secret/*" { capabilities = ["read"] }
path "pki/issue/*" { capabilities = ["create", "update"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }
`

// StartLocalSources starts Consul and Vault on the node's address, gives
// Vault a PKI CA and role web and a token for the sources controller,
// writes the sources configuration of the LocalSourcesInstall overlay, and
// puts the token into the Secret podpreset-sources-credentials, which only
// the sources Deployment mounts.
func (c *Cluster) StartLocalSources(ctx context.Context, logs io.Writer) (_ *LocalSources, err error) {
	if c.node == nil {
		return nil, errors.New("no node: start the cluster with Options.Node")
	}
	s := &LocalSources{}
	if s.Consul, err = StartConsulOn(ctx, c.Root, c.HostIP(), logs); err != nil {
		return nil, err
	}
	if s.Vault, err = StartVaultOn(ctx, c.Root, c.HostIP(), logs); err != nil {
		s.Consul.Stop()
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	vc := vaultapi.DefaultConfig()
	vc.Address = s.Vault.Addr
	if s.VaultClient, err = vaultapi.NewClient(vc); err != nil {
		return nil, err
	}
	vl := s.VaultClient
	vl.SetToken(s.Vault.RootToken)
	if err := vl.Sys().MountWithContext(ctx, "pki", &vaultapi.MountInput{Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "24h"}}); err != nil {
		return nil, fmt.Errorf("mounting pki: %w", err)
	}
	if _, err := vl.Logical().WriteWithContext(ctx, "pki/root/generate/internal", map[string]any{"common_name": "podpreset local CA", "ttl": "24h"}); err != nil {
		return nil, fmt.Errorf("the PKI root: %w", err)
	}
	if _, err := vl.Logical().WriteWithContext(ctx, "pki/roles/web", map[string]any{"allowed_domains": "svc", "allow_subdomains": true, "max_ttl": "1h"}); err != nil {
		return nil, fmt.Errorf("the PKI role: %w", err)
	}
	if err := vl.Sys().PutPolicyWithContext(ctx, "podpreset", localSourcesPolicy); err != nil {
		return nil, err
	}
	tok, err := vl.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{"podpreset"}, TTL: "24h"})
	if err != nil {
		return nil, fmt.Errorf("a token for the sources controller: %w", err)
	}
	cfg := fmt.Sprintf(`# Written by test/cluster for the local node (make run, the node tests).
consul:
  address: http://%s
  waitTime: 30s
vault:
  address: %s
  refreshInterval: 2s
  auth:
    method: token
    tokenFile: /etc/podpreset-credentials/vault-token
tenancy:
  podPresets:
    consulPrefixes: ["apps/{{ .Namespace }}/"]
    vaultPaths: ["secret/data/{{ .Namespace }}/*", "pki/issue/web"]
  clusterPodPresets:
    consulPrefixes: ["shared/"]
    vaultPaths: ["secret/data/*", "pki/issue/web"]
`, s.Consul.Addr, s.Vault.Addr)
	if err := os.WriteFile(filepath.Join(c.Root, LocalSourcesInstall, "sources.yaml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cl, err := client.New(c.Config, client.Options{Scheme: scheme()})
	if err != nil {
		return nil, err
	}
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: InstallNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "podpreset-sources-credentials", Namespace: InstallNamespace},
		StringData: map[string]string{"vault-token": tok.Auth.ClientToken}}
	if err := cl.Create(ctx, creds); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	return s, nil
}

// reportCommands are the example init containers' scripts, as report
// writes: the examples' images (busybox, mysql, kong, ...) do not exist
// here, and the report image has no shell.
var reportCommands = map[string][]string{
	"mysql/render-config": {"/report", "write", "/etc/mysql/conf.d/my.ini", "[mysqld]", "port=$(MYSQL_DB_PORT)",
		"socket=$(SOCKET_FILE)", "datadir=$(MYSQL_DATA_DIR)", "default-storage-engine=$(MYSQL_ENGINE)"},
}

// ReportWorkloads rewrites an example's workload file (Pods and
// Deployments) to run the report image: every container reports what it
// received, every second; the one init container with a shell script runs
// its equivalent. It returns the rewritten documents and a pod template of
// each (for probes).
func ReportWorkloads(example string, file []byte) ([][]byte, []corev1.Pod, error) {
	var docs [][]byte
	var pods []corev1.Pod
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(file)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, nil, err
		}
		var spec *corev1.PodSpec
		var obj any
		var pod corev1.Pod
		switch meta.Kind {
		case "Pod":
			if err := yaml.UnmarshalStrict(doc, &pod); err != nil {
				return nil, nil, err
			}
			spec, obj = &pod.Spec, &pod
		case "Deployment":
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict(doc, &d); err != nil {
				return nil, nil, err
			}
			spec, obj = &d.Spec.Template.Spec, &d
			pod = corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Labels: d.Spec.Template.Labels}}
		default:
			docs = append(docs, doc)
			continue
		}
		for i := range spec.InitContainers {
			c := &spec.InitContainers[i]
			cmd, ok := reportCommands[example+"/"+c.Name]
			if !ok {
				return nil, nil, fmt.Errorf("%s: init container %s has no report equivalent", example, c.Name)
			}
			c.Image, c.ImagePullPolicy, c.Command, c.Args, c.Ports = ReportImage, corev1.PullIfNotPresent, cmd, nil, nil
		}
		for i := range spec.Containers {
			c := &spec.Containers[i]
			c.Image, c.ImagePullPolicy, c.Ports = ReportImage, corev1.PullIfNotPresent, nil
			c.Command, c.Args = []string{"/report"}, []string{"--interval=1s", "--mounts"}
		}
		spec.TerminationGracePeriodSeconds = new(int64)
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, nil, err
		}
		docs = append(docs, b)
		pods = append(pods, pod)
	}
	return docs, pods, nil
}

// ApplyExampleOnNode applies an example as a person would: its namespaces,
// Secrets and presets (files not starting with 20-) first, then, once the
// webhook applies presets to each workload's pods (ten dry-run probes in
// a row, as each may reach either replica), the workloads, rewritten to run
// the report image. Each of beforeWorkloads runs before the probes.
func (c *Cluster) ApplyExampleOnNode(ctx context.Context, dir string, beforeWorkloads ...func(context.Context) error) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	var workloads [][]byte
	var probes []corev1.Pod
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if !strings.HasPrefix(e.Name(), "20-") {
			o, _, err := c.Kubectl(ctx, nil, "apply", "-f", path)
			out.WriteString(o)
			if err != nil {
				return out.String(), err
			}
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return out.String(), err
		}
		docs, pods, err := ReportWorkloads(filepath.Base(dir), b)
		if err != nil {
			return out.String(), err
		}
		workloads, probes = append(workloads, docs...), append(probes, pods...)
	}
	cl, err := client.New(c.Config, client.Options{Scheme: scheme()})
	if err != nil {
		return out.String(), err
	}
	for _, f := range beforeWorkloads {
		if err := f(ctx); err != nil {
			return out.String(), err
		}
	}
	for _, p := range probes {
		// On a busy machine the webhook's replicas can take a while to
		// see a new namespace's presets: wait long, and say why on failure.
		if err := waitFor(90*time.Second, func() error {
			for range 10 {
				probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: p.Namespace, Labels: p.Labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: ReportImage}}}}
				if err := cl.Create(ctx, probe, client.DryRunAll); err != nil {
					return err
				}
				if probe.Annotations["podpreset.dev/applied"] == "" {
					return fmt.Errorf("pods labelled %v in %s get no preset yet", p.Labels, p.Namespace)
				}
			}
			return nil
		}); err != nil {
			return out.String(), fmt.Errorf("%w\n%s", err, webhookPods(ctx, cl))
		}
	}
	o, _, err := c.Kubectl(ctx, bytes.NewReader(bytes.Join(workloads, []byte("\n---\n"))), "apply", "-f", "-")
	out.WriteString(o)
	return out.String(), err
}

// webhookPods describes the webhook's pods and its namespace's warnings:
// what to look at when pods do not get their presets.
func webhookPods(ctx context.Context, cl client.Client) string {
	var b strings.Builder
	var pods corev1.PodList
	if err := cl.List(ctx, &pods, client.InNamespace(InstallNamespace)); err != nil {
		return "listing the webhook's pods: " + err.Error()
	}
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s: %s", p.Name, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, ", %s ready=%t restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
		}
		b.WriteString("\n")
	}
	var events corev1.EventList
	if err := cl.List(ctx, &events, client.InNamespace(InstallNamespace)); err == nil {
		for _, e := range events.Items {
			if e.Type == corev1.EventTypeWarning {
				fmt.Fprintf(&b, "event %s/%s %s: %s (x%d)\n", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message, e.Count)
			}
		}
	}
	return b.String()
}
