// Command localrun is `make run`: it starts a local control plane (etcd,
// kube-apiserver, kube-controller-manager, built into bin/ by
// hack/build-servers.sh), runs the podpreset-webhook binary against it,
// applies every example in manifests/examples with kubectl, prints what the
// pods received, and keeps running until Ctrl-C so that you can try your own
// presets with the kubeconfig it prints. --once stops after the summary.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/test/cluster"
)

func main() {
	once := flag.Bool("once", false, "stop after printing the summary")
	verbose := flag.Bool("v", false, "print the servers' logs")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *once, *verbose, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "make run: %v\n", err)
		os.Exit(1)
	}
}

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
	defer c.Stop()
	fmt.Fprintln(out, "Building and starting podpreset-webhook...")
	bin, err := c.WebhookBinary(ctx)
	if err != nil {
		return err
	}
	if err := c.StartWebhook(ctx, bin, nil, "--log-format=text"); err != nil {
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
	for _, d := range names {
		fmt.Fprintf(out, "Applying manifests/examples/%s\n", filepath.Base(d))
		if o, err := c.ApplyExample(ctx, d); err != nil {
			return fmt.Errorf("%w\n%s", err, o)
		}
	}
	if err := summary(ctx, c, out); err != nil {
		return err
	}
	if once {
		return nil
	}
	fmt.Fprintf(out, "\nThe control plane and the webhook keep running. Try it:\n\n"+
		"  export KUBECONFIG=%s\n  bin/kubectl get podpresets,clusterpodpresets -A\n  bin/kubectl get pods -A\n\n"+
		"Press Ctrl-C to stop everything.\n", c.Kubeconfig)
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
	return nil
}
