package presets

import (
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// Result is what Apply did to a pod.
type Result struct {
	// Pod is the pod after the presets were applied: a new object when
	// Changed is true, else the input pod itself. The input is never
	// modified, but the new object shares every part that did not change
	// with it (copy on write): treat both as read-only, or DeepCopy first.
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
	if r := Skip(pod); r != "" {
		return Result{Pod: pod, Skipped: r}
	}
	if r := SkipNamespace(ns); r != "" {
		return Result{Pod: pod, Skipped: r}
	}
	return Merge(pod, ns, set.Match(ns, pod.Labels))
}

// Merge merges presets into a copy of a pod in namespace ns, in the order
// given, without matching; refused presets are reported, not merged. Apply
// calls it with the presets that match.
func Merge(pod *corev1.Pod, ns Namespace, presets []*Preset) Result {
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
		return Result{Pod: pod, Refused: refused}
	}
	m := newMerger(pod, ns.Name, presets)
	res := Result{Applied: make([]Ref, 0, len(presets)), Refused: refused}
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
	res.Conflicts, res.Omitted = m.conflicts, m.omitted
	if !m.changed {
		res.Pod = pod
		return res
	}
	res.Pod, res.Changed = m.finish(), true
	return res
}

// pending is an entry a preset adds: a pointer into the compiled preset
// (immutable, so nothing is copied until finish builds the final slices at
// their exact size) and the preset that added it.
type pending[T any] struct {
	v  *T
	by *Preset
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
	c         *corev1.Container
	path      string // spec.containers[name=web]
	env       []pending[corev1.EnvVar]
	envFrom   []pending[corev1.EnvFromSource]
	mounts    []pending[corev1.VolumeMount]
	isInitCtr bool
}

type merger struct {
	pod       *corev1.Pod // the working copy
	ns        string
	targets   []*target
	inits     []*corev1.Container // injected init containers, in order
	initsBy   []*Preset
	volumes   []pending[corev1.Volume]
	pulls     []corev1.LocalObjectReference
	annots    []annotation // added annotations
	annotsBy  []*Preset
	applied   string                             // the new podpreset.dev/applied value, if it changes
	srcHash   string                             // podpreset.dev/sources-hash, if added
	sizes     struct{ env, envFrom, mounts int } // the most a target can receive
	conflicts []Conflict
	omitted   []Omission
	changed   bool
}

// newMerger starts from a shallow copy of the pod with its own container
// slices. Nothing reachable from the input is ever written: finish gives
// every list and map it changes a new backing array.
func newMerger(pod *corev1.Pod, ns string, presets []*Preset) *merger {
	out := *pod
	out.Spec.InitContainers = slices.Clone(pod.Spec.InitContainers)
	out.Spec.Containers = slices.Clone(pod.Spec.Containers)
	m := &merger{pod: &out, ns: ns}
	for _, p := range presets {
		m.sizes.env += len(p.env)
		m.sizes.envFrom += len(p.envFrom)
		m.sizes.mounts += len(p.mounts)
	}
	m.targets = make([]*target, 0, len(out.Spec.InitContainers)+len(out.Spec.Containers)+2)
	for i := range out.Spec.InitContainers {
		c := &out.Spec.InitContainers[i]
		m.targets = append(m.targets, &target{c: c, path: "spec.initContainers[name=" + c.Name + "]", isInitCtr: true})
	}
	for i := range out.Spec.Containers {
		c := &out.Spec.Containers[i]
		m.targets = append(m.targets, &target{c: c, path: "spec.containers[name=" + c.Name + "]"})
	}
	return m
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
		c.Field = t.path + "." + field
	}
	m.conflicts = append(m.conflicts, c)
}

// omit records an entry left out because its object is someone else's.
func (m *merger) omit(p *Preset, t *target, field string, o objRef) {
	if t != nil {
		field = t.path + "." + field
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
		m.addVolume(p, &p.volumes[i])
	}
	for _, s := range p.pullSecrets {
		m.addPullSecret(s)
	}
	for _, a := range p.annotations {
		m.addAnnotation(p, a)
	}
	for _, t := range m.targets {
		if !p.targets(t.c.Name) {
			continue
		}
		for i := range p.env {
			if p.foreign != nil && p.isForeign(m.ns, p.envObjs[i]) {
				m.omit(p, t, "env[name="+p.env[i].Name+"]", p.envObjs[i])
				continue
			}
			m.addEnv(p, t, &p.env[i])
		}
		for i := range p.envFrom {
			if p.foreign != nil && p.isForeign(m.ns, p.envFromObjs[i]) {
				m.omit(p, t, "envFrom["+envFromKey(&p.envFrom[i])+"]", p.envFromObjs[i])
				continue
			}
			m.addEnvFrom(p, t, &p.envFrom[i])
		}
		for i := range p.mounts {
			if o, ok := omittedVolumes[p.mounts[i].Name]; ok {
				m.omit(p, t, "volumeMounts[mountPath="+p.mounts[i].MountPath+"]", o)
				continue
			}
			m.addMount(p, t, &p.mounts[i])
		}
	}
}

func (m *merger) addEnv(p *Preset, t *target, e *corev1.EnvVar) {
	if i := slices.IndexFunc(t.c.Env, func(x corev1.EnvVar) bool { return x.Name == e.Name }); i >= 0 {
		if !sameEnv(&t.c.Env[i], e) {
			m.conflict(p, FieldEnv, t, "env[name="+e.Name+"]", &t.c.Env[i], nil, e)
		}
		return
	}
	if i := pendingIndex(t.env, func(x *corev1.EnvVar) bool { return x.Name == e.Name }); i >= 0 {
		if !sameEnv(t.env[i].v, e) {
			m.conflict(p, FieldEnv, t, "env[name="+e.Name+"]", t.env[i].v, t.env[i].by, e)
		}
		return
	}
	if t.env == nil {
		t.env = make([]pending[corev1.EnvVar], 0, m.sizes.env)
	}
	t.env = append(t.env, pending[corev1.EnvVar]{e, p})
	m.changed = true
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

func (m *merger) addEnvFrom(p *Preset, t *target, e *corev1.EnvFromSource) {
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
		t.envFrom = make([]pending[corev1.EnvFromSource], 0, m.sizes.envFrom)
	}
	t.envFrom = append(t.envFrom, pending[corev1.EnvFromSource]{e, p})
	m.changed = true
}

func (m *merger) addMount(p *Preset, t *target, vm *corev1.VolumeMount) {
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
		t.mounts = make([]pending[corev1.VolumeMount], 0, m.sizes.mounts)
	}
	t.mounts = append(t.mounts, pending[corev1.VolumeMount]{vm, p})
	m.changed = true
}

func (m *merger) addVolume(p *Preset, v *corev1.Volume) {
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
	m.volumes = append(m.volumes, pending[corev1.Volume]{v, p})
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
	for _, t := range m.targets {
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
	cp := c.DeepCopy()
	m.inits = append(m.inits, cp)
	m.initsBy = append(m.initsBy, p)
	m.targets = append(m.targets, &target{c: cp, path: "spec.initContainers[name=" + c.Name + "]", isInitCtr: true})
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
	var entries []string
	if old != "" {
		entries = strings.Split(old, ",")
	}
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

// finish writes what the presets added into the working copy, each list
// allocated once at its final size, injected values deep-copied out of the
// compiled presets.
func (m *merger) finish() *corev1.Pod {
	pod := m.pod
	for _, t := range m.targets {
		c := t.c
		if len(t.env) > 0 {
			c.Env = prepend(t.env, c.Env)
		}
		if len(t.envFrom) > 0 {
			c.EnvFrom = prepend(t.envFrom, c.EnvFrom)
		}
		if len(t.mounts) > 0 {
			c.VolumeMounts = appendCopies(c.VolumeMounts, t.mounts)
		}
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
		pod.Spec.Volumes = appendCopies(pod.Spec.Volumes, m.volumes)
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

// deepCopier is a core type with a generated DeepCopyInto.
type deepCopier[T any] interface {
	*T
	DeepCopyInto(*T)
}

// prepend returns deep copies of the added entries followed by own.
func prepend[T any, P deepCopier[T]](added []pending[T], own []T) []T {
	out := make([]T, len(added), len(added)+len(own))
	for i, a := range added {
		P(a.v).DeepCopyInto(&out[i])
	}
	return append(out, own...)
}

// appendCopies returns own followed by deep copies of the added entries.
func appendCopies[T any, P deepCopier[T]](own []T, added []pending[T]) []T {
	out := make([]T, len(own)+len(added))
	copy(out, own)
	for i, a := range added {
		P(a.v).DeepCopyInto(&out[len(own)+i])
	}
	return out
}
