package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/resource"
)

// document is one object read from the input, as JSON.
type document struct {
	source string // the file, or "<stdin>"
	seq    int    // position in the whole input, for ordering messages
	index  int    // 1-based position in its file
	item   int    // 1-based position in a List document; 0 when not in a List
	raw    []byte
	gvk    schema.GroupVersionKind
	name   string
	ns     string
}

// where names the document for a message: file, document index, kind and
// name.
func (d *document) where() string {
	s := fmt.Sprintf("%s: document %d", d.source, d.index)
	if d.item > 0 {
		s += fmt.Sprintf(", item %d", d.item)
	}
	if d.gvk.Kind != "" {
		s += " (" + d.gvk.Kind
		if d.name != "" {
			s += " " + d.name
		}
		s += ")"
	}
	return s
}

// docError is a problem with one document.
type docError struct {
	doc *document
	err error
}

func (e *docError) Error() string { return e.doc.where() + ": " + e.err.Error() }
func (e *docError) Unwrap() error { return e.err }

// sortErrors orders errors as the input: errors that name no document
// (a file that cannot be read) first, then by document.
func sortErrors(errs []error) {
	pos := func(err error) [2]int {
		if de, ok := errors.AsType[*docError](err); ok {
			return [2]int{de.doc.seq, de.doc.item}
		}
		return [2]int{-1, 0}
	}
	slices.SortStableFunc(errs, func(a, b error) int {
		pa, pb := pos(a), pos(b)
		if c := cmp.Compare(pa[0], pb[0]); c != 0 {
			return c
		}
		return cmp.Compare(pa[1], pb[1])
	})
}

// inputFiles expands -f arguments: "-" is stdin, a directory gives its
// .yaml, .yml and .json files in name order (recursively with -R).
func inputFiles(opts *resource.FilenameOptions) ([]string, error) {
	if len(opts.Filenames) == 0 {
		return nil, errors.New("no input: give at least one -f FILE, -f DIR or -f -")
	}
	var out []string
	for _, name := range opts.Filenames {
		if name == "-" {
			out = append(out, "-")
			continue
		}
		info, err := os.Stat(name)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		if !info.IsDir() {
			out = append(out, name)
			continue
		}
		var found []string
		err = filepath.WalkDir(name, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != name && !opts.Recursive {
					return filepath.SkipDir
				}
				return nil
			}
			switch strings.ToLower(filepath.Ext(path)) {
			case ".yaml", ".yml", ".json":
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading directory %s: %w", name, err)
		}
		slices.Sort(found)
		out = append(out, found...)
	}
	return out, nil
}

// readDocuments reads every document of every input, in order. A v1 List
// is read as its items. Empty documents are skipped.
func readDocuments(opts *resource.FilenameOptions, stdin io.Reader) ([]*document, []error) {
	files, err := inputFiles(opts)
	if err != nil {
		return nil, []error{err}
	}
	var docs []*document
	var errs []error
	seq := 0
	for _, file := range files {
		source, r := file, io.Reader(nil)
		if file == "-" {
			source, r = "<stdin>", stdin
		} else {
			data, err := os.ReadFile(file)
			if err != nil {
				errs = append(errs, fmt.Errorf("reading %s: %w", file, err))
				continue
			}
			r = bytes.NewReader(data)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
		for index := 1; ; index++ {
			var raw json.RawMessage
			err := dec.Decode(&raw)
			if errors.Is(err, io.EOF) {
				break
			}
			d := &document{source: source, index: index, seq: seq}
			seq++
			if err != nil {
				errs = append(errs, &docError{d, fmt.Errorf("not YAML or JSON: %w", err)})
				break // the decoder cannot resynchronise after a syntax error
			}
			if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
				index--
				continue
			}
			expanded, err := parseDocument(d, raw)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			docs = append(docs, expanded...)
		}
	}
	return docs, errs
}

// header is what every document must have.
type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

func parseDocument(d *document, raw []byte) ([]*document, error) {
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, &docError{d, fmt.Errorf("not an object: %w", err)}
	}
	d.raw, d.name, d.ns = raw, h.Metadata.Name, h.Metadata.Namespace
	switch {
	case h.APIVersion == "" && h.Kind == "":
		return nil, &docError{d, errors.New("apiVersion and kind are missing")}
	case h.APIVersion == "":
		return nil, &docError{d, errors.New("apiVersion is missing")}
	case h.Kind == "":
		return nil, &docError{d, errors.New("kind is missing")}
	}
	gv, err := schema.ParseGroupVersion(h.APIVersion)
	if err != nil {
		return nil, &docError{d, fmt.Errorf("apiVersion %q: %w", h.APIVersion, err)}
	}
	d.gvk = gv.WithKind(h.Kind)
	if d.gvk != (schema.GroupVersionKind{Version: "v1", Kind: "List"}) {
		return []*document{d}, nil
	}
	var out []*document
	for i, item := range h.Items {
		sub, err := parseDocument(&document{source: d.source, index: d.index, seq: d.seq, item: i + 1}, item)
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}
