// Command localrun is `make run`: it starts a local control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler) with a node
// (kubelet, containerd, runc, a CNI bridge on this machine only), all built
// into bin/ by hack/build-servers.sh, and Consul and Vault dev servers;
// builds the webhook image as make image does and installs podpreset with
// Consul and Vault sources as Deployments on the node (hack/local/sources:
// manifests/sources with that image); writes the examples' values into
// Consul and Vault (their seed.sh); applies every example in
// manifests/examples, whose workloads run a report image that prints what
// each container received; prints those reports (values from Secrets and
// Vault as digests) and what was materialised; and keeps running until
// Ctrl-C so that you can try your own presets with the kubeconfig it
// prints. --once stops after the summary.
//
// The node needs root. --node=false (make run NODE=0) runs the webhook as
// a process on loopback instead, with no node: pods are then created but
// never run, and the summary shows their specs.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/test/cluster"
)

func main() {
	once := flag.Bool("once", false, "stop after printing the summary")
	verbose := flag.Bool("v", false, "print the servers' logs")
	node := flag.Bool("node", true, "run a node (needs root); false runs the webhook as a process, and no pod runs")
	flag.Parse()
	// The servers' logs are printed (-v); controller-runtime's clients here
	// have nothing to say.
	ctrllog.SetLogger(logr.Discard())
	if err := runUntilSignalled(*once, *verbose, *node); err != nil {
		fmt.Fprintf(os.Stderr, "make run: %v\n", err)
		os.Exit(1)
	}
}

// runUntilSignalled runs until SIGINT or SIGTERM (or once).
func runUntilSignalled(once, verbose, node bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if node {
		return runNode(ctx, once, verbose, os.Stdout)
	}
	return run(ctx, once, verbose, os.Stdout)
}

// run is make run without a node (NODE=0).
func run(ctx context.Context, once, verbose bool, out io.Writer) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	var logs io.Writer
	if verbose {
		logs = os.Stderr
	}
	fmt.Fprintln(out, "Starting etcd, kube-apiserver and kube-controller-manager on 127.0.0.1...")
	c, err := cluster.Start(ctx, cluster.Options{Root: root, ControllerManager: true, Logs: logs})
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "make run: stopping the control plane: %v\n", err)
		}
	}()
	fmt.Fprintln(out, "Starting Consul and Vault dev servers on 127.0.0.1...")
	consul, err := cluster.StartConsul(ctx, root, logs)
	if err != nil {
		return err
	}
	defer consul.Stop()
	vault, err := cluster.StartVault(ctx, root, logs)
	if err != nil {
		return err
	}
	defer vault.Stop()
	dir, err := os.MkdirTemp("", "podpreset-run-")
	if err != nil {
		return err
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "make run: %v\n", err)
		}
	}()
	srcCfg, err := sourcesConfig(dir, consul, vault)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "Building and starting podpreset-webhook...")
	bin, err := c.WebhookBinary(ctx)
	if err != nil {
		return err
	}
	if err := c.StartWebhook(ctx, bin, nil, "--log-format=text", "--sources-config="+srcCfg, "--admission-mode=auto"); err != nil {
		return err
	}
	examples, err := filepath.Glob(filepath.Join(root, "manifests", "examples", "*", "20-*.yaml"))
	if err != nil {
		return err
	}
	dirs := map[string]bool{}
	for _, f := range examples {
		dirs[filepath.Dir(f)] = true
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	pcl, err := policyClient(c.Config)
	if err != nil {
		return err
	}
	var namespaces []string
	for _, d := range names {
		if seed := filepath.Join(d, "seed.sh"); exists(seed) {
			fmt.Fprintf(out, "Writing manifests/examples/%s/seed.sh into Consul and Vault\n", filepath.Base(d))
			if err := cluster.Seed(ctx, seed, consul.Addr, vault.Addr, vault.RootToken); err != nil {
				return err
			}
		}
		fmt.Fprintf(out, "Applying manifests/examples/%s\n", filepath.Base(d))
		ns, err := exampleNamespaces(d)
		if err != nil {
			return err
		}
		namespaces = append(namespaces, ns...)
		policies := func(ctx context.Context) error { return waitForPolicies(ctx, pcl, ns) }
		if o, err := c.ApplyExample(ctx, d, policies); err != nil {
			return fmt.Errorf("%w\n%s", err, o)
		}
	}
	if err := summary(ctx, c, out); err != nil {
		return err
	}
	metrics, err := c.Metrics()
	if err != nil {
		return err
	}
	if err := policySummary(ctx, pcl, namespaces, []string{metrics}, false, out); err != nil {
		return err
	}
	if once {
		return nil
	}
	fmt.Fprintf(out, "\nThe control plane, Consul, Vault and the webhook keep running. Try it:\n\n"+
		"  export KUBECONFIG=%s\n  bin/kubectl get podpresets,clusterpodpresets -A\n  bin/kubectl get mutatingadmissionpolicies  # what the API server injects itself\n  bin/kubectl get pods -A\n"+
		"  bin/kubectl get podpresets -n orders orders-config -o yaml  # the sources' status\n"+
		"  bin/consul kv put -http-addr=%s apps/orders/env/LOG_LEVEL debug\n"+
		"  bin/kubectl get configmaps -n orders -l app.kubernetes.io/managed-by=podpreset -o yaml\n\n"+
		"Consul: http://%s  Vault: %s (a dev server; its root token is in %s)\n\n"+
		"Press Ctrl-C to stop everything.\n", c.Kubeconfig, consul.Addr, consul.Addr, vault.Addr, filepath.Join(dir, "vault-token"))
	<-ctx.Done()
	fmt.Fprintln(out, "Stopping...")
	return nil
}

// allReplicas says whether every Deployment has as many pods as replicas.
func allReplicas(deployments []appsv1.Deployment, pods []corev1.Pod) bool {
	for _, d := range deployments {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			return true // nothing to wait for
		}
		n := 0
		for _, p := range pods {
			if p.Namespace == d.Namespace && sel.Matches(labels.Set(p.Labels)) {
				n++
			}
		}
		if d.Spec.Replicas != nil && n < int(*d.Spec.Replicas) {
			return false
		}
	}
	return true
}

// summary prints each example pod with what the presets gave it.
func summary(ctx context.Context, c *cluster.Cluster, out io.Writer) error {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return err
	}
	cl, err := client.New(c.Config, client.Options{Scheme: s})
	if err != nil {
		return err
	}
	// Deployments' pods come from kube-controller-manager a moment later:
	// wait until each Deployment has its replicas.
	var pods []corev1.Pod
	for range 300 {
		var list corev1.PodList
		var deployments appsv1.DeploymentList
		if err := cl.List(ctx, &list); err != nil {
			return err
		}
		if err := cl.List(ctx, &deployments); err != nil {
			return err
		}
		pods = list.Items
		if allReplicas(deployments.Items, pods) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timeAfter():
		}
	}
	// The sources controller materialises the examples' Consul and Vault
	// values within moments.
	var cms corev1.ConfigMapList
	var secs corev1.SecretList
	managed := client.MatchingLabels{"app.kubernetes.io/managed-by": "podpreset"}
	for range 300 {
		if err := cl.List(ctx, &cms, managed); err != nil {
			return err
		}
		if err := cl.List(ctx, &secs, managed); err != nil {
			return err
		}
		if len(cms.Items) > 0 && len(secs.Items) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timeAfter():
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Namespace+pods[i].Name < pods[j].Namespace+pods[j].Name })
	fmt.Fprintln(out, "\nPods and what podpreset injected:")
	for _, p := range pods {
		fmt.Fprintf(out, "\n  %s/%s  (%s)\n", p.Namespace, p.Name, p.Annotations[presets.AnnotationApplied])
		for _, ctr := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			var env []string
			for _, e := range ctr.Env {
				v := e.Value
				if e.ValueFrom != nil {
					v = "<from a reference>"
				}
				env = append(env, e.Name+"="+v)
			}
			fmt.Fprintf(out, "    %-16s %s\n", ctr.Name, strings.Join(env, " "))
		}
	}
	fmt.Fprintln(out, "\nMaterialised from Consul and Vault (keys only):")
	for _, cm := range cms.Items {
		if !ownedByPreset(cm.OwnerReferences) {
			continue
		}
		fmt.Fprintf(out, "\n  ConfigMap %s/%s  %s\n", cm.Namespace, cm.Name, strings.Join(slices.Sorted(maps.Keys(cm.Data)), " "))
	}
	for _, s := range secs.Items {
		if !ownedByPreset(s.OwnerReferences) {
			continue // the webhook's own certificate Secret
		}
		fmt.Fprintf(out, "\n  Secret %s/%s  %s\n", s.Namespace, s.Name, strings.Join(slices.Sorted(maps.Keys(s.Data)), " "))
	}
	return nil
}

func ownedByPreset(refs []metav1.OwnerReference) bool {
	for _, r := range refs {
		if r.Kind == "PodPreset" || r.Kind == "ClusterPodPreset" {
			return true
		}
	}
	return false
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// sourcesConfig writes the webhook's sources configuration for the dev
// servers: Vault with its root token (a throwaway dev server's).
func sourcesConfig(dir string, consul *cluster.Consul, vault *cluster.Vault) (string, error) {
	token := filepath.Join(dir, "vault-token")
	if err := os.WriteFile(token, []byte(vault.RootToken), 0o600); err != nil {
		return "", err
	}
	return cluster.WriteSourcesConfig(dir, consul, vault, 10*time.Second, map[string]string{"method": "token", "tokenFile": token})
}
