package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/podpreset/podpreset/presets"
)

// TestScanSpecFindsEachListOfAnAPIServersPod: in the spec an API server
// sends (testdata/pod-create.json), compact and indented, presets.ScanSpec
// finds every container's env, envFrom and volumeMounts and the volumes,
// each exactly the JSON of that list, and each object's closing brace.
func TestScanSpecFindsEachListOfAnAPIServersPod(t *testing.T) {
	var review struct {
		Request struct {
			Object struct {
				Spec json.RawMessage `json:"spec"`
			} `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(fixture(t, "pod-create.json"), &review); err != nil {
		t.Fatal(err)
	}
	spec := review.Request.Object.Spec
	var indented bytes.Buffer
	if err := json.Indent(&indented, spec, "", "  "); err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, spec); err != nil {
		t.Fatal(err)
	}
	var want corev1.PodSpec
	if err := json.Unmarshal(spec, &want); err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string][]byte{"indented": indented.Bytes(), "compact": compact.Bytes()} {
		t.Run(name, func(t *testing.T) {
			spec := presets.ScanSpec(raw)
			if spec == nil {
				t.Fatal("no lists found")
			}
			at := func(sp presets.Span) []byte {
				if sp.End == 0 {
					return nil
				}
				return raw[sp.Start:sp.End]
			}
			if raw[spec.Close] != '}' || !bytes.Equal(bytes.TrimSpace(raw[spec.Close:]), []byte("}")) {
				t.Errorf("the spec's closing brace is not at %d", spec.Close)
			}
			// A list found is the JSON of the list the decoder read; a
			// list not found is one the pod does not have.
			check := func(what string, list []byte, want any) {
				t.Helper()
				w, err := json.Marshal(want)
				if err != nil {
					t.Fatal(err)
				}
				if list == nil {
					if string(w) != "null" {
						t.Errorf("%s: not found", what)
					}
					return
				}
				var wv, gv any
				if err := json.Unmarshal(list, &gv); err != nil {
					t.Fatalf("%s: %q is no JSON: %v", what, list, err)
				}
				if err := json.Unmarshal(w, &wv); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(wv, gv); diff != "" {
					t.Errorf("%s (-want +found):\n%s", what, diff)
				}
			}
			if len(spec.Containers) != len(want.Containers) || len(spec.InitContainers) != len(want.InitContainers) {
				t.Fatalf("found %d containers and %d init containers, want %d and %d", len(spec.Containers), len(spec.InitContainers), len(want.Containers), len(want.InitContainers))
			}
			for i, c := range want.Containers {
				got := spec.Containers[i]
				check(c.Name+" env", at(got.Env), c.Env)
				check(c.Name+" envFrom", at(got.EnvFrom), c.EnvFrom)
				check(c.Name+" volumeMounts", at(got.VolumeMounts), c.VolumeMounts)
				// A member written at the container's closing brace
				// is that container's.
				probe := fmt.Sprintf("probe-%d", i)
				edited := slices.Concat(raw[:got.Close], []byte(`,"terminationMessagePath":"`+probe+`"`), raw[got.Close:])
				var after corev1.PodSpec
				if err := json.Unmarshal(edited, &after); err != nil || after.Containers[i].TerminationMessagePath != probe {
					t.Errorf("%s: a member written at %d is not the container's (%v)", c.Name, got.Close, err)
				}
			}
			check("volumes", at(spec.Volumes), want.Volumes)
			check("imagePullSecrets", at(spec.ImagePullSecrets), want.ImagePullSecrets)
		})
	}
}
