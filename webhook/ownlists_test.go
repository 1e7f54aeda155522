package webhook

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// TestScanOwnListsFindsEachList: the scan finds every container's env,
// envFrom and volumeMounts and the volumes, in compact and in indented
// JSON, each exactly the JSON of that list.
func TestScanOwnListsFindsEachList(t *testing.T) {
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
			own := scanOwnLists(raw)
			if own == nil {
				t.Fatal("no lists found")
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
			if len(own.containers) != len(want.Containers) || len(own.initContainers) != len(want.InitContainers) {
				t.Fatalf("found %d containers and %d init containers, want %d and %d", len(own.containers), len(own.initContainers), len(want.Containers), len(want.InitContainers))
			}
			for i, c := range want.Containers {
				check(c.Name+" env", own.containers[i][0], c.Env)
				check(c.Name+" envFrom", own.containers[i][1], c.EnvFrom)
				check(c.Name+" volumeMounts", own.containers[i][2], c.VolumeMounts)
			}
			check("volumes", own.volumes, want.Volumes)
		})
	}
}

// TestScanOwnListsGivesUpOnWhatItDoesNotExpect: a key written with an
// escape, or JSON cut short, gives no lists (the patch then inserts entry
// by entry), never a wrong list or a panic.
func TestScanOwnListsGivesUpOnWhatItDoesNotExpect(t *testing.T) {
	for name, raw := range map[string]string{
		"an escaped key":     `{"containers":[{"name":"a","\u0065nv":[{"name":"X"}]}]}`,
		"cut short":          `{"containers":[{"name":"a","env":[{"name":"X"}`,
		"not an object":      `[1,2]`,
		"a string cut short": `{"volumes":"abc`,
		"empty":              ``,
	} {
		if own := scanOwnLists([]byte(raw)); own != nil {
			t.Errorf("%s: found %+v", name, own)
		}
	}
}

// FuzzScanOwnLists: whatever the bytes, the scan ends without a panic, and
// every list it returns is a slice of its input.
func FuzzScanOwnLists(f *testing.F) {
	f.Add([]byte(`{"containers":[{"name":"a","env":[{"name":"X","value":"\"]}"}],"volumeMounts":[]}],"volumes":[{"name":"v"}]}`))
	f.Add([]byte(`{"initContainers":[{"envFrom":[{"prefix":"P"}]}], "x": [true, null, -1.5e3, {"a": ["b"]}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		own := scanOwnLists(raw)
		if own == nil {
			return
		}
		for _, cs := range [][][3][]byte{own.initContainers, own.containers} {
			for _, lists := range cs {
				for _, l := range lists {
					if l != nil && !bytes.Contains(raw, l) {
						t.Fatalf("%q is not in the input", l)
					}
				}
			}
		}
	})
}
