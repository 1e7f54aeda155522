package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"

	evanphx "github.com/evanphx/json-patch/v5"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/resource"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/patch"
	"github.com/podpreset/podpreset/presets/policy"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// The legacy API group; its PodPreset spec is a subset of ours.
var legacyPodPreset = schema.GroupVersionKind{Group: "settings.k8s.io", Version: "v1alpha1", Kind: "PodPreset"}

type applyOptions struct {
	files           resource.FilenameOptions
	policies        []string
	namespace       string
	namespaceLabels map[string]string
	output          string
	failOnConflict  bool
	// keepRefused keeps a preset that breaks a policy, refused (explain),
	// instead of failing.
	keepRefused bool
	streams     genericiooptions.IOStreams
}

func newApplyCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &applyOptions{streams: streams}
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [-f ...]",
		Short: "Show what the webhook does to workloads, without a cluster",
		Long: `Reads PodPresets, ClusterPodPresets, PodPresetPolicies, Namespaces and workloads (Pod, Deployment,
StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ReplicationController,
PodTemplate), applies the presets to each workload's pod exactly as the
webhook would, and prints the workloads in input order. Presets and Namespaces
are not printed; any other object is printed unchanged.

A workload's namespace is its metadata.namespace, else --namespace, else
"default". A namespace's labels come from a Namespace object in the input,
else from --namespace-labels. Conflicts are printed to stderr as warnings.
A preset without metadata.generation is taken at generation 1, as the API
server would create it. Presets are checked against the PodPresetPolicies
of the input and of --policy, as the webhook checks them; where none selects
a namespace, the defaults apply (no hostPath, no injected init container,
no LD_PRELOAD or *_PROXY, ...). A preset that breaks a policy is an error.`,
		Example: `  # What would the presets in presets/ do to this Deployment?
  kubectl podpreset apply -f presets/ -f deploy.yaml

  # In a pipeline, failing the build on any conflict
  kustomize build overlays/prod | kubectl podpreset apply -f - --fail-on-conflict`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run() },
	}
	f := cmd.Flags()
	f.StringSliceVarP(&o.files.Filenames, "filename", "f", nil, "file, directory or - (stdin) to read; repeatable; multi-document YAML or JSON")
	f.BoolVarP(&o.files.Recursive, "recursive", "R", false, "read directories given with -f recursively")
	f.StringVarP(&o.namespace, "namespace", "n", "", `namespace of workloads and PodPresets that do not name one (default "default")`)
	f.StringToStringVar(&o.namespaceLabels, "namespace-labels", nil, "labels of namespaces the input has no Namespace object for, as k=v,k2=v2")
	f.StringVarP(&o.output, "output", "o", "yaml", "output format: yaml or json")
	f.BoolVar(&o.failOnConflict, "fail-on-conflict", false, "exit 2 when any preset value was dropped in a conflict")
	f.StringSliceVar(&o.policies, "policy", nil, "file or directory of PodPresetPolicies to check presets against, as the webhook does (repeatable; they may also be in -f input); without any, the defaults apply")
	return cmd
}

// fail prints every error and returns the exit error.
func (o *applyOptions) fail(errs []error) error {
	sortErrors(errs)
	for _, err := range errs {
		fmt.Fprintf(o.streams.ErrOut, "error: %v\n", err)
	}
	return exitError{exitInvalid}
}

func (o *applyOptions) run() error {
	in, errs := o.input()
	if len(errs) > 0 {
		return o.fail(errs)
	}
	out, conflicts, errs := o.mutate(in)
	if len(errs) > 0 {
		return o.fail(errs)
	}
	if err := write(o.streams.Out, o.output, out); err != nil {
		return o.fail([]error{err})
	}
	if conflicts > 0 && o.failOnConflict {
		fmt.Fprintf(o.streams.ErrOut, "error: %d preset value(s) dropped in conflicts\n", conflicts)
		return exitError{exitConflict}
	}
	return nil
}

// input checks the flags, reads the documents of -f and the policies of
// --policy, and classifies them (apply and compile). Every document that
// could be read is checked, so that one run reports every problem.
func (o *applyOptions) input() (*input, []error) {
	if o.output != "yaml" && o.output != "json" {
		return nil, []error{fmt.Errorf("--output %q: must be yaml or json", o.output)}
	}
	if o.namespace == "" {
		o.namespace = "default"
	}
	docs, readErrs := readDocuments(&o.files, o.streams.In)
	if len(o.policies) > 0 {
		pdocs, perrs := o.policyDocuments()
		readErrs = append(readErrs, perrs...)
		docs = append(docs, pdocs...)
	}
	in, errs := o.classify(docs)
	return in, append(readErrs, errs...)
}

// policyDocuments reads the PodPresetPolicies of --policy.
func (o *applyOptions) policyDocuments() ([]*document, []error) {
	pdocs, errs := readDocuments(&resource.FilenameOptions{Filenames: o.policies, Recursive: o.files.Recursive}, o.streams.In)
	var docs []*document
	for _, d := range pdocs {
		if d.gvk != v1alpha1.GroupVersion.WithKind(v1alpha1.KindPodPresetPolicy) {
			errs = append(errs, &docError{d, fmt.Errorf("--policy reads PodPresetPolicies only, not %s", d.gvk.Kind)})
			continue
		}
		docs = append(docs, d)
	}
	return docs, errs
}

// input is the classified documents.
type input struct {
	presets    []*presets.Preset
	namespaces map[string]map[string]string // name -> labels
	workloads  []*document                  // everything to print, in order
	objects    map[*document]runtime.Object // decoded workloads
}

var decoder = serializer.NewCodecFactory(clientscheme.Scheme).UniversalDeserializer()

// classify sorts documents into presets, policies, namespaces and objects
// to print, then loads every preset as the API server and the webhook
// would: validated, and checked against the PodPresetPolicies of the input
// and of --policy (the defaults where none selects its namespace).
func (o *applyOptions) classify(docs []*document) (*input, []error) {
	in := &input{namespaces: map[string]map[string]string{}, objects: map[*document]runtime.Object{}}
	var errs []error
	type loadable struct {
		doc *document
		obj v1alpha1.Object
	}
	var loads []loadable
	var policies []v1alpha1.PodPresetPolicy
	for _, d := range docs {
		switch {
		case d.gvk == v1alpha1.GroupVersion.WithKind(v1alpha1.KindPodPreset) || d.gvk == legacyPodPreset:
			if d.gvk == legacyPodPreset {
				fmt.Fprintf(o.streams.ErrOut, "Warning: %s: settings.k8s.io/v1alpha1 is read as podpreset.dev/v1alpha1; run \"kubectl podpreset migrate\" to convert it\n", d.where())
			}
			pp := &v1alpha1.PodPreset{}
			if err := strictUnmarshal(d.raw, pp); err != nil {
				errs = append(errs, &docError{d, err})
				continue
			}
			if pp.Namespace == "" {
				pp.Namespace = o.namespace
			}
			loads = append(loads, loadable{d, pp})
		case d.gvk == v1alpha1.GroupVersion.WithKind(v1alpha1.KindClusterPodPreset):
			cpp := &v1alpha1.ClusterPodPreset{}
			if err := strictUnmarshal(d.raw, cpp); err != nil {
				errs = append(errs, &docError{d, err})
				continue
			}
			loads = append(loads, loadable{d, cpp})
		case d.gvk == v1alpha1.GroupVersion.WithKind(v1alpha1.KindPodPresetPolicy):
			var p v1alpha1.PodPresetPolicy
			if err := strictUnmarshal(d.raw, &p); err != nil {
				errs = append(errs, &docError{d, err})
				continue
			}
			if err := policy.Validate(&p).ToAggregate(); err != nil {
				errs = append(errs, &docError{d, err})
				continue
			}
			policies = append(policies, p)
		case d.gvk == corev1.SchemeGroupVersion.WithKind("Namespace"):
			var ns corev1.Namespace
			if err := json.Unmarshal(d.raw, &ns); err != nil {
				errs = append(errs, &docError{d, err})
				continue
			}
			in.namespaces[ns.Name] = ns.Labels
		default:
			in.workloads = append(in.workloads, d)
			if !clientscheme.Scheme.Recognizes(d.gvk) {
				continue // printed unchanged
			}
			obj, _, err := decoder.Decode(d.raw, nil, nil)
			if err != nil {
				errs = append(errs, &docError{d, err})
				continue
			}
			if _, _, ok := podOf(obj); ok {
				in.objects[d] = obj
			}
		}
	}
	set, err := policy.NewSet(policies...)
	if err != nil {
		errs = append(errs, err)
	}
	checker := &policy.Checker{Policies: set, Namespaces: func(name string) map[string]string { return o.namespaceOf(in, name).Labels }}
	for _, l := range loads {
		if l.obj.GetGeneration() == 0 {
			l.obj.SetGeneration(1)
		}
		p, lerrs := presets.Load(l.obj, checker)
		if len(lerrs) > 0 && o.keepRefused && p != nil && p.Refused().Reason != v1alpha1.ReasonInvalid {
			in.presets = append(in.presets, p)
			continue
		}
		if len(lerrs) > 0 {
			errs = append(errs, &docError{l.doc, lerrs.ToAggregate()})
			continue
		}
		o.advise(l.doc, l.obj.PresetSpec())
		in.presets = append(in.presets, p)
	}
	return in, errs
}

// advise prints, as warnings, what the validating webhook would say of a
// valid preset.
func (o *applyOptions) advise(d *document, spec *v1alpha1.PodPresetSpec) {
	for _, a := range presets.Advise(spec, field.NewPath("spec")) {
		fmt.Fprintf(o.streams.ErrOut, "Warning: %s: %s\n", d.where(), a)
	}
}

// strictUnmarshal decodes JSON into a typed object and fails on unknown or
// duplicate fields, naming them.
func strictUnmarshal(data []byte, into any) error {
	strict, err := sigsjson.UnmarshalStrict(data, into)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// namespace returns what matching needs to know of a namespace: its labels
// from the input, else from --namespace-labels, and the
// kubernetes.io/metadata.name label the API server sets on every namespace.
func (o *applyOptions) namespaceOf(in *input, name string) presets.Namespace {
	labels, ok := in.namespaces[name]
	if !ok {
		labels = o.namespaceLabels
	}
	l := maps.Clone(labels)
	if l == nil {
		l = map[string]string{}
	}
	l[corev1.LabelMetadataName] = name
	return presets.Namespace{Name: name, Labels: l}
}

// mutate applies the presets to every workload and returns the documents to
// print, as JSON, with the number of conflicts.
func (o *applyOptions) mutate(in *input) ([][]byte, int, []error) {
	set := presets.NewSet(in.presets...)
	var out [][]byte
	var errs []error
	conflicts := 0
	for _, d := range in.workloads {
		obj, ok := in.objects[d]
		if !ok {
			out = append(out, d.raw)
			continue
		}
		pod, prefix, _ := podOf(obj)
		nsName := d.ns
		if nsName == "" {
			nsName = o.namespace
		}
		res := presets.Apply(pod, o.namespaceOf(in, nsName), set)
		for _, c := range res.Conflicts {
			fmt.Fprintf(o.streams.ErrOut, "Warning: %s %s/%s: %s\n", d.gvk.Kind, nsName, d.name, c)
		}
		conflicts += len(res.Conflicts)
		if !res.Changed {
			out = append(out, d.raw)
			continue
		}
		mutated, err := patchRaw(d.raw, pod, res.Pod, prefix)
		if err != nil {
			errs = append(errs, &docError{d, err})
			continue
		}
		out = append(out, mutated)
	}
	return out, conflicts, errs
}

// patchRaw applies the engine's change to the raw document the workload
// was decoded from, as a JSON patch that only inserts what presets added,
// so that fields the typed object does not know survive untouched.
func patchRaw(raw []byte, before, after *corev1.Pod, prefix string) ([]byte, error) {
	ops, err := patch.Pod(before, after, prefix)
	if err != nil {
		return nil, err
	}
	patchJSON, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encoding patch: %w", err)
	}
	p, err := evanphx.DecodePatch(patchJSON)
	if err != nil {
		return nil, fmt.Errorf("decoding patch: %w", err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		return nil, fmt.Errorf("applying patch: %w", err)
	}
	return out, nil
}

// write prints documents as YAML (separated by ---) or as a JSON v1 List,
// keys sorted.
func write(w io.Writer, format string, docs [][]byte) error {
	if format == "json" {
		// Decoded and encoded again, so keys come out sorted whatever
		// order the patch added them in, as in the YAML output.
		items := make([]any, len(docs))
		for i, d := range docs {
			if err := json.Unmarshal(d, &items[i]); err != nil {
				return err
			}
		}
		b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	for i, d := range docs {
		y, err := yaml.JSONToYAML(d)
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(y); err != nil {
			return err
		}
	}
	return nil
}
