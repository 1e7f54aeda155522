package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

type explainOptions struct {
	apply   applyOptions // offline: the pod's file, --presets, --policy
	presets []string
	output  string
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
}

func newExplainCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &explainOptions{streams: streams, flags: genericclioptions.NewConfigFlags(true)}
	o.apply.streams = streams
	cmd := &cobra.Command{
		Use:   "explain pod/NAME [-n NS] | explain -f POD.yaml --presets DIR",
		Short: "Say which presets select a pod, why or why not, what they inject, and what the pod got",
		Long: `For every preset in a pod's scope (the PodPresets of its namespace and every
ClusterPodPreset): whether it selects the pod and why (each selector or
namespaceSelector requirement that fails, the pod's opt-out, a namespace left
alone, containers it targets that the pod does not have), whether the webhook
refuses it, what it injects into which container, the values the pod would
not get because of conflicts, and what the pod has of it:

  applied    the preset's current version (and current Consul or Vault values)
  stale      an older version, or older values
  missed     created after the preset, without it (the webhook was down,
             or had not seen the preset yet)
  predating  created before the preset existed

Against a cluster, the pod, its namespace and the presets are read with the
kubeconfig flags kubectl takes. Offline (-f), the pod comes from a file and
the presets from --presets; a pod saved from a cluster (with its
creationTimestamp and annotations) and presets saved with their status get
the states too.`,
		Example: `  # Why did this pod get (or not get) its configuration?
  kubectl podpreset explain pod/orders-7d9f -n shop

  # Before creating it
  kubectl podpreset explain -f pod.yaml --presets presets/ -n shop

  # For tools
  kubectl podpreset explain pod/orders-7d9f -n shop -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args) },
	}
	f := cmd.Flags()
	o.flags.AddFlags(f)
	f.StringSliceVarP(&o.apply.files.Filenames, "filename", "f", nil, "offline: the pod (or workload) to explain")
	f.StringSliceVar(&o.presets, "presets", nil, "offline: file or directory of PodPresets, ClusterPodPresets, PodPresetPolicies and Namespaces (repeatable)")
	f.StringSliceVar(&o.apply.policies, "policy", nil, "offline: file or directory of PodPresetPolicies")
	f.StringToStringVar(&o.apply.namespaceLabels, "namespace-labels", nil, "offline: labels of namespaces the input has no Namespace object for, as k=v,k2=v2")
	f.StringVarP(&o.output, "output", "o", "", "output format: empty for a table, yaml or json")
	return cmd
}

func (o *explainOptions) fail(err error) error {
	fmt.Fprintf(o.streams.ErrOut, "error: %v\n", err)
	return exitError{exitInvalid}
}

func (o *explainOptions) run(ctx context.Context, args []string) error {
	if o.output != "" && o.output != "yaml" && o.output != "json" {
		return o.fail(fmt.Errorf("--output %q: must be empty (a table), yaml or json", o.output))
	}
	var ex presets.Explanation
	var err error
	switch {
	case len(args) == 1 && len(o.apply.files.Filenames) == 0:
		ex, err = o.fromCluster(ctx, args[0])
	case len(args) == 0 && len(o.apply.files.Filenames) > 0:
		ex, err = o.offline()
	default:
		err = fmt.Errorf("give pod/NAME (against the cluster) or -f FILE with --presets (offline), not both")
	}
	if err != nil {
		if _, ok := err.(exitError); ok {
			return err
		}
		return o.fail(err)
	}
	switch o.output {
	case "json":
		b, err := json.MarshalIndent(ex, "", "    ")
		if err != nil {
			return o.fail(err)
		}
		_, err = fmt.Fprintf(o.streams.Out, "%s\n", b)
		return err
	case "yaml":
		b, err := yaml.Marshal(ex)
		if err != nil {
			return o.fail(err)
		}
		_, err = o.streams.Out.Write(b)
		return err
	}
	return writeExplanation(o.streams.Out, ex)
}

// fromCluster reads the pod, its namespace and the presets in its scope.
func (o *explainOptions) fromCluster(ctx context.Context, arg string) (presets.Explanation, error) {
	kind, name, ok := strings.Cut(arg, "/")
	if !ok || name == "" || (kind != "pod" && kind != "pods" && kind != "po") {
		return presets.Explanation{}, fmt.Errorf("%q: give the pod as pod/NAME", arg)
	}
	c, ns, err := clusterClient(o.flags)
	if err != nil {
		return presets.Explanation{}, err
	}
	var pod corev1.Pod
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pod); err != nil {
		return presets.Explanation{}, fmt.Errorf("reading pod %s/%s: %w", ns, name, err)
	}
	var namespace corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: ns}, &namespace); err != nil {
		return presets.Explanation{}, fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	var pps v1alpha1.PodPresetList
	if err := c.List(ctx, &pps, client.InNamespace(ns)); err != nil {
		return presets.Explanation{}, fmt.Errorf("listing the PodPresets of %s: %w", ns, err)
	}
	var cpps v1alpha1.ClusterPodPresetList
	if err := c.List(ctx, &cpps); err != nil {
		return presets.Explanation{}, fmt.Errorf("listing ClusterPodPresets: %w", err)
	}
	var all []*presets.Preset
	load := func(obj v1alpha1.Object) {
		if p, _ := presets.Load(obj, acceptedCheck{}); p != nil {
			all = append(all, p)
		}
	}
	for i := range pps.Items {
		load(&pps.Items[i])
	}
	for i := range cpps.Items {
		load(&cpps.Items[i])
	}
	return presets.Explain(&pod, presets.Namespace{Name: ns, Labels: namespace.Labels}, all, true), nil
}

// acceptedCheck refuses, against a cluster, the presets whose Accepted
// condition the webhook set to False: it knows the tenancy and the
// policies; the CLI does not.
type acceptedCheck struct{}

func (acceptedCheck) Check(obj v1alpha1.Object) field.ErrorList {
	c := meta.FindStatusCondition(obj.PresetStatus().Conditions, v1alpha1.ConditionAccepted)
	if c == nil || c.Status != "False" {
		return nil
	}
	return field.ErrorList{field.Forbidden(field.NewPath("status", "conditions").Key(v1alpha1.ConditionAccepted), c.Reason+": "+c.Message)}
}

func (acceptedCheck) Reason() string { return "NotAccepted" }

// offline reads the pod from -f and the presets from --presets, as apply
// does; a preset that breaks a policy is shown refused, not an error.
func (o *explainOptions) offline() (presets.Explanation, error) {
	a := &o.apply
	a.namespace = o.flagNamespace()
	if a.namespace == "" {
		a.namespace = "default"
	}
	a.keepRefused = true
	docs, errs := readDocuments(&a.files, o.streams.In)
	if len(o.presets) > 0 {
		pdocs, perrs := readDocuments(&resource.FilenameOptions{Filenames: o.presets}, o.streams.In)
		docs, errs = append(docs, pdocs...), append(errs, perrs...)
	}
	if len(a.policies) > 0 {
		pdocs, perrs := readDocuments(&resource.FilenameOptions{Filenames: a.policies}, o.streams.In)
		docs, errs = append(docs, pdocs...), append(errs, perrs...)
	}
	in, cerrs := a.classify(docs)
	if errs = append(errs, cerrs...); len(errs) > 0 {
		return presets.Explanation{}, a.fail(errs)
	}
	var pods []*corev1.Pod
	for _, d := range in.workloads {
		if obj, ok := in.objects[d]; ok {
			pod, _, _ := podOf(obj)
			if pod.Name == "" {
				pod.Name = d.name
			}
			if pod.Namespace == "" {
				pod.Namespace = d.ns
			}
			pods = append(pods, pod)
		}
	}
	if len(pods) != 1 {
		return presets.Explanation{}, fmt.Errorf("-f: found %d pods or workloads, explain takes exactly one", len(pods))
	}
	pod := pods[0]
	if pod.Namespace == "" {
		pod.Namespace = a.namespace
	}
	return presets.Explain(pod, a.namespaceOf(in, pod.Namespace), in.presets, !pod.CreationTimestamp.IsZero()), nil
}

func (o *explainOptions) flagNamespace() string {
	if o.flags.Namespace != nil {
		return *o.flags.Namespace
	}
	return ""
}

// writeExplanation prints a summary table, then each preset's details.
func writeExplanation(w io.Writer, ex presets.Explanation) error {
	fmt.Fprintf(w, "Pod %s\n", ex.Pod)
	if ex.Skipped != "" {
		fmt.Fprintf(w, "Left alone: %s\n", ex.Skipped)
	}
	if len(ex.Presets) == 0 {
		_, err := fmt.Fprintln(w, "No preset in scope: no PodPreset in its namespace, no ClusterPodPreset.")
		return err
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PRESET\tGENERATION\tSELECTS\tSTATE\tGOT")
	for _, p := range ex.Presets {
		selects, state, got := "no", "-", "-"
		if p.Selects {
			selects = "yes"
			if p.Refused != "" {
				selects = "yes, refused"
			}
		}
		if p.State != "" {
			state = string(p.State)
		}
		if p.GotGeneration > 0 {
			got = fmt.Sprint(p.GotGeneration)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", p.Preset, p.Generation, selects, state, got)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range ex.Presets {
		fmt.Fprintf(w, "\n%s (generation %d)\n", p.Preset, p.Generation)
		for _, why := range p.Why {
			fmt.Fprintf(w, "  why:       %s\n", why)
		}
		if p.Refused != "" {
			fmt.Fprintf(w, "  refused:   %s\n", p.Refused)
		}
		if p.State != "" {
			fmt.Fprintf(w, "  state:     %s\n", stateLine(p))
		}
		for _, in := range p.Injects {
			fmt.Fprintf(w, "  %s:\n", in.Target)
			for _, what := range in.What {
				fmt.Fprintf(w, "    %s\n", what)
			}
		}
		for _, c := range p.Conflicts {
			fmt.Fprintf(w, "  conflict:  %s\n", c)
		}
		for _, om := range p.Omitted {
			fmt.Fprintf(w, "  omitted:   %s\n", om)
		}
	}
	return nil
}

func stateLine(p presets.PresetExplanation) string {
	switch p.State {
	case presets.StateApplied:
		return fmt.Sprintf("applied: the pod has generation %d; what the preset injects last changed at generation %d", p.GotGeneration, p.ContentGeneration)
	case presets.StateStale:
		if p.GotGeneration < p.ContentGeneration {
			return fmt.Sprintf("stale: the pod has generation %d; what the preset injects changed at generation %d (a restart of its workload gives it the current version)", p.GotGeneration, p.ContentGeneration)
		}
		return fmt.Sprintf("stale: the pod has generation %d, but older Consul or Vault values than the preset's current ones (its podpreset.dev/sources-hash)", p.GotGeneration)
	case presets.StateMissed:
		return "missed: the pod was created after the preset but did not get it (the webhook was down, or had not seen the preset yet)"
	case presets.StatePredating:
		return "predating: the pod was created before the preset"
	}
	return string(p.State)
}
