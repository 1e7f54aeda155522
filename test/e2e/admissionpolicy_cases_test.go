package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/admissionpolicy"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// fixedPolicyCases are the differential test's cases from the repository:
// every example under manifests/examples, every case of the CLI's golden
// tests (cmd/kubectl-podpreset/testdata/apply) that succeeds, one case per
// pod or workload template, with the presets of its namespace and every
// ClusterPodPreset, and the engine's table cases in the default namespace. Cases with a preset the compiler refuses (Consul
// or Vault values, init containers) are left out, by name in the log.
func fixedPolicyCases(t *testing.T) []policyCase {
	t.Helper()
	var out []policyCase
	var skipped []string
	add := func(name string, docs []map[string]any, defaultNS string, nsLabels map[string]map[string]string) {
		cs, err := casesOf(name, docs, defaultNS, nsLabels)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, c := range cs {
			if why := uncompilable(c); why != "" {
				skipped = append(skipped, c.name+" ("+why+")")
				continue
			}
			out = append(out, c)
		}
	}
	examples, err := filepath.Glob(filepath.Join(cp.Root, "manifests", "examples", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range examples {
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			continue
		}
		docs := readDocs(t, dir)
		add("example "+filepath.Base(dir), docs, "default", namespaceLabels(docs, nil))
	}
	golden, err := filepath.Glob(filepath.Join(cp.Root, "cmd", "kubectl-podpreset", "testdata", "apply", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range golden {
		if _, err := os.Stat(filepath.Join(dir, "exit")); err == nil {
			continue // a failing run: nothing is applied
		}
		args, err := os.ReadFile(filepath.Join(dir, "args"))
		if err != nil {
			continue
		}
		ns, flagLabels := "default", map[string]string{}
		lines := strings.Split(strings.TrimSpace(string(args)), "\n")
		for i, a := range lines {
			if i+1 >= len(lines) {
				break
			}
			switch a {
			case "-n", "--namespace":
				ns = lines[i+1]
			case "--namespace-labels":
				for kv := range strings.SplitSeq(lines[i+1], ",") {
					k, v, _ := strings.Cut(kv, "=")
					flagLabels[k] = v
				}
			}
		}
		docs := readDocs(t, dir)
		add("CLI case "+filepath.Base(dir), docs, ns, namespaceLabels(docs, flagLabels))
	}
	// The engine's table cases (presets' TestApply, exported by its
	// TestEngineCasesFile).
	raw, err := os.ReadFile(filepath.Join(cp.Root, "presets", "testdata", "engine-cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var engine []struct {
		Name              string                       `json:"name"`
		NamespaceLabels   map[string]string            `json:"namespaceLabels"`
		Pod               corev1.Pod                   `json:"pod"`
		PodPresets        []*v1alpha1.PodPreset        `json:"podPresets"`
		ClusterPodPresets []*v1alpha1.ClusterPodPreset `json:"clusterPodPresets"`
	}
	if err := json.Unmarshal(raw, &engine); err != nil {
		t.Fatal(err)
	}
	for i, e := range engine {
		pod := e.Pod.DeepCopy()
		pod.Namespace, pod.Name = "", fmt.Sprintf("engine-%d", i)
		c := policyCase{name: "engine case " + e.Name, pod: pod, pps: e.PodPresets, cpps: e.ClusterPodPresets, nsLabels: e.NamespaceLabels}
		if why := uncompilable(c); why != "" {
			skipped = append(skipped, c.name+" ("+why+")")
			continue
		}
		out = append(out, c)
	}
	t.Logf("fixed cases left out, with a preset the compiler refuses: %s", strings.Join(skipped, "; "))
	if len(out) < 10 {
		t.Fatalf("only %d fixed cases: the examples or the golden cases moved", len(out))
	}
	return out
}

// uncompilable says why a case has a preset the compiler refuses.
func uncompilable(c policyCase) string {
	var objs []v1alpha1.Object
	for _, pp := range c.pps {
		objs = append(objs, pp.DeepCopy())
	}
	for _, cpp := range c.cpps {
		objs = append(objs, cpp.DeepCopy())
	}
	for _, o := range objs {
		if o.GetGeneration() == 0 {
			o.SetGeneration(1)
		}
		p, _ := presets.Load(o)
		if p == nil {
			return o.GetName() + " does not load"
		}
		if err := admissionpolicy.Check(p); err != nil {
			var r *admissionpolicy.Refusal
			if errors.As(err, &r) {
				return r.Field
			}
			return err.Error()
		}
	}
	return ""
}

// readDocs reads every YAML and JSON document under dir, and its stdin
// file; Lists are unpacked.
func readDocs(t *testing.T, dir string) []map[string]any {
	t.Helper()
	var docs []map[string]any
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" && ext != ".json" && d.Name() != "stdin" {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil // the golden cases include malformed input on purpose
			}
			if m == nil {
				continue
			}
			if m["kind"] == "List" {
				items, _ := m["items"].([]any)
				for _, it := range items {
					if im, ok := it.(map[string]any); ok {
						docs = append(docs, im)
					}
				}
				continue
			}
			docs = append(docs, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// namespaceLabels gathers the labels of the Namespaces among docs, and
// extra for every other namespace.
func namespaceLabels(docs []map[string]any, extra map[string]string) map[string]map[string]string {
	out := map[string]map[string]string{"": extra}
	for _, d := range docs {
		if d["kind"] != "Namespace" {
			continue
		}
		u := unstructured.Unstructured{Object: d}
		out[u.GetName()] = u.GetLabels()
	}
	return out
}

// casesOf turns one input into cases: one per pod or pod template.
func casesOf(name string, docs []map[string]any, defaultNS string, nsLabels map[string]map[string]string) ([]policyCase, error) {
	var pps []*v1alpha1.PodPreset
	var cpps []*v1alpha1.ClusterPodPreset
	type podIn struct {
		ns  string
		pod *corev1.Pod
	}
	var pods []podIn
	for _, d := range docs {
		u := unstructured.Unstructured{Object: d}
		raw, err := json.Marshal(d)
		if err != nil {
			return nil, err
		}
		ns := u.GetNamespace()
		if ns == "" {
			ns = defaultNS
		}
		switch u.GetKind() {
		case v1alpha1.KindPodPreset:
			pp := &v1alpha1.PodPreset{}
			if err := json.Unmarshal(raw, pp); err != nil {
				return nil, err
			}
			pp.Namespace = ns
			pps = append(pps, pp)
		case v1alpha1.KindClusterPodPreset:
			cpp := &v1alpha1.ClusterPodPreset{}
			if err := json.Unmarshal(raw, cpp); err != nil {
				return nil, err
			}
			cpps = append(cpps, cpp)
		case "Pod":
			pod := &corev1.Pod{}
			if err := json.Unmarshal(raw, pod); err != nil {
				return nil, err
			}
			pods = append(pods, podIn{ns, pod})
		default:
			path := []string{"spec", "template"}
			if u.GetKind() == "CronJob" {
				path = []string{"spec", "jobTemplate", "spec", "template"}
			}
			tmpl, ok, _ := unstructured.NestedMap(d, path...)
			if !ok {
				continue
			}
			traw, err := json.Marshal(tmpl)
			if err != nil {
				return nil, err
			}
			var pt corev1.PodTemplateSpec
			if err := json.Unmarshal(traw, &pt); err != nil {
				return nil, err
			}
			pod := &corev1.Pod{ObjectMeta: pt.ObjectMeta, Spec: pt.Spec}
			pod.Name = strings.ToLower(u.GetKind()) + "-" + u.GetName()
			pods = append(pods, podIn{ns, pod})
		}
	}
	var out []policyCase
	for _, p := range pods {
		c := policyCase{name: name + ": " + p.pod.Name, pod: p.pod, cpps: cpps}
		c.pod.Namespace, c.pod.GenerateName = "", ""
		if c.pod.Name == "" {
			c.pod.Name = "pod"
		}
		for _, pp := range pps {
			if pp.Namespace == p.ns {
				c.pps = append(c.pps, pp)
			}
		}
		labels, ok := nsLabels[p.ns]
		if !ok {
			labels = nsLabels[""]
		}
		c.nsLabels = labels
		if len(c.pps)+len(c.cpps) > 0 {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b policyCase) int { return strings.Compare(a.name, b.name) })
	return out, nil
}
