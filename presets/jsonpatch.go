package presets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
)

// MergePatch is Merge for an admission webhook: it merges the presets
// Select chose and returns, instead of the merged pod, the JSON patch (RFC
// 6902) that turns the pod into it; nil when nothing changes. Result.Pod is
// nil.
//
// With spec nil, the patch is the one presets/patch computes from the pod
// and Apply's result, byte for byte (a test holds it to that): it only
// inserts, one add per injected entry, so entries the pod already has are
// never rewritten and fields of theirs that our Go types do not know
// survive. With spec (the pod's spec as the API server sent it, ScanSpec),
// the patch is the annotations' operations and one replace of /spec whose
// value is spec.Raw byte for byte with the injected entries written into
// its lists: every field, known to our types or not, is the API server's
// own JSON, and an API server applies that patch in about two thirds of
// the time it takes for one operation per list (README, Performance).
//
// The patch is written straight from the merge, without building the
// merged pod, and each injected entry is encoded once per preset (on first
// use) rather than once per pod. Unless WholeContainers says otherwise, the
// pod's containers need only their name, env, envFrom and volumeMounts: a
// caller decoding the pod may leave every other field of a container out.
func MergePatch(pod *corev1.Pod, ns Namespace, presets []*Preset, spec *SpecJSON) (Result, []byte, error) {
	return AppendMergePatch(nil, pod, ns, presets, spec)
}

// AppendMergePatch is MergePatch writing the patch into dst's array when it
// is large enough (a caller's reused buffer), from its start.
func AppendMergePatch(dst []byte, pod *corev1.Pod, ns Namespace, presets []*Preset, spec *SpecJSON) (Result, []byte, error) {
	m, res := merge(pod, ns, presets, false)
	res.Pod = nil
	if m == nil {
		return res, nil, nil
	}
	defer m.release()
	if !res.Changed {
		return res, nil, nil
	}
	out, err := m.writePatch(dst, pod, spec)
	return res, out, err
}

// WholeContainers says whether merging these presets reads more of the
// pod's containers than their name, env, envFrom and volumeMounts: it does
// when a preset injects init containers, which are compared whole with a
// container of the same name.
func WholeContainers(presets []*Preset) bool {
	return slices.ContainsFunc(presets, func(p *Preset) bool { return len(p.inits) > 0 })
}

// encoded is a preset's injected entries as JSON, index for index.
type encoded struct {
	env, envFrom, volumes, mounts [][]byte
}

// encodedCache holds a preset's encoded entries once a pod needed them.
type encodedCache struct{ p atomic.Pointer[encoded] }

// entries returns the preset's encoded entries, encoding them on first use.
// Two requests may both encode them; either result is the same.
func (p *Preset) entries() (*encoded, error) {
	if e := p.encoded.p.Load(); e != nil {
		return e, nil
	}
	e := &encoded{}
	var err error
	if e.env, err = encodeEach(p.env); err != nil {
		return nil, err
	}
	if e.envFrom, err = encodeEach(p.envFrom); err != nil {
		return nil, err
	}
	if e.volumes, err = encodeEach(p.volumes); err != nil {
		return nil, err
	}
	if e.mounts, err = encodeEach(p.mounts); err != nil {
		return nil, err
	}
	p.encoded.p.Store(e)
	return e, nil
}

func encodeEach[T any](list []T) ([][]byte, error) {
	out := make([][]byte, len(list))
	for i := range list {
		b, err := json.Marshal(&list[i])
		if err != nil {
			return nil, fmt.Errorf("encoding %T: %w", list[i], err)
		}
		out[i] = b
	}
	return out, nil
}

// patchWriter writes JSON patch operations into one buffer.
type patchWriter struct {
	buf []byte
	n   int // operations written
	err error
}

// op starts an add operation and writes its path from parts (a string
// or an int, a list index), leaving the writer where the value goes; end
// closes it.
func (w *patchWriter) op(parts ...any) { w.start("add", parts...) }

// start starts an operation: op with its verb.
func (w *patchWriter) start(verb string, parts ...any) {
	if w.n == 0 {
		w.buf = append(w.buf, '[')
	} else {
		w.buf = append(w.buf, ',')
	}
	w.n++
	w.buf = append(append(append(w.buf, `{"op":"`...), verb...), `","path":"`...)
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			w.buf = appendStringBody(w.buf, p)
		case int:
			w.buf = strconv.AppendInt(w.buf, int64(p), 10)
		}
	}
	w.buf = append(w.buf, `","value":`...)
}

func (w *patchWriter) end() { w.buf = append(w.buf, '}') }

// replace is op for a replace operation.
func (w *patchWriter) replace(parts ...any) { w.start("replace", parts...) }

// value writes a value encoding/json encodes, for the rare entries that
// have no encoded form (injected init containers, pull secrets).
func (w *patchWriter) value(v any) {
	b, err := json.Marshal(v)
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("encoding %T: %w", v, err)
	}
	w.buf = append(w.buf, b...)
}

// str writes a JSON string as encoding/json writes it.
func (w *patchWriter) str(s string) {
	w.buf = append(w.buf, '"')
	w.buf = appendStringBody(w.buf, s)
	w.buf = append(w.buf, '"')
}

// appendStringBody appends s escaped as encoding/json escapes a string
// (HTML characters too), without the quotes. Strings that need no escape,
// the usual case, are copied as they are.
func appendStringBody(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always encodes
			return append(dst, b[1:len(b)-1]...)
		}
	}
	return append(dst, s...)
}

// writeEntries writes added entries where an insert-only patch puts them,
// at path (its parts, as op takes them): when the list is empty, one add
// of the whole list; else one add per entry, at index 0, 1, … in front of
// the pod's own (prepend) or at the end (-).
func writeEntries[T any](w *patchWriter, path [3]any, own int, added []pending[T], js func(pending[T]) []byte, prepend bool) {
	if len(added) == 0 {
		return
	}
	if own == 0 {
		w.op(path[0], path[1], path[2])
		w.buf = append(w.buf, '[')
		writeList(w, added, js)
		w.buf = append(w.buf, ']')
		w.end()
		return
	}
	for i, a := range added {
		if prepend {
			w.op(path[0], path[1], path[2], "/", i)
		} else {
			w.op(path[0], path[1], path[2], "/-")
		}
		w.buf = append(w.buf, js(a)...)
		w.end()
	}
}

// writeList writes added entries' JSON, comma-separated.
func writeList[T any](w *patchWriter, added []pending[T], js func(pending[T]) []byte) {
	for i, a := range added {
		if i > 0 {
			w.buf = append(w.buf, ',')
		}
		w.buf = append(w.buf, js(a)...)
	}
}

// writePatch writes the patch that turns pod into the merged pod, in the
// order presets/patch.Pod writes it: annotations; each of the pod's own
// init containers and containers at its own index (env, envFrom, mounts);
// the injected init containers; volumes; pull secrets. With spec, all but
// the annotations are one replace of /spec (writeSpec), unless spec does
// not have the pod's containers.
func (m *merger) writePatch(dst []byte, pod *corev1.Pod, spec *SpecJSON) ([]byte, error) {
	for _, p := range m.presets {
		if _, err := p.entries(); err != nil {
			return nil, err
		}
	}
	if spec != nil && (len(spec.Containers) != len(pod.Spec.Containers) || len(spec.InitContainers) != len(pod.Spec.InitContainers)) {
		spec = nil
	}
	w := &patchWriter{buf: dst[:0]}
	size := m.patchSize()
	if spec != nil {
		size += len(spec.Raw)
	}
	if cap(dst) < size {
		w.buf = make([]byte, 0, size)
	}
	m.writeAnnotations(w, pod.Annotations)
	var inits []corev1.Container
	if len(m.inits) > 0 {
		// Injected init containers are written whole, with what the
		// presets added to them, as finish makes them.
		inits = make([]corev1.Container, 0, len(m.inits))
		for k := range m.targets {
			if t := &m.targets[k]; t.index < 0 {
				c := *t.c
				t.fill(&c, &lists{}, nil)
				inits = append(inits, c)
			}
		}
	}
	if spec != nil {
		m.writeSpec(w, spec, inits)
	} else {
		m.writeInserts(w, pod, inits)
	}
	if w.err != nil {
		return nil, w.err
	}
	if w.n == 0 {
		return nil, nil
	}
	return append(w.buf, ']'), nil
}

// writeInserts writes the insert-only patch's operations for the spec.
func (m *merger) writeInserts(w *patchWriter, pod *corev1.Pod, inits []corev1.Container) {
	for _, initCtrs := range []bool{true, false} {
		base := "/spec/containers/"
		if initCtrs {
			base = "/spec/initContainers/"
		}
		for k := range m.targets {
			t := &m.targets[k]
			if t.index < 0 || t.isInitCtr != initCtrs {
				continue
			}
			writeEntries(w, [3]any{base, t.index, "/env"}, len(t.c.Env), t.env, envJSON, true)
			writeEntries(w, [3]any{base, t.index, "/envFrom"}, len(t.c.EnvFrom), t.envFrom, envFromJSON, true)
			writeEntries(w, [3]any{base, t.index, "/volumeMounts"}, len(t.c.VolumeMounts), t.mounts, mountJSON, false)
		}
	}
	if len(inits) > 0 {
		if len(pod.Spec.InitContainers) == 0 {
			w.op("/spec/initContainers")
			w.value(inits)
			w.end()
		} else {
			for i := range inits {
				w.op("/spec/initContainers/", i)
				w.value(&inits[i])
				w.end()
			}
		}
	}
	writeEntries(w, [3]any{"/spec/volumes", "", ""}, len(pod.Spec.Volumes), m.volumes, volumeJSON, false)
	if len(m.pulls) > 0 {
		if len(pod.Spec.ImagePullSecrets) == 0 {
			w.op("/spec/imagePullSecrets")
			w.value(m.pulls)
			w.end()
		} else {
			for i := range m.pulls {
				w.op("/spec/imagePullSecrets/-")
				w.value(&m.pulls[i])
				w.end()
			}
		}
	}
}

// specEdit is one change writeSpec makes to the spec's JSON: Raw[at:end]
// (an insertion where end == at) gets the added entries of one list.
type specEdit struct {
	at, end int
	how     editHow
	list    listKind
	key     string  // the list's key, for a member inserted
	t       *target // the container, for its lists
}

type editHow uint8

const (
	editMember editHow = iota // insert `,"key":[entries]` before the object's brace
	editWhole                 // replace an empty list or null with [entries]
	editFront                 // insert `entries,` after the list's [
	editBack                  // insert `,entries` before the list's ]
)

type listKind uint8

const (
	listEnv listKind = iota
	listEnvFrom
	listMounts
	listVolumes
	listInits
	listPulls
)

// edit plans the edit that adds entries to the list at sp (End 0: the
// object closing at closing has no such key), in front of the list's own
// entries or behind them.
func edit(raw []byte, sp Span, closing int, key string, list listKind, t *target, prepend bool) specEdit {
	e := specEdit{list: list, key: key, t: t}
	switch {
	case sp.End == 0:
		e.at, e.end, e.how = closing, closing, editMember
	case raw[sp.Start] != '[' || len(bytes.TrimSpace(raw[sp.Start+1:sp.End-1])) == 0:
		e.at, e.end, e.how = sp.Start, sp.End, editWhole
	case prepend:
		e.at, e.end, e.how = sp.Start+1, sp.Start+1, editFront
	default:
		e.at, e.end, e.how = sp.End-1, sp.End-1, editBack
	}
	return e
}

// writeSpec writes one replace of /spec: spec.Raw as it is, but for the
// entries the merge adds to its lists, in the places and the order the
// insert-only patch gives them. Nothing when nothing is added.
func (m *merger) writeSpec(w *patchWriter, spec *SpecJSON, inits []corev1.Container) {
	var room [16]specEdit
	edits := room[:0]
	for k := range m.targets {
		t := &m.targets[k]
		if t.index < 0 {
			continue
		}
		c := &spec.Containers[t.index]
		if t.isInitCtr {
			c = &spec.InitContainers[t.index]
		}
		if len(t.env) > 0 {
			edits = append(edits, edit(spec.Raw, c.Env, c.Close, "env", listEnv, t, true))
		}
		if len(t.envFrom) > 0 {
			edits = append(edits, edit(spec.Raw, c.EnvFrom, c.Close, "envFrom", listEnvFrom, t, true))
		}
		if len(t.mounts) > 0 {
			edits = append(edits, edit(spec.Raw, c.VolumeMounts, c.Close, "volumeMounts", listMounts, t, false))
		}
	}
	if len(inits) > 0 {
		edits = append(edits, edit(spec.Raw, spec.InitContainerList, spec.Close, "initContainers", listInits, nil, true))
	}
	if len(m.volumes) > 0 {
		edits = append(edits, edit(spec.Raw, spec.Volumes, spec.Close, "volumes", listVolumes, nil, false))
	}
	if len(m.pulls) > 0 {
		edits = append(edits, edit(spec.Raw, spec.ImagePullSecrets, spec.Close, "imagePullSecrets", listPulls, nil, false))
	}
	if len(edits) == 0 {
		return
	}
	slices.SortStableFunc(edits, func(a, b specEdit) int { return a.at - b.at })
	w.replace("/spec")
	pos := 0
	for i := range edits {
		e := &edits[i]
		w.buf = append(w.buf, spec.Raw[pos:e.at]...)
		switch e.how {
		case editMember:
			w.buf = append(append(append(w.buf, `,"`...), e.key...), `":[`...)
		case editWhole:
			w.buf = append(w.buf, '[')
		case editBack:
			w.buf = append(w.buf, ',')
		}
		m.writeAdded(w, e, inits)
		switch e.how {
		case editMember, editWhole:
			w.buf = append(w.buf, ']')
		case editFront:
			w.buf = append(w.buf, ',')
		}
		pos = e.end
	}
	w.buf = append(w.buf, spec.Raw[pos:]...)
	w.end()
}

// writeAdded writes the entries an edit adds, comma-separated.
func (m *merger) writeAdded(w *patchWriter, e *specEdit, inits []corev1.Container) {
	switch e.list {
	case listEnv:
		writeList(w, e.t.env, envJSON)
	case listEnvFrom:
		writeList(w, e.t.envFrom, envFromJSON)
	case listMounts:
		writeList(w, e.t.mounts, mountJSON)
	case listVolumes:
		writeList(w, m.volumes, volumeJSON)
	case listInits:
		for i := range inits {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.value(&inits[i])
		}
	case listPulls:
		for i := range m.pulls {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.value(&m.pulls[i])
		}
	}
}

// The encoded form of a pending entry; writePatch encoded its presets'
// entries first.
func envJSON(a pending[corev1.EnvVar]) []byte            { return a.by.encoded.p.Load().env[a.i] }
func envFromJSON(a pending[corev1.EnvFromSource]) []byte { return a.by.encoded.p.Load().envFrom[a.i] }
func mountJSON(a pending[corev1.VolumeMount]) []byte     { return a.by.encoded.p.Load().mounts[a.i] }
func volumeJSON(a pending[corev1.Volume]) []byte         { return a.by.encoded.p.Load().volumes[a.i] }

// writeAnnotations writes the annotations the merge adds or changes: the
// whole map when the pod has none, else one add per key, in key order.
func (m *merger) writeAnnotations(w *patchWriter, own map[string]string) {
	type kv struct{ k, v string }
	var buf [8]kv
	added := buf[:0]
	for _, a := range m.annots {
		added = append(added, kv{a.key, a.value})
	}
	if m.applied != "" {
		added = append(added, kv{AnnotationApplied, m.applied})
	}
	if m.srcHash != "" {
		added = append(added, kv{AnnotationSourcesHash, m.srcHash})
	}
	if len(added) == 0 {
		return
	}
	if len(own) == 0 {
		slices.SortFunc(added, func(a, b kv) int { return strings.Compare(a.k, b.k) })
		w.op("/metadata/annotations")
		w.buf = append(w.buf, '{')
		for i, a := range added {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.str(a.k)
			w.buf = append(w.buf, ':')
			w.str(a.v)
		}
		w.buf = append(w.buf, '}')
		w.end()
		return
	}
	slices.SortFunc(added, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	for _, a := range added {
		// "add" replaces a member that exists (podpreset.dev/applied on a
		// re-application).
		w.op("/metadata/annotations/", pointerEscaper.Replace(a.k))
		w.str(a.v)
		w.end()
	}
}

// pointerEscaper encodes a map key as a JSON pointer token (RFC 6901).
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// patchSize estimates the patch's length, so that its buffer is allocated
// once.
func (m *merger) patchSize() int {
	const perOp = 64 // {"op":"add","path":"/spec/initContainers/0/volumeMounts/-","value":}
	n := 256 + len(m.applied) + len(m.srcHash)
	for _, a := range m.annots {
		n += perOp + len(a.key) + len(a.value)
	}
	for k := range m.targets {
		t := &m.targets[k]
		for _, a := range t.env {
			n += perOp + len(envJSON(a))
		}
		for _, a := range t.envFrom {
			n += perOp + len(envFromJSON(a))
		}
		for _, a := range t.mounts {
			n += perOp + len(mountJSON(a))
		}
	}
	for _, a := range m.volumes {
		n += perOp + len(volumeJSON(a))
	}
	return n
}
