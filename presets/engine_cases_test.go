package presets

import (
	"encoding/json"
	"flag"
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

var updateEngineCases = flag.Bool("update-engine-cases", false, "rewrite testdata/engine-cases.json")

// EngineCase is one of the engine's table cases as the compiled policy's
// differential test (test/e2e) reads it.
type EngineCase struct {
	Name              string                       `json:"name"`
	NamespaceLabels   map[string]string            `json:"namespaceLabels,omitempty"`
	Pod               json.RawMessage              `json:"pod"`
	PodPresets        []*v1alpha1.PodPreset        `json:"podPresets,omitempty"`
	ClusterPodPresets []*v1alpha1.ClusterPodPreset `json:"clusterPodPresets,omitempty"`
}

// TestEngineCasesFile: testdata/engine-cases.json holds the engine's table
// cases (TestApply's) in the default namespace, for the e2e differential
// test of compiled policies; it must be current (make golden rewrites it).
func TestEngineCasesFile(t *testing.T) {
	cases := applyCases()
	var out []EngineCase
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range cases {
			if !yield(k) {
				return
			}
		}
	}) {
		tc := cases[name]
		ns := defaultNS
		if tc.ns != nil {
			ns = *tc.ns
		}
		if ns.Name != "default" {
			continue // the e2e test's namespaces have names of their own
		}
		pod, err := json.Marshal(tc.pod)
		if err != nil {
			t.Fatal(err)
		}
		c := EngineCase{Name: name, NamespaceLabels: ns.Labels, Pod: pod}
		for _, p := range tc.presets {
			switch p := p.(type) {
			case *v1alpha1.PodPreset:
				c.PodPresets = append(c.PodPresets, p)
			case *v1alpha1.ClusterPodPreset:
				c.ClusterPodPresets = append(c.ClusterPodPresets, p)
			}
		}
		out = append(out, c)
	}
	got, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	const file = "testdata/engine-cases.json"
	if *updateEngineCases {
		if err := os.WriteFile(file, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)+"\n"); diff != "" {
		t.Errorf("%s is not the engine's cases (make golden):\n%s", file, diff)
	}
}
