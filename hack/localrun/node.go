package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/test/cluster"
)

// runNode is make run with a node: podpreset installed as Deployments, the
// examples' pods running.
func runNode(ctx context.Context, once, verbose bool, out io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("the node needs root (network interfaces, mounts): run as root, or make run NODE=0 for no node")
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	var logs io.Writer
	if verbose {
		logs = os.Stderr
	}
	start := time.Now()
	fmt.Fprintln(out, "Starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a node (kubelet, containerd, runc)...")
	c, err := cluster.Start(ctx, cluster.Options{Root: root, Node: true, Logs: logs})
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "make run: stopping: %v\n", err)
		}
	}()
	fmt.Fprintf(out, "Building the webhook image (as make image does) and loading it into the node...\n")
	if err := c.LoadWebhookImage(ctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "Starting Consul and Vault dev servers on %s (the node's address, where pods reach them)...\n", c.HostIP())
	src, err := c.StartLocalSources(ctx, logs)
	if err != nil {
		return err
	}
	defer src.Stop()
	fmt.Fprintf(out, "Installing podpreset with sources: kubectl apply --server-side -k %s (manifests/sources with the local image and --admission-mode=auto)...\n", cluster.LocalRunInstall)
	if err := c.Install(ctx, cluster.LocalRunInstall, "podpreset-webhook", "podpreset-sources"); err != nil {
		return err
	}
	pcl, err := policyClient(c.Config)
	if err != nil {
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
	var namespaces []string
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if seed := filepath.Join(d, "seed.sh"); exists(seed) {
			fmt.Fprintf(out, "Writing manifests/examples/%s/seed.sh into Consul and Vault\n", filepath.Base(d))
			if err := cluster.Seed(ctx, seed, src.Consul.Addr, src.Vault.Addr, src.Vault.RootToken); err != nil {
				return err
			}
		}
		fmt.Fprintf(out, "Applying manifests/examples/%s (its workloads run the report image)\n", filepath.Base(d))
		ns, err := exampleNamespaces(d)
		if err != nil {
			return err
		}
		policies := func(ctx context.Context) error { return waitForPolicies(ctx, pcl, ns) }
		if o, err := c.ApplyExampleOnNode(ctx, d, policies); err != nil {
			return fmt.Errorf("%w\n%s", err, o)
		}
		namespaces = append(namespaces, ns...)
	}
	if err := nodeSummary(ctx, c, namespaces, out); err != nil {
		return err
	}
	metrics, err := webhookMetrics(ctx, pcl)
	if err != nil {
		return err
	}
	if err := policySummary(ctx, pcl, namespaces, metrics, true, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nUp in %s.\n", time.Since(start).Round(time.Second))
	if once {
		return nil
	}
	fmt.Fprintf(out, "\nThe control plane, the node, Consul, Vault and podpreset keep running. Try it:\n\n"+
		"  export KUBECONFIG=%s\n  bin/kubectl get podpresets,clusterpodpresets -A\n  bin/kubectl get mutatingadmissionpolicies  # what the API server injects itself\n  bin/kubectl get pods -A -o wide\n"+
		"  bin/kubectl logs -n databases mysql -c mysql --tail=20     # what the container received\n"+
		"  bin/consul kv put -http-addr=%s apps/orders/env/LOG_LEVEL debug\n"+
		"  bin/kubectl get configmaps -n orders -l app.kubernetes.io/managed-by=podpreset -o yaml\n\n"+
		"Press Ctrl-C to stop everything.\n", c.Kubeconfig, src.Consul.Addr)
	<-ctx.Done()
	fmt.Fprintln(out, "Stopping...")
	return nil
}

// exampleNamespaces lists the namespaces an example creates.
func exampleNamespaces(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "00-namespace.yaml"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "name: "); ok && strings.HasPrefix(line, "  name:") {
			out = append(out, name)
		}
	}
	return out, nil
}

// boring are the variables every container has, left out of the summary
// (the examples' namespaces have no Service of their own, so the only
// service links are the kubernetes Service's).
func boring(name string) bool {
	return name == "PATH" || name == "HOSTNAME" || name == "HOME" || strings.HasPrefix(name, "KUBERNETES_")
}

// nodeSummary waits until the examples' pods run and prints what each
// container reported of itself: its env (values that come from Secrets, or
// look secret, as digests) and the files of its volumes.
func nodeSummary(ctx context.Context, c *cluster.Cluster, namespaces []string, out io.Writer) error {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return err
	}
	cl, err := client.New(c.Config, client.Options{Scheme: s})
	if err != nil {
		return err
	}
	var pods []corev1.Pod
	deadline := time.Now().Add(3 * time.Minute)
	for {
		pods = pods[:0]
		running := 0
		for _, ns := range namespaces {
			var list corev1.PodList
			if err := cl.List(ctx, &list, client.InNamespace(ns)); err != nil {
				return err
			}
			for _, p := range list.Items {
				pods = append(pods, p)
				if p.Status.Phase == corev1.PodRunning {
					running++
				}
			}
		}
		if len(pods) > 0 && running == len(pods) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d example pods run after 3 minutes", running, len(pods))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Namespace+pods[i].Name < pods[j].Namespace+pods[j].Name })
	fmt.Fprintln(out, "\nRunning pods, and what each container reported of itself:")
	for _, p := range pods {
		fmt.Fprintf(out, "\n  %s/%s  (%s)\n", p.Namespace, p.Name, p.Annotations[presets.AnnotationApplied])
		for _, st := range p.Status.InitContainerStatuses {
			if t := st.State.Terminated; t != nil {
				fmt.Fprintf(out, "    %-16s init container: %s (exit %d) before the others started\n", st.Name, t.Reason, t.ExitCode)
			}
		}
		for _, ctr := range p.Spec.Containers {
			fromSecret := map[string]bool{}
			for _, e := range ctr.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					fromSecret[e.Name] = true
				}
			}
			var lines []string
			for range 60 {
				logs, err := c.PodLogs(ctx, p.Namespace, p.Name, ctr.Name)
				if err == nil {
					if lines = lastReport(logs); lines != nil {
						break
					}
				}
				time.Sleep(500 * time.Millisecond)
			}
			var env, files []string
			for _, l := range lines {
				if kv, ok := strings.CutPrefix(l, "env "); ok {
					name, value, _ := strings.Cut(kv, "=")
					if boring(name) {
						continue
					}
					if fromSecret[name] && !strings.HasPrefix(value, `"sha256:`) {
						value = "<from a Secret>"
					}
					env = append(env, name+"="+value)
				} else if f, ok := strings.CutPrefix(l, "file "); ok {
					files = append(files, f)
				} else if strings.HasPrefix(l, "tls ") {
					files = append(files, l)
				}
			}
			fmt.Fprintf(out, "    %-16s %s\n", ctr.Name, strings.Join(env, " "))
			for _, f := range files {
				fmt.Fprintf(out, "    %-16s   %s\n", "", f)
			}
		}
	}
	fmt.Fprintln(out, "\nMaterialised from Consul and Vault (keys only):")
	var cms corev1.ConfigMapList
	var secs corev1.SecretList
	managed := client.MatchingLabels{"app.kubernetes.io/managed-by": "podpreset"}
	if err := cl.List(ctx, &cms, managed); err != nil {
		return err
	}
	if err := cl.List(ctx, &secs, managed); err != nil {
		return err
	}
	for _, cm := range cms.Items {
		if ownedByPreset(cm.OwnerReferences) {
			fmt.Fprintf(out, "\n  ConfigMap %s/%s  %s\n", cm.Namespace, cm.Name, strings.Join(slices.Sorted(maps.Keys(cm.Data)), " "))
		}
	}
	for _, s := range secs.Items {
		if ownedByPreset(s.OwnerReferences) {
			fmt.Fprintf(out, "\n  Secret %s/%s  %s\n", s.Namespace, s.Name, strings.Join(slices.Sorted(maps.Keys(s.Data)), " "))
		}
	}
	return nil
}

// lastReport cuts the last whole report out of a container's output.
func lastReport(out string) []string {
	lines := strings.Split(out, "\n")
	end := -1
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "report end ") && end < 0 {
			end = i
		}
		if end >= 0 && strings.HasPrefix(lines[i], "report begin ") {
			return lines[i+1 : end]
		}
	}
	return nil
}
