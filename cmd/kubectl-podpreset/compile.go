package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/podpreset/podpreset/presets/admissionpolicy"
)

type compileOptions struct {
	applyOptions
	exclude []string
}

func newCompileCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &compileOptions{applyOptions: applyOptions{streams: streams}}
	cmd := &cobra.Command{
		Use:   "compile -f FILE|DIR|- [-f ...]",
		Short: "Compile presets into MutatingAdmissionPolicies: no webhook in the pod-creation path",
		Long: `Reads PodPresets, ClusterPodPresets, PodPresetPolicies and Namespaces, as
"apply" does, and prints MutatingAdmissionPolicies and their bindings
(admissionregistration.k8s.io/v1, Kubernetes 1.36 and later) that make the API
server give pods exactly what the podpreset webhook would give them, with no
webhook and no controller: for GitOps. Apply the output with kubectl.

One policy per namespace that has PodPresets holds them and every
ClusterPodPreset; one more holds the ClusterPodPresets for every other
namespace. So at most one policy applies to a pod, and presets keep the
webhook's order (PodPresets, then ClusterPodPresets, each by name). Recompile
and apply again when any preset changes: the policies carry each preset's
generation into podpreset.dev/applied.

A preset that cannot be compiled is an error that names the field: values
from Consul or Vault, and injected init containers. The API server reports
no conflicts for a policy (a policy cannot warn); "apply" shows them. Pods of
kube-system and of namespaces labelled podpreset.dev/ignore=true are left
alone, as the webhook leaves them.`,
		Example: `  # Compile the presets of a GitOps repository and apply the policies
  kubectl podpreset compile -f presets/ | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run() },
	}
	f := cmd.Flags()
	f.StringSliceVarP(&o.files.Filenames, "filename", "f", nil, "file, directory or - (stdin) to read; repeatable; multi-document YAML or JSON")
	f.BoolVarP(&o.files.Recursive, "recursive", "R", false, "read directories given with -f recursively")
	f.StringVarP(&o.namespace, "namespace", "n", "", `namespace of PodPresets that do not name one (default "default")`)
	f.StringToStringVar(&o.namespaceLabels, "namespace-labels", nil, "labels of namespaces the input has no Namespace object for, as k=v,k2=v2 (for PodPresetPolicies' namespace selectors)")
	f.StringVarP(&o.output, "output", "o", "yaml", "output format: yaml or json")
	f.StringSliceVar(&o.policies, "policy", nil, "file or directory of PodPresetPolicies to check presets against, as the webhook does (repeatable); without any, the defaults apply")
	f.StringSliceVar(&o.exclude, "exclude-namespace", nil, "namespaces whose pods the policies leave alone (repeatable), besides kube-system and those labelled podpreset.dev/ignore=true")
	return cmd
}

func (o *compileOptions) run() error {
	in, errs := o.input()
	if len(errs) > 0 {
		return o.fail(errs)
	}
	for _, d := range in.workloads {
		errs = append(errs, &docError{d, fmt.Errorf("compile reads presets, PodPresetPolicies and Namespaces, not %s", d.gvk.Kind)})
	}
	if len(errs) > 0 {
		return o.fail(errs)
	}
	plan, err := admissionpolicy.Plan(in.presets, o.exclude...)
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		return o.fail(joined.Unwrap())
	} else if err != nil {
		return o.fail([]error{err})
	}
	var out [][]byte
	for _, p := range plan {
		for _, obj := range []any{p.Policy, p.Binding} {
			b, err := json.Marshal(obj)
			if err != nil {
				return o.fail([]error{err})
			}
			out = append(out, b)
		}
	}
	if err := write(o.streams.Out, o.output, out); err != nil {
		return o.fail([]error{err})
	}
	return nil
}
