package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/spf13/cobra"
	yamlv3 "go.yaml.in/yaml/v3"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/resource"
	"sigs.k8s.io/yaml"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// Metadata the API server sets, which a manifest to create must not carry.
var serverMetadata = []string{"uid", "resourceVersion", "generation", "creationTimestamp", "selfLink", "managedFields"}

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

func newMigrateCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var files resource.FilenameOptions
	cmd := &cobra.Command{
		Use:   "migrate -f FILE|DIR|- [-f ...]",
		Short: "Rewrite settings.k8s.io/v1alpha1 PodPresets to podpreset.dev/v1alpha1",
		Long: `Rewrites every settings.k8s.io/v1alpha1 PodPreset (the in-tree API that
Kubernetes 1.20 removed) to podpreset.dev/v1alpha1 and prints all documents in
input order. The spec is kept as it is: podpreset.dev's spec is a superset.
Metadata the API server sets (uid, resourceVersion, generation,
creationTimestamp, selfLink, managedFields, the last-applied annotation) is
removed so the output can be created. PodPresets inside a v1 List are
migrated too. Every other document is printed exactly as it was read,
comments included. A migrated preset that podpreset.dev would reject (one
that injects nothing, say) is reported on stderr.`,
		Example: `  kubectl get podpresets.settings.k8s.io -A -o yaml | kubectl podpreset migrate -f - > presets.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return migrate(&files, streams)
		},
	}
	cmd.Flags().StringSliceVarP(&files.Filenames, "filename", "f", nil, "file, directory or - (stdin) to read; repeatable")
	cmd.Flags().BoolVarP(&files.Recursive, "recursive", "R", false, "read directories given with -f recursively")
	return cmd
}

func migrate(files *resource.FilenameOptions, streams genericiooptions.IOStreams) error {
	fail := func(errs ...error) error {
		for _, err := range errs {
			fmt.Fprintf(streams.ErrOut, "error: %v\n", err)
		}
		return exitError{exitInvalid}
	}
	names, err := inputFiles(files)
	if err != nil {
		return fail(err)
	}
	var out [][]byte
	var errs []error
	for _, name := range names {
		docs, ferrs := migrateFile(name, streams)
		out, errs = append(out, docs...), append(errs, ferrs...)
	}
	if len(errs) > 0 {
		return fail(errs...)
	}
	for i, doc := range out {
		if i > 0 {
			fmt.Fprint(streams.Out, "---\n")
		}
		if _, err := streams.Out.Write(doc); err != nil {
			return err
		}
		if !bytes.HasSuffix(doc, []byte("\n")) {
			fmt.Fprintln(streams.Out)
		}
	}
	return nil
}

// migrateDocument returns the document with its legacy PodPresets
// rewritten, or unchanged (byte for byte) when it has none.
func migrateDocument(chunk []byte) ([]byte, []string, error) {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(chunk, &doc); err != nil {
		return nil, nil, fmt.Errorf("not YAML or JSON: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yamlv3.MappingNode {
		return chunk, nil, nil
	}
	root := doc.Content[0]
	var warnings []string
	changed := false
	if isLegacyPodPreset(root) {
		warnings = migrateNode(root)
		changed = true
	} else if scalar(root, "apiVersion") == "v1" && scalar(root, "kind") == "List" {
		if items := child(root, "items"); items != nil {
			for i, item := range items.Content {
				if item.Kind == yamlv3.MappingNode && isLegacyPodPreset(item) {
					for _, w := range migrateNode(item) {
						warnings = append(warnings, fmt.Sprintf("item %d: %s", i+1, w))
					}
					changed = true
				}
			}
		}
	}
	if !changed {
		return chunk, nil, nil
	}
	var buf bytes.Buffer
	enc := yamlv3.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, nil, fmt.Errorf("encoding: %w", err)
	}
	return buf.Bytes(), warnings, nil
}

func isLegacyPodPreset(n *yamlv3.Node) bool {
	return scalar(n, "apiVersion") == legacyPodPreset.GroupVersion().String() && scalar(n, "kind") == legacyPodPreset.Kind
}

// migrateNode rewrites one PodPreset in place and returns what podpreset.dev
// would reject in it.
func migrateNode(n *yamlv3.Node) []string {
	child(n, "apiVersion").Value = v1alpha1.GroupVersion.String()
	if meta := child(n, "metadata"); meta != nil && meta.Kind == yamlv3.MappingNode {
		for _, key := range serverMetadata {
			remove(meta, key)
		}
		if ann := child(meta, "annotations"); ann != nil {
			remove(ann, lastApplied)
			if len(ann.Content) == 0 {
				remove(meta, "annotations")
			}
		}
	}
	remove(n, "status")
	// Check the result as podpreset.dev would.
	var warnings []string
	var pp v1alpha1.PodPreset
	b, err := yamlv3.Marshal(n)
	if err == nil {
		err = yaml.Unmarshal(b, &pp)
	}
	if err != nil {
		return []string{fmt.Sprintf("cannot be read as a podpreset.dev PodPreset: %v", err)}
	}
	for _, e := range presets.ValidatePodPreset(&pp) {
		warnings = append(warnings, "podpreset.dev would reject it: "+e.Error())
	}
	return warnings
}

func child(n *yamlv3.Node, key string) *yamlv3.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func scalar(n *yamlv3.Node, key string) string {
	if c := child(n, key); c != nil && c.Kind == yamlv3.ScalarNode {
		return c.Value
	}
	return ""
}

func remove(n *yamlv3.Node, key string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			n.Content = slices.Delete(n.Content, i, i+2)
			return
		}
	}
}

// migrateFile migrates every document of one file ("-": stdin), printing
// warnings as it goes.
func migrateFile(name string, streams genericiooptions.IOStreams) ([][]byte, []error) {
	source, r := name, io.Reader(nil)
	if name == "-" {
		source, r = "<stdin>", streams.In
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, []error{fmt.Errorf("reading %s: %w", name, err)}
		}
		defer f.Close()
		r = f
	}
	var out [][]byte
	var errs []error
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for index := 1; ; index++ {
		chunk, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		d := &document{source: source, index: index}
		if err != nil {
			errs = append(errs, &docError{d, err})
			break
		}
		if len(bytes.TrimSpace(chunk)) == 0 {
			index--
			continue
		}
		migrated, warnings, err := migrateDocument(chunk)
		if err != nil {
			errs = append(errs, &docError{d, err})
			continue
		}
		for _, w := range warnings {
			fmt.Fprintf(streams.ErrOut, "Warning: %s: %s\n", d.where(), w)
		}
		out = append(out, migrated)
	}
	return out, errs
}
