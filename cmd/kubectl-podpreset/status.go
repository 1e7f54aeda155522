package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

type statusOptions struct {
	allNamespaces bool
	flags         *genericclioptions.ConfigFlags
	streams       genericiooptions.IOStreams
}

func newStatusCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &statusOptions{streams: streams, flags: genericclioptions.NewConfigFlags(true)}
	cmd := &cobra.Command{
		Use:   "status [-n NS | -A]",
		Short: "List presets with what their pods have of them: applied, stale, missed",
		Long: `Lists the PodPresets of a namespace (every namespace with -A) and every
ClusterPodPreset, with the counts the webhook's inventory keeps in their
status: pods with the current version (APPLIED), an older one or older Consul
or Vault values (STALE), pods created after the preset that did not get it
(MISSED), and pods created before it (PREDATING); whether the webhook applies
the preset (ACCEPTED), its rollout policy and whether it is Ready (none stale,
none missed). "kubectl podpreset explain pod/NAME" says why for one pod.`,
		Example: `  kubectl podpreset status -A`,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context()) },
	}
	o.flags.AddFlags(cmd.Flags())
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list the PodPresets of every namespace")
	return cmd
}

func (o *statusOptions) run(ctx context.Context) error {
	c, ns, err := clusterClient(o.flags)
	if err != nil {
		fmt.Fprintf(o.streams.ErrOut, "error: %v\n", err)
		return exitError{exitInvalid}
	}
	var opts []client.ListOption
	if !o.allNamespaces {
		opts = append(opts, client.InNamespace(ns))
	}
	var pps v1alpha1.PodPresetList
	if err := c.List(ctx, &pps, opts...); err != nil {
		fmt.Fprintf(o.streams.ErrOut, "error: listing PodPresets: %v\n", err)
		return exitError{exitInvalid}
	}
	var cpps v1alpha1.ClusterPodPresetList
	if err := c.List(ctx, &cpps); err != nil {
		fmt.Fprintf(o.streams.ErrOut, "error: listing ClusterPodPresets: %v\n", err)
		return exitError{exitInvalid}
	}
	var objs []v1alpha1.Object
	for i := range pps.Items {
		objs = append(objs, &pps.Items[i])
	}
	for i := range cpps.Items {
		objs = append(objs, &cpps.Items[i])
	}
	w := tabwriter.NewWriter(o.streams.Out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tNAME\tACCEPTED\tAPPLIED\tSTALE\tMISSED\tPREDATING\tROLLOUT\tREADY\tAGE")
	for _, obj := range objs {
		st := obj.PresetStatus()
		ns := obj.GetNamespace()
		name := obj.PresetKind() + "/" + obj.GetName()
		if ns == "" {
			ns = "(cluster)"
		}
		counts := []string{"-", "-", "-", "-"}
		if p := st.Pods; p != nil {
			counts = []string{fmt.Sprint(p.Applied), fmt.Sprint(p.Stale), fmt.Sprint(p.Missed), fmt.Sprint(p.Predating)}
		}
		rollout := string(v1alpha1.RolloutNever)
		if r := obj.PresetSpec().Rollout; r != nil && r.Policy != "" {
			rollout = string(r.Policy)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ns, name,
			condition(st, v1alpha1.ConditionAccepted, true), counts[0], counts[1], counts[2], counts[3], rollout,
			condition(st, v1alpha1.ConditionReady, false), duration.HumanDuration(time.Since(obj.GetCreationTimestamp().Time)))
	}
	return w.Flush()
}

// condition shows a condition's reason (or its status), "-" when absent.
func condition(st *v1alpha1.PodPresetStatus, typ string, reason bool) string {
	c := meta.FindStatusCondition(st.Conditions, typ)
	switch {
	case c == nil:
		return "-"
	case reason:
		return c.Reason
	}
	return string(c.Status)
}

// clusterClient builds a client from kubectl's flags, and returns the
// namespace they name (the kubeconfig context's, else "default").
func clusterClient(flags *genericclioptions.ConfigFlags) (client.Client, string, error) {
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading the kubeconfig: %w", err)
	}
	ns, _, err := flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("reading the namespace from the kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, "", err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, "", err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", fmt.Errorf("connecting to the cluster: %w", err)
	}
	return c, ns, nil
}
