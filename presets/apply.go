package presets

import (
	"hash/maphash"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// Result is what Apply did to a pod.
type Result struct {
	// Pod is the pod after the presets were applied: a new object when
	// Changed is true, else the input pod itself. The input is never
	// modified, but the new object shares every part that did not change
	// with it (copy on write), and the pointers inside the entries it
	// injected (a valueFrom, a volume source) with the compiled presets,
	// and containers whose env, envFrom or volumeMounts come out the same
	// share one list: treat it as read-only, or DeepCopy first. Nil from
	// Patch.
	Pod *corev1.Pod
	// Changed says whether anything was added to the pod.
	Changed bool
	// Applied lists the presets that matched, in application order.
	Applied []Ref
	// Conflicts lists every value a preset could not inject.
	Conflicts []Conflict
	// Refused lists the presets that match the pod but were not applied:
	// invalid, or against the tenancy or the preset policy (Load).
	Refused []Refusal
	// Omitted lists the entries left out because the object they refer to
	// is not their preset's.
	Omitted []Omission
	// Skipped says why the pod was left alone; empty when it was not.
	Skipped SkipReason
}

// Omission is an entry a preset did not inject because the ConfigMap or
// Secret it refers to, under the name podpreset gives its materialised
// values, exists without being the preset's (its status says so): a pod
// must never read an object someone else planted under that name.
type Omission struct {
	// Preset is the preset whose entry was left out.
	Preset Ref
	// Field is where the entry would have gone.
	Field string
	// Object is the object it refers to, as Kind namespace/name.
	Object string
}

// String renders the omission for a warning or a terminal.
func (o Omission) String() string {
	return o.Preset.String() + ": " + o.Field + ": left out: " + o.Object + " exists but is not this preset's"
}

// Apply matches a pod against a set of presets and merges the matching ones
// into a copy of it. ns is the pod's namespace: the one the pod is created in.
func Apply(pod *corev1.Pod, ns Namespace, set *Set) Result {
	matched, skipped := Select(pod, ns, set)
	if skipped != "" {
		return Result{Pod: pod, Skipped: skipped}
	}
	return Merge(pod, ns, matched)
}

// Select is Apply's first half: why the pod is left alone, or the presets
// that match it, in application order. It reads only the pod's metadata.
func Select(pod *corev1.Pod, ns Namespace, set *Set) ([]*Preset, SkipReason) {
	if r := Skip(pod); r != "" {
		return nil, r
	}
	if r := SkipNamespace(ns); r != "" {
		return nil, r
	}
	return set.Match(ns, pod.Labels), ""
}

// Merge merges presets into a copy of a pod in namespace ns, in the order
// given, without matching; refused presets are reported, not merged. Apply
// calls it with the presets that match.
func Merge(pod *corev1.Pod, ns Namespace, presets []*Preset) Result {
	m, res := merge(pod, ns, presets, true)
	if m == nil {
		return res
	}
	if res.Changed {
		res.Pod = m.finish()
	}
	m.release()
	return res
}

// merge decides what the presets add to the pod: Result.Pod is the input,
// and the merger holds the additions, for finish (the merged pod, when
// working is true) or writePatch (the JSON patch). The merger is nil when
// no preset applies.
func merge(pod *corev1.Pod, ns Namespace, presets []*Preset, working bool) (*merger, Result) {
	var refused []Refusal
	if slices.ContainsFunc(presets, func(p *Preset) bool { return p.refusal != nil }) {
		ok := make([]*Preset, 0, len(presets))
		for _, p := range presets {
			if p.refusal != nil {
				refused = append(refused, *p.refusal)
			} else {
				ok = append(ok, p)
			}
		}
		presets = ok
	}
	if len(presets) == 0 {
		return nil, Result{Pod: pod, Refused: refused}
	}
	m := newMerger(pod, ns.Name, presets, working)
	res := Result{Pod: pod, Applied: make([]Ref, 0, len(presets)), Refused: refused}
	// Every preset's init containers first, so that each is a target of
	// every preset's env, envFrom and mounts, as on a second application.
	for _, p := range presets {
		for i := range p.inits {
			m.addInit(p, &p.inits[i])
		}
	}
	for _, p := range presets {
		m.apply(p)
		res.Applied = append(res.Applied, p.ref)
	}
	m.recordApplied(res.Applied)
	m.recordSourcesHash(presets)
	res.Conflicts, res.Omitted, res.Changed = m.conflicts, m.omitted, m.changed
	return m, res
}

// pending is an entry a preset adds: a pointer into the compiled preset
// (immutable, so nothing is copied until finish builds the final slices at
// their exact size), the preset that added it and the entry's index in it
// (for its encoded form, writePatch).
type pending[T any] struct {
	v  *T
	by *Preset
	i  int
}

func pendingIndex[T any](list []pending[T], same func(*T) bool) int {
	for i := range list {
		if same(list[i].v) {
			return i
		}
	}
	return -1
}

// target is a container that receives env, envFrom and mounts, with what
// the presets add to it so far.
type target struct {
	c   *corev1.Container
	env []pending[corev1.EnvVar]
	// ownEnv and addedEnv hold the names of c's own variables and of those
	// added so far, for addEnv to look them up only when they may be there.
	ownEnv, addedEnv nameFilter
	ownEnvKnown      bool
	envFrom          []pending[corev1.EnvFromSource]
	mounts           []pending[corev1.VolumeMount]
	// index is the container's index in the pod's own init containers or
	// containers; -1 for an injected init container.
	index     int
	isInitCtr bool
	// shares is which earlier targets' final lists finish gives this one.
	shares sharing
}

// path renders where the container is for a field path:
// spec.containers[name=web]. Only conflicts and omissions need it.
func (t *target) path() string {
	if t.isInitCtr {
		return "spec.initContainers[name=" + t.c.Name + "]"
	}
	return "spec.containers[name=" + t.c.Name + "]"
}

type merger struct {
	presets   []*Preset   // the presets merged, in order
	pod       *corev1.Pod // the working copy, or the input for writePatch
	ns        string
	targets   []target
	inits     []*corev1.Container // injected init containers, in order
	initsBy   []*Preset
	volumes   []pending[corev1.Volume]
	pulls     []corev1.LocalObjectReference
	annots    []annotation // added annotations
	annotsBy  []*Preset
	applied   string                                      // the new podpreset.dev/applied value, if it changes
	srcHash   string                                      // podpreset.dev/sources-hash, if added
	sizes     struct{ env, envFrom, mounts, volumes int } // the most a target (the pod) can receive
	conflicts []Conflict
	omitted   []Omission
	changed   bool
	// slabs back the targets' pending lists.
	slabs struct {
		env     slab[pending[corev1.EnvVar]]
		envFrom slab[pending[corev1.EnvFromSource]]
		mounts  slab[pending[corev1.VolumeMount]]
	}
}

// Mergers are pooled: a merge's scratch (its targets, the pending entries,
// the slabs behind them) is most of what a merge allocates besides the
// merged pod, and reusing it spares the collector that much per pod.
// Nothing a merge returns points into its merger (finish and writePatch
// copy out), and release clears every pointer into the pod and the presets,
// so a pooled merger keeps no old Set alive.
var mergers = sync.Pool{New: func() any { return new(merger) }}

// maxPooledEntries bounds what a pooled merger keeps: the scratch of an
// unusually large pod goes to the collector instead.
const maxPooledEntries = 4096

// release hands the merger back to the pool; m must not be used after.
func (m *merger) release() {
	clear(m.targets)
	clear(m.inits)
	clear(m.initsBy)
	clear(m.volumes)
	clear(m.annots)
	clear(m.annotsBy)
	if cap(m.targets) > maxPooledEntries || cap(m.volumes) > maxPooledEntries || cap(m.pulls) > maxPooledEntries ||
		!m.slabs.env.reset() || !m.slabs.envFrom.reset() || !m.slabs.mounts.reset() {
		return
	}
	*m = merger{
		targets: m.targets[:0], inits: m.inits[:0], initsBy: m.initsBy[:0], volumes: m.volumes[:0],
		pulls: m.pulls[:0], annots: m.annots[:0], annotsBy: m.annotsBy[:0], slabs: m.slabs,
	}
	mergers.Put(m)
}

// newMerger starts from a shallow copy of the pod with its own container
// slices (working), for finish to write into, or from the pod itself,
// which writePatch only reads. Nothing reachable from the input is ever
// written: finish gives every list and map it changes a new backing array.
func newMerger(pod *corev1.Pod, ns string, presets []*Preset, working bool) *merger {
	m := mergers.Get().(*merger)
	m.presets, m.ns, m.pod = presets, ns, pod
	if working {
		m.pod = new(corev1.Pod)
		*m.pod = *pod
		m.pod.Spec.InitContainers = slices.Clone(pod.Spec.InitContainers)
		m.pod.Spec.Containers = slices.Clone(pod.Spec.Containers)
	}
	nInits := 0
	for _, p := range presets {
		m.sizes.env += len(p.env)
		m.sizes.envFrom += len(p.envFrom)
		m.sizes.mounts += len(p.mounts)
		m.sizes.volumes += len(p.volumes)
		nInits += len(p.inits)
	}
	m.targets = slices.Grow(m.targets[:0], len(m.pod.Spec.InitContainers)+len(m.pod.Spec.Containers)+nInits)
	for i := range m.pod.Spec.InitContainers {
		m.targets = append(m.targets, target{c: &m.pod.Spec.InitContainers[i], index: i, isInitCtr: true})
	}
	for i := range m.pod.Spec.Containers {
		m.targets = append(m.targets, target{c: &m.pod.Spec.Containers[i], index: i})
	}
	return m
}

// slab hands out per-target lists of pending entries from one array: each
// target can receive at most size entries of a kind.
type slab[T any] struct {
	buf  []T
	next int
}

// take returns an empty list of capacity size; targets is how many lists
// the merge may take in all.
func (s *slab[T]) take(size, targets int) []T {
	if s.next == 0 {
		if need := size * targets; cap(s.buf) < need {
			s.buf = make([]T, need)
		} else {
			s.buf = s.buf[:need]
		}
	}
	l := s.buf[s.next : s.next : s.next+size]
	s.next += size
	return l
}

// reset clears what the merge took, for the next; false when the array is
// too large to keep.
func (s *slab[T]) reset() bool {
	clear(s.buf[:s.next])
	s.next = 0
	return cap(s.buf) <= maxPooledEntries
}

// conflict records a dropped value. The field path is built here, from the
// target's path (none for pod-level fields) and the entry's key, so that the
// common path (no conflict) builds no strings.
func (m *merger) conflict(p *Preset, kind FieldKind, t *target, field string, kept any, keptFrom *Preset, dropped any) {
	from := KeptFromPod
	if keptFrom != nil {
		from = keptFrom.ref.String()
	}
	c := Conflict{Preset: p.ref, Kind: kind, Field: field, Kept: render(kept), KeptFrom: from, Dropped: render(dropped)}
	if t != nil {
		c.Container = t.c.Name
		c.Field = t.path() + "." + field
	}
	m.conflicts = append(m.conflicts, c)
}

// omit records an entry left out because its object is someone else's.
func (m *merger) omit(p *Preset, t *target, field string, o objRef) {
	if t != nil {
		field = t.path() + "." + field
	}
	m.omitted = append(m.omitted, Omission{Preset: p.ref, Field: field, Object: o.kind + " " + m.ns + "/" + o.name})
}

// apply merges one preset, but for its init containers, which Merge injects
// before any preset is applied.
func (m *merger) apply(p *Preset) {
	var omittedVolumes map[string]objRef // by volume name: their mounts go too
	for i := range p.volumes {
		if p.foreign != nil && p.isForeign(m.ns, p.volumeObjs[i]) {
			m.omit(p, nil, "spec.volumes[name="+p.volumes[i].Name+"]", p.volumeObjs[i])
			if omittedVolumes == nil {
				omittedVolumes = map[string]objRef{}
			}
			omittedVolumes[p.volumes[i].Name] = p.volumeObjs[i]
			continue
		}
		m.addVolume(p, i)
	}
	for _, s := range p.pullSecrets {
		m.addPullSecret(s)
	}
	for _, a := range p.annotations {
		m.addAnnotation(p, a)
	}
	for k := range m.targets {
		t := &m.targets[k]
		if !p.targets(t.c.Name) {
			continue
		}
		for i := range p.env {
			if p.foreign != nil && p.isForeign(m.ns, p.envObjs[i]) {
				m.omit(p, t, "env[name="+p.env[i].Name+"]", p.envObjs[i])
				continue
			}
			m.addEnv(p, t, i)
		}
		for i := range p.envFrom {
			if p.foreign != nil && p.isForeign(m.ns, p.envFromObjs[i]) {
				m.omit(p, t, "envFrom["+envFromKey(&p.envFrom[i])+"]", p.envFromObjs[i])
				continue
			}
			m.addEnvFrom(p, t, i)
		}
		for i := range p.mounts {
			if o, ok := omittedVolumes[p.mounts[i].Name]; ok {
				m.omit(p, t, "volumeMounts[mountPath="+p.mounts[i].MountPath+"]", o)
				continue
			}
			m.addMount(p, t, i)
		}
	}
}

func (m *merger) addEnv(p *Preset, t *target, idx int) {
	e, key := &p.env[idx], p.envKeys[idx]
	if !t.ownEnvKnown {
		for i := range t.c.Env {
			t.ownEnv.add(keyOf(t.c.Env[i].Name))
		}
		t.ownEnvKnown = true
	}
	if t.ownEnv.mayHave(key) {
		if i := envIndex(t.c.Env, e.Name); i >= 0 {
			if !sameEnv(&t.c.Env[i], e) {
				m.conflict(p, FieldEnv, t, "env[name="+e.Name+"]", &t.c.Env[i], nil, e)
			}
			return
		}
	}
	if t.addedEnv.mayHave(key) {
		if i := pendingEnvIndex(t.env, e.Name); i >= 0 {
			if !sameEnv(t.env[i].v, e) {
				m.conflict(p, FieldEnv, t, "env[name="+e.Name+"]", t.env[i].v, t.env[i].by, e)
			}
			return
		}
	}
	if t.env == nil {
		t.env = m.slabs.env.take(m.sizes.env, len(m.targets))
	}
	t.env = append(t.env, pending[corev1.EnvVar]{e, p, idx})
	t.addedEnv.add(key)
	m.changed = true
}

// nameKey is a name's hash, for a nameFilter.
type nameKey uint64

var nameSeed = maphash.MakeSeed()

func keyOf(name string) nameKey { return nameKey(maphash.String(nameSeed, name)) }

// nameFilter is a Bloom filter of names (256 bits, two per name): mayHave
// is false for a name never added, and true for one added or, rarely,
// another. It spares the merge a scan of a container's variables for most
// of the names it injects: about 1 in 30 names looks further when a
// container has 25 variables.
type nameFilter [4]uint64

func (f *nameFilter) add(k nameKey) {
	f[k>>6&3] |= 1 << (k & 63)
	f[k>>14&3] |= 1 << (k >> 8 & 63)
}

func (f *nameFilter) mayHave(k nameKey) bool {
	return f[k>>6&3]&(1<<(k&63)) != 0 && f[k>>14&3]&(1<<(k>>8&63)) != 0
}

// envIndex and pendingEnvIndex find a variable by name: plain loops, as
// the merge looks up every injected variable in every target (no copy of
// each entry, no call per entry).
func envIndex(env []corev1.EnvVar, name string) int {
	for i := range env {
		if env[i].Name == name {
			return i
		}
	}
	return -1
}

func pendingEnvIndex(env []pending[corev1.EnvVar], name string) int {
	for i := range env {
		if env[i].v.Name == name {
			return i
		}
	}
	return -1
}

func sameEnv(a, b *corev1.EnvVar) bool {
	if a.ValueFrom == nil && b.ValueFrom == nil {
		return a.Value == b.Value
	}
	return equality.Semantic.DeepEqual(a, b)
}

// sameEnvFromKey says whether two envFrom entries have the same key:
// (configMap name, secret name, prefix).
func sameEnvFromKey(a, b *corev1.EnvFromSource) bool {
	if a.Prefix != b.Prefix || (a.ConfigMapRef == nil) != (b.ConfigMapRef == nil) || (a.SecretRef == nil) != (b.SecretRef == nil) {
		return false
	}
	return (a.ConfigMapRef == nil || a.ConfigMapRef.Name == b.ConfigMapRef.Name) &&
		(a.SecretRef == nil || a.SecretRef.Name == b.SecretRef.Name)
}

// envFromKey renders the key of an envFrom entry for a field path.
func envFromKey(e *corev1.EnvFromSource) string {
	var parts []string
	if e.ConfigMapRef != nil {
		parts = append(parts, "configMapRef="+e.ConfigMapRef.Name)
	}
	if e.SecretRef != nil {
		parts = append(parts, "secretRef="+e.SecretRef.Name)
	}
	if e.Prefix != "" {
		parts = append(parts, "prefix="+e.Prefix)
	}
	return strings.Join(parts, ",")
}

func (m *merger) addEnvFrom(p *Preset, t *target, idx int) {
	e := &p.envFrom[idx]
	if i := slices.IndexFunc(t.c.EnvFrom, func(x corev1.EnvFromSource) bool { return sameEnvFromKey(&x, e) }); i >= 0 {
		if !equality.Semantic.DeepEqual(&t.c.EnvFrom[i], e) {
			m.conflict(p, FieldEnvFrom, t, "envFrom["+envFromKey(e)+"]", &t.c.EnvFrom[i], nil, e)
		}
		return
	}
	if i := pendingIndex(t.envFrom, func(x *corev1.EnvFromSource) bool { return sameEnvFromKey(x, e) }); i >= 0 {
		if !equality.Semantic.DeepEqual(t.envFrom[i].v, e) {
			m.conflict(p, FieldEnvFrom, t, "envFrom["+envFromKey(e)+"]", t.envFrom[i].v, t.envFrom[i].by, e)
		}
		return
	}
	if t.envFrom == nil {
		t.envFrom = m.slabs.envFrom.take(m.sizes.envFrom, len(m.targets))
	}
	t.envFrom = append(t.envFrom, pending[corev1.EnvFromSource]{e, p, idx})
	m.changed = true
}

func (m *merger) addMount(p *Preset, t *target, idx int) {
	vm := &p.mounts[idx]
	if i := slices.IndexFunc(t.c.VolumeMounts, func(x corev1.VolumeMount) bool { return x.MountPath == vm.MountPath }); i >= 0 {
		if !equality.Semantic.DeepEqual(&t.c.VolumeMounts[i], vm) {
			m.conflict(p, FieldVolumeMount, t, "volumeMounts[mountPath="+vm.MountPath+"]", &t.c.VolumeMounts[i], nil, vm)
		}
		return
	}
	if i := pendingIndex(t.mounts, func(x *corev1.VolumeMount) bool { return x.MountPath == vm.MountPath }); i >= 0 {
		if !equality.Semantic.DeepEqual(t.mounts[i].v, vm) {
			m.conflict(p, FieldVolumeMount, t, "volumeMounts[mountPath="+vm.MountPath+"]", t.mounts[i].v, t.mounts[i].by, vm)
		}
		return
	}
	if t.mounts == nil {
		t.mounts = m.slabs.mounts.take(m.sizes.mounts, len(m.targets))
	}
	t.mounts = append(t.mounts, pending[corev1.VolumeMount]{vm, p, idx})
	m.changed = true
}

func (m *merger) addVolume(p *Preset, idx int) {
	v := &p.volumes[idx]
	if i := slices.IndexFunc(m.pod.Spec.Volumes, func(x corev1.Volume) bool { return x.Name == v.Name }); i >= 0 {
		if !equality.Semantic.DeepEqual(&m.pod.Spec.Volumes[i], v) {
			m.conflict(p, FieldVolume, nil, "spec.volumes[name="+v.Name+"]", &m.pod.Spec.Volumes[i], nil, v)
		}
		return
	}
	if i := pendingIndex(m.volumes, func(x *corev1.Volume) bool { return x.Name == v.Name }); i >= 0 {
		if !equality.Semantic.DeepEqual(m.volumes[i].v, v) {
			m.conflict(p, FieldVolume, nil, "spec.volumes[name="+v.Name+"]", m.volumes[i].v, m.volumes[i].by, v)
		}
		return
	}
	m.volumes = append(m.volumes, pending[corev1.Volume]{v, p, idx})
	m.changed = true
}

func (m *merger) addPullSecret(s corev1.LocalObjectReference) {
	same := func(x corev1.LocalObjectReference) bool { return x.Name == s.Name }
	if slices.ContainsFunc(m.pod.Spec.ImagePullSecrets, same) || slices.ContainsFunc(m.pulls, same) {
		return
	}
	m.pulls = append(m.pulls, s)
	m.changed = true
}

func (m *merger) addAnnotation(p *Preset, a annotation) {
	if have, ok := m.pod.Annotations[a.key]; ok {
		if have != a.value {
			m.conflict(p, FieldAnnotation, nil, "metadata.annotations["+a.key+"]", have, nil, a.value)
		}
		return
	}
	if i := slices.IndexFunc(m.annots, func(x annotation) bool { return x.key == a.key }); i >= 0 {
		if m.annots[i].value != a.value {
			m.conflict(p, FieldAnnotation, nil, "metadata.annotations["+a.key+"]", m.annots[i].value, m.annotsBy[i], a.value)
		}
		return
	}
	m.annots = append(m.annots, a)
	m.annotsBy = append(m.annotsBy, p)
	m.changed = true
}

// addInit injects an init container unless the pod has a container of that
// name. Container names are unique across init and app containers, so an
// app container of that name is a conflict too.
func (m *merger) addInit(p *Preset, c *corev1.Container) {
	for k := range m.targets {
		t := &m.targets[k]
		if t.c.Name != c.Name {
			continue
		}
		if !t.sameInit(c) {
			var from *Preset
			if i := slices.Index(m.inits, t.c); i >= 0 {
				from = m.initsBy[i]
			}
			m.conflict(p, FieldInitContainer, nil, "spec.initContainers[name="+c.Name+"]", t.c, from, c)
		}
		return
	}
	// A shallow copy: finish gives the lists it changes new backing arrays.
	cp := new(corev1.Container)
	*cp = *c
	m.inits = append(m.inits, cp)
	m.initsBy = append(m.initsBy, p)
	m.targets = append(m.targets, target{c: cp, index: -1, isInitCtr: true})
	m.changed = true
}

// sameInit says whether the target is the init container c as a preset
// defines it, possibly after presets added env, envFrom and mounts to it:
// every other field equal, and c's own entries present and identical.
func (t *target) sameInit(c *corev1.Container) bool {
	if !t.isInitCtr {
		return false
	}
	for i := range c.Env {
		if !slices.ContainsFunc(t.c.Env, func(e corev1.EnvVar) bool { return equality.Semantic.DeepEqual(e, c.Env[i]) }) {
			return false
		}
	}
	for i := range c.EnvFrom {
		if !slices.ContainsFunc(t.c.EnvFrom, func(e corev1.EnvFromSource) bool { return equality.Semantic.DeepEqual(e, c.EnvFrom[i]) }) {
			return false
		}
	}
	for i := range c.VolumeMounts {
		if !slices.ContainsFunc(t.c.VolumeMounts, func(e corev1.VolumeMount) bool { return equality.Semantic.DeepEqual(e, c.VolumeMounts[i]) }) {
			return false
		}
	}
	a, b := *t.c, *c
	a.Env, a.EnvFrom, a.VolumeMounts = nil, nil, nil
	b.Env, b.EnvFrom, b.VolumeMounts = nil, nil, nil
	return equality.Semantic.DeepEqual(a, b)
}

// recordApplied writes podpreset.dev/applied: existing entries keep their
// place (with the generation updated), new presets are appended.
func (m *merger) recordApplied(refs []Ref) {
	old := m.pod.Annotations[AnnotationApplied]
	if old == "" {
		// The first application: the entries in order, in one string.
		var b strings.Builder
		b.Grow(len(refs) * 32)
		for i, r := range refs {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(r.Kind)
			b.WriteByte('/')
			b.WriteString(r.Name)
			b.WriteByte('@')
			b.WriteString(strconv.FormatInt(r.Generation, 10))
		}
		m.applied, m.changed = b.String(), true
		return
	}
	entries := strings.Split(old, ",")
	for _, r := range refs {
		prefix := r.Kind + "/" + r.Name + "@"
		i := slices.IndexFunc(entries, func(e string) bool { return strings.HasPrefix(strings.TrimSpace(e), prefix) })
		if i >= 0 {
			entries[i] = r.String()
		} else {
			entries = append(entries, r.String())
		}
	}
	if v := strings.Join(entries, ","); v != old {
		m.applied = v
		m.changed = true
	}
}

// recordSourcesHash writes podpreset.dev/sources-hash when a preset brought
// materialised Consul or Vault values and the pod has none yet (a
// reinvocation keeps the first).
func (m *merger) recordSourcesHash(presets []*Preset) {
	if _, ok := m.pod.Annotations[AnnotationSourcesHash]; ok {
		return
	}
	if h := sourcesHash(presets); h != "" {
		m.srcHash = h
		m.changed = true
	}
}

// finish writes what the presets added into the working copy, each kind
// of list allocated once for every container at its final size. Injected
// entries are copied shallowly: their pointers are the compiled presets'.
// Containers whose final list of a kind comes out the same (the same own
// entries and the same injected ones, as when presets inject envFrom or
// mounts into containers that have none or the same) share one list, so
// a merged pod costs the collector only its distinct lists.
func (m *merger) finish() *corev1.Pod {
	pod := m.pod
	var n struct{ env, envFrom, mounts int }
	for k := range m.targets {
		t := &m.targets[k]
		t.shares = sharing{}
		earlier := m.targets[max(0, k-maxShareLookback):k]
		if len(t.env) > 0 {
			if t.shares.env = sharedList(earlier, t.c.Env, t.env, equal, func(o *target) ([]corev1.EnvVar, []pending[corev1.EnvVar], bool) {
				return o.c.Env, o.env, o.shares.env == 0
			}); t.shares.env == 0 {
				n.env += len(t.env) + len(t.c.Env)
			}
		}
		if len(t.envFrom) > 0 {
			if t.shares.envFrom = sharedList(earlier, t.c.EnvFrom, t.envFrom, equal, func(o *target) ([]corev1.EnvFromSource, []pending[corev1.EnvFromSource], bool) {
				return o.c.EnvFrom, o.envFrom, o.shares.envFrom == 0
			}); t.shares.envFrom == 0 {
				n.envFrom += len(t.envFrom) + len(t.c.EnvFrom)
			}
		}
		if len(t.mounts) > 0 {
			if t.shares.mounts = sharedList(earlier, t.c.VolumeMounts, t.mounts, sameMount, func(o *target) ([]corev1.VolumeMount, []pending[corev1.VolumeMount], bool) {
				return o.c.VolumeMounts, o.mounts, o.shares.mounts == 0
			}); t.shares.mounts == 0 {
				n.mounts += len(t.mounts) + len(t.c.VolumeMounts)
			}
		}
		// Offsets into earlier are relative; make them the target's index.
		t.shares.rebase(k - len(earlier))
	}
	bufs := &lists{make([]corev1.EnvVar, 0, n.env), make([]corev1.EnvFromSource, 0, n.envFrom), make([]corev1.VolumeMount, 0, n.mounts)}
	for k := range m.targets {
		t := &m.targets[k]
		t.fill(t.c, bufs, m.targets)
	}
	if len(m.inits) > 0 {
		inits := make([]corev1.Container, 0, len(m.inits)+len(pod.Spec.InitContainers))
		for _, c := range m.inits {
			inits = append(inits, *c)
		}
		pod.Spec.InitContainers = append(inits, pod.Spec.InitContainers...)
	}
	if len(m.pulls) > 0 {
		pod.Spec.ImagePullSecrets = append(slices.Clip(pod.Spec.ImagePullSecrets), m.pulls...)
	}
	if len(m.volumes) > 0 {
		pod.Spec.Volumes, _ = place(make([]corev1.Volume, 0, len(pod.Spec.Volumes)+len(m.volumes)), m.volumes, pod.Spec.Volumes, false)
	}
	if len(m.annots) > 0 || m.applied != "" || m.srcHash != "" {
		annots := make(map[string]string, len(pod.Annotations)+len(m.annots)+2)
		maps.Copy(annots, pod.Annotations)
		pod.Annotations = annots
		for _, a := range m.annots {
			pod.Annotations[a.key] = a.value
		}
		if m.applied != "" {
			pod.Annotations[AnnotationApplied] = m.applied
		}
		if m.srcHash != "" {
			pod.Annotations[AnnotationSourcesHash] = m.srcHash
		}
	}
	return pod
}

// lists are the buffers that containers' final lists are cut from; empty
// ones give each list its own allocation.
type lists struct {
	env     []corev1.EnvVar
	envFrom []corev1.EnvFromSource
	mounts  []corev1.VolumeMount
}

// fill gives c the lists it has once the presets' additions to t are in,
// cut from bufs, or the earlier target's list that t shares (already
// filled: targets are filled in order).
func (t *target) fill(c *corev1.Container, bufs *lists, targets []target) {
	switch {
	case t.shares.env > 0:
		c.Env = targets[t.shares.env-1].c.Env
	case len(t.env) > 0:
		c.Env, bufs.env = place(bufs.env, t.env, c.Env, true)
	}
	switch {
	case t.shares.envFrom > 0:
		c.EnvFrom = targets[t.shares.envFrom-1].c.EnvFrom
	case len(t.envFrom) > 0:
		c.EnvFrom, bufs.envFrom = place(bufs.envFrom, t.envFrom, c.EnvFrom, true)
	}
	switch {
	case t.shares.mounts > 0:
		c.VolumeMounts = targets[t.shares.mounts-1].c.VolumeMounts
	case len(t.mounts) > 0:
		c.VolumeMounts, bufs.mounts = place(bufs.mounts, t.mounts, c.VolumeMounts, false)
	}
}

// maxShareLookback bounds how many earlier targets finish compares a
// target's lists with, so that a pod of many containers costs linear
// time.
const maxShareLookback = 8

// sharing says, per kind of list, which earlier target's final list a
// target reuses: its index plus one; zero for none.
type sharing struct{ env, envFrom, mounts int }

// rebase turns indices into a window of targets starting at base into
// indices into all targets.
func (s *sharing) rebase(base int) {
	for _, v := range []*int{&s.env, &s.envFrom, &s.mounts} {
		if *v > 0 {
			*v += base
		}
	}
}

// sharedList returns the position plus one, in earlier, of a target whose
// final list of a kind will be the one this target gets: the same own
// entries (equal by eq: values equal, pointers inside them identical) and the same
// injected entries in the same order; zero when there is none. lists gives
// an earlier target's own entries and additions of the kind, and whether
// that target fills a list of its own (only those are compared: the
// others share one of them). Earlier targets are not filled yet.
func sharedList[T any](earlier []target, own []T, added []pending[T], eq func(a, b *T) bool, lists func(*target) ([]T, []pending[T], bool)) int {
	for j := range earlier {
		oOwn, oAdded, filled := lists(&earlier[j])
		if !filled || len(oAdded) != len(added) || len(oOwn) != len(own) {
			continue
		}
		if !ownEqual(oOwn, own, eq) {
			continue
		}
		same := true
		for i := range added {
			if added[i].v != oAdded[i].v {
				same = false
				break
			}
		}
		if same {
			return j + 1
		}
	}
	return 0
}

// ownEqual is slices.EqualFunc for lists already known to be of one
// length, with eq taking pointers so that no entry (a VolumeMount is 112
// bytes) is copied to be compared.
func ownEqual[T any](a, b []T, eq func(a, b *T) bool) bool {
	for i := range a {
		if !eq(&a[i], &b[i]) {
			return false
		}
	}
	return true
}

func equal[T comparable](a, b *T) bool { return *a == *b }

// sameMount is == on volume mounts, which Go does not define for them
// (bindMountOptions is a list); TestSameMountKnowsEveryField fails when
// the type gains a field this does not compare.
func sameMount(a, b *corev1.VolumeMount) bool {
	return a.Name == b.Name && a.ReadOnly == b.ReadOnly && a.RecursiveReadOnly == b.RecursiveReadOnly &&
		a.MountPath == b.MountPath && a.SubPath == b.SubPath && a.MountPropagation == b.MountPropagation &&
		a.SubPathExpr == b.SubPathExpr && slices.Equal(a.BindMountOptions, b.BindMountOptions)
}

// place writes a container's (or the pod's) final list at the end of
// buf: the added entries before its own (first) or after them. It returns
// that list, capped so that nothing appended to buf later reaches it, and
// buf with the list in it.
func place[T any](buf []T, added []pending[T], own []T, first bool) (list, grown []T) {
	start := len(buf)
	if !first {
		buf = append(buf, own...)
	}
	for _, a := range added {
		buf = append(buf, *a.v)
	}
	if first {
		buf = append(buf, own...)
	}
	return buf[start:len(buf):len(buf)], buf
}
