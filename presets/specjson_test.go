package presets

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestScanSpecGivesUpOnWhatItDoesNotExpect: JSON ScanSpec cannot place an
// entry in safely gives no SpecJSON (the patch then inserts entry by
// entry), never a wrong place or a panic.
func TestScanSpecGivesUpOnWhatItDoesNotExpect(t *testing.T) {
	for name, raw := range map[string]string{
		"an escaped key":                     `{"containers":[{"name":"a","\u0065nv":[{"name":"X"}]}]}`,
		"env twice in a container":           `{"containers":[{"name":"a","env":[],"env":[{"name":"X"}]}]}`,
		"volumes twice":                      `{"containers":[{"name":"a"}],"volumes":[],"volumes":null}`,
		"containers twice":                   `{"containers":[{"name":"a"}],"containers":[{"name":"b"}]}`,
		"initContainers twice":               `{"initContainers":[{"name":"a"}],"initContainers":[],"containers":[{"name":"b"}]}`,
		"a list that is an object":           `{"containers":[{"name":"a","env":{"name":"X"}}]}`,
		"a list that is a string":            `{"containers":[{"name":"a"}],"imagePullSecrets":"x"}`,
		"an empty container":                 `{"containers":[{}]}`,
		"an empty spec":                      `{}`,
		"cut short":                          `{"containers":[{"name":"a","env":[{"name":"X"}`,
		"not an object":                      `[1,2]`,
		"a string cut short":                 `{"volumes":"abc`,
		"something after the spec":           `{"containers":[{"name":"a"}]} {}`,
		"empty":                              ``,
		"null where a list goes, misspelled": `{"containers":[{"name":"a","env":nul}]}`,
	} {
		if spec := ScanSpec([]byte(raw)); spec != nil {
			t.Errorf("%s: found %+v", name, spec)
		}
	}
}

// TestScanSpecFindsNullAndEmptyLists: a list written null or [] is found
// where it is, so that the patch replaces it rather than adding a second
// key.
func TestScanSpecFindsNullAndEmptyLists(t *testing.T) {
	raw := []byte(`{"initContainers": null, "containers":[{"name":"a","env":null,"envFrom":[ ],"volumeMounts":[{"name":"v"}]}],"volumes":[],"imagePullSecrets":null}`)
	spec := ScanSpec(raw)
	if spec == nil {
		t.Fatal("nothing found")
	}
	at := func(sp Span) string { return string(raw[sp.Start:sp.End]) }
	c := spec.Containers[0]
	for what, got := range map[string]string{
		"initContainers": at(spec.InitContainerList), "env": at(c.Env), "envFrom": at(c.EnvFrom),
		"volumeMounts": at(c.VolumeMounts), "volumes": at(spec.Volumes), "imagePullSecrets": at(spec.ImagePullSecrets),
	} {
		want := map[string]string{"initContainers": "null", "env": "null", "envFrom": "[ ]", "volumeMounts": `[{"name":"v"}]`,
			"volumes": "[]", "imagePullSecrets": "null"}[what]
		if got != want {
			t.Errorf("%s: found %q, want %q", what, got, want)
		}
	}
	if len(spec.InitContainers) != 0 || len(spec.Containers) != 1 {
		t.Errorf("found %d init containers and %d containers, want 0 and 1", len(spec.InitContainers), len(spec.Containers))
	}
}

// FuzzScanSpec: whatever the bytes, the scan ends without a panic; on JSON
// it accepts, every span is a list or null of the input and every closing
// offset is a brace, and a member written at a container's brace is, to a
// JSON decoder, that container's.
func FuzzScanSpec(f *testing.F) {
	f.Add([]byte(`{"containers":[{"name":"a","env":[{"name":"X","value":"\"]}"}],"volumeMounts":[]}],"volumes":[{"name":"v"}]}`))
	f.Add([]byte(`{"initContainers":[{"envFrom":[{"prefix":"P"}]}], "x": [true, null, -1.5e3, {"a": ["b"]}], "containers": [ {"name": "b"} ] }`))
	f.Add([]byte(` { "imagePullSecrets" : null , "containers" : [ { "name" : "c" , "env" : null } ] } `))
	f.Fuzz(func(t *testing.T, raw []byte) {
		spec := ScanSpec(raw)
		if spec == nil {
			return
		}
		list := func(sp Span) {
			if sp.End == 0 {
				return
			}
			if b := raw[sp.Start:sp.End]; string(b) != "null" && (b[0] != '[' || b[len(b)-1] != ']') {
				t.Fatalf("span %v is %q, no list", sp, b)
			}
		}
		brace := func(at int) {
			if raw[at] != '}' {
				t.Fatalf("no closing brace at %d", at)
			}
		}
		brace(spec.Close)
		list(spec.InitContainerList)
		list(spec.Volumes)
		list(spec.ImagePullSecrets)
		for _, cs := range [][]ContainerJSON{spec.InitContainers, spec.Containers} {
			for _, c := range cs {
				brace(c.Close)
				list(c.Env)
				list(c.EnvFrom)
				list(c.VolumeMounts)
			}
		}
		if !json.Valid(raw) {
			return
		}
		for i, c := range spec.Containers {
			edited := append(append(bytes.Clone(raw[:c.Close]), `,"x-probe":1`...), raw[c.Close:]...)
			var doc struct {
				Containers []map[string]any `json:"containers"`
			}
			if err := json.Unmarshal(edited, &doc); err != nil || len(doc.Containers) <= i || doc.Containers[i]["x-probe"] != 1.0 {
				t.Fatalf("a member written at container %d's brace (%d) is not its (%v): %s", i, c.Close, err, edited)
			}
		}
	})
}
