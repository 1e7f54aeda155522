package presets

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// Result is what Apply did to a pod.
type Result struct {
	// Pod is the pod after the presets were applied: a new object when
	// Changed is true, else the input pod itself. The input is never modified.
	Pod *corev1.Pod
	// Changed says whether anything was added to the pod.
	Changed bool
	// Applied lists the presets that matched, in application order.
	Applied []Ref
	// Conflicts lists every value a preset could not inject.
	Conflicts []Conflict
	// Skipped says why the pod was left alone; empty when it was not.
	Skipped SkipReason
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
	return Merge(pod, set.Match(ns, pod.Labels))
}

// Merge merges presets into a copy of a pod, in the order given, without
// matching. Apply calls it with the presets that match.
func Merge(pod *corev1.Pod, presets []*Preset) Result {
	if len(presets) == 0 {
		return Result{Pod: pod}
	}
	m := newMerger(pod)
	res := Result{Applied: make([]Ref, 0, len(presets))}
	for _, p := range presets {
		m.apply(p)
		res.Applied = append(res.Applied, p.ref)
	}
	m.recordApplied(res.Applied)
	res.Conflicts = m.conflicts
	if !m.changed {
		res.Pod = pod
		return res
	}
	res.Pod, res.Changed = m.finish(), true
	return res
}

// target is a container that receives env, envFrom and mounts, with what
// the presets add to it so far.
type target struct {
	c        *corev1.Container
	path     string // spec.containers[name=web]
	env      []corev1.EnvVar
	envFrom  []corev1.EnvFromSource
	mounts   []corev1.VolumeMount
	origins  map[string]*Preset // "env/NAME", "envFrom/KEY", "mount/PATH" -> preset that added it
	injected bool               // an init container a preset added
}

type merger struct {
	pod       *corev1.Pod // the working copy
	targets   []*target
	inits     []*corev1.Container // injected init containers, in order
	volumes   []corev1.Volume
	pulls     []corev1.LocalObjectReference
	annots    map[string]string // added annotations
	origins   map[string]*Preset
	conflicts []Conflict
	changed   bool
}

func newMerger(pod *corev1.Pod) *merger {
	out := pod.DeepCopy()
	m := &merger{pod: out, origins: map[string]*Preset{}}
	m.targets = make([]*target, 0, len(out.Spec.InitContainers)+len(out.Spec.Containers)+2)
	for i := range out.Spec.InitContainers {
		c := &out.Spec.InitContainers[i]
		m.targets = append(m.targets, &target{c: c, path: "spec.initContainers[name=" + c.Name + "]"})
	}
	for i := range out.Spec.Containers {
		c := &out.Spec.Containers[i]
		m.targets = append(m.targets, &target{c: c, path: "spec.containers[name=" + c.Name + "]"})
	}
	return m
}

func (m *merger) conflict(p *Preset, kind FieldKind, container, field string, kept any, keptFrom *Preset, dropped any) {
	from := KeptFromPod
	if keptFrom != nil {
		from = keptFrom.ref.String()
	}
	m.conflicts = append(m.conflicts, Conflict{
		Preset: p.ref, Kind: kind, Container: container, Field: field,
		Kept: render(kept), KeptFrom: from, Dropped: render(dropped),
	})
}

// apply merges one preset. Init containers come first so that they are
// targets of the preset's own env, envFrom and mounts.
func (m *merger) apply(p *Preset) {
	for i := range p.inits {
		m.addInit(p, &p.inits[i])
	}
	for i := range p.volumes {
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
			m.addEnv(p, t, &p.env[i])
		}
		for i := range p.envFrom {
			m.addEnvFrom(p, t, &p.envFrom[i])
		}
		for i := range p.mounts {
			m.addMount(p, t, &p.mounts[i])
		}
	}
}

func (m *merger) addEnv(p *Preset, t *target, e *corev1.EnvVar) {
	field := t.path + ".env[name=" + e.Name + "]"
	for i := range t.c.Env {
		if t.c.Env[i].Name == e.Name {
			if !sameEnv(&t.c.Env[i], e) {
				m.conflict(p, FieldEnv, t.c.Name, field, &t.c.Env[i], t.origins["env/"+e.Name], e)
			}
			return
		}
	}
	for i := range t.env {
		if t.env[i].Name == e.Name {
			if !sameEnv(&t.env[i], e) {
				m.conflict(p, FieldEnv, t.c.Name, field, &t.env[i], t.origins["env/"+e.Name], e)
			}
			return
		}
	}
	var cp corev1.EnvVar
	e.DeepCopyInto(&cp)
	t.env = append(t.env, cp)
	t.setOrigin("env/"+e.Name, p)
	m.changed = true
}

func sameEnv(a, b *corev1.EnvVar) bool {
	if a.ValueFrom == nil && b.ValueFrom == nil {
		return a.Value == b.Value
	}
	return equality.Semantic.DeepEqual(a, b)
}

// envFromKey is the key of an envFrom entry: (configMap, secret, prefix).
func envFromKey(e *corev1.EnvFromSource) string {
	var cm, sec string
	if e.ConfigMapRef != nil {
		cm = e.ConfigMapRef.Name
	}
	if e.SecretRef != nil {
		sec = e.SecretRef.Name
	}
	var b strings.Builder
	if cm != "" {
		b.WriteString("configMapRef=" + cm)
	}
	if sec != "" {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString("secretRef=" + sec)
	}
	if e.Prefix != "" {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString("prefix=" + e.Prefix)
	}
	return b.String()
}

func (m *merger) addEnvFrom(p *Preset, t *target, e *corev1.EnvFromSource) {
	key := envFromKey(e)
	field := t.path + ".envFrom[" + key + "]"
	for _, list := range [][]corev1.EnvFromSource{t.c.EnvFrom, t.envFrom} {
		for i := range list {
			if envFromKey(&list[i]) == key {
				if !equality.Semantic.DeepEqual(&list[i], e) {
					m.conflict(p, FieldEnvFrom, t.c.Name, field, &list[i], t.origins["envFrom/"+key], e)
				}
				return
			}
		}
	}
	var cp corev1.EnvFromSource
	e.DeepCopyInto(&cp)
	t.envFrom = append(t.envFrom, cp)
	t.setOrigin("envFrom/"+key, p)
	m.changed = true
}

func (m *merger) addMount(p *Preset, t *target, vm *corev1.VolumeMount) {
	for _, list := range [][]corev1.VolumeMount{t.c.VolumeMounts, t.mounts} {
		for i := range list {
			if list[i].MountPath == vm.MountPath {
				if !equality.Semantic.DeepEqual(&list[i], vm) {
					field := t.path + ".volumeMounts[mountPath=" + vm.MountPath + "]"
					m.conflict(p, FieldVolumeMount, t.c.Name, field, &list[i], t.origins["mount/"+vm.MountPath], vm)
				}
				return
			}
		}
	}
	var cp corev1.VolumeMount
	vm.DeepCopyInto(&cp)
	t.mounts = append(t.mounts, cp)
	t.setOrigin("mount/"+vm.MountPath, p)
	m.changed = true
}

func (t *target) setOrigin(key string, p *Preset) {
	if t.origins == nil {
		t.origins = map[string]*Preset{}
	}
	t.origins[key] = p
}

func (m *merger) addVolume(p *Preset, v *corev1.Volume) {
	for _, list := range [][]corev1.Volume{m.pod.Spec.Volumes, m.volumes} {
		for i := range list {
			if list[i].Name == v.Name {
				if !equality.Semantic.DeepEqual(&list[i], v) {
					m.conflict(p, FieldVolume, "", "spec.volumes[name="+v.Name+"]", &list[i], m.origins["volume/"+v.Name], v)
				}
				return
			}
		}
	}
	var cp corev1.Volume
	v.DeepCopyInto(&cp)
	m.volumes = append(m.volumes, cp)
	m.origins["volume/"+v.Name] = p
	m.changed = true
}

func (m *merger) addPullSecret(s corev1.LocalObjectReference) {
	for _, list := range [][]corev1.LocalObjectReference{m.pod.Spec.ImagePullSecrets, m.pulls} {
		for _, have := range list {
			if have.Name == s.Name {
				return
			}
		}
	}
	m.pulls = append(m.pulls, s)
	m.changed = true
}

func (m *merger) addAnnotation(p *Preset, a annotation) {
	field := "metadata.annotations[" + a.key + "]"
	if have, ok := m.pod.Annotations[a.key]; ok {
		if have != a.value {
			m.conflict(p, FieldAnnotation, "", field, have, nil, a.value)
		}
		return
	}
	if have, ok := m.annots[a.key]; ok {
		if have != a.value {
			m.conflict(p, FieldAnnotation, "", field, have, m.origins["annotation/"+a.key], a.value)
		}
		return
	}
	if m.annots == nil {
		m.annots = map[string]string{}
	}
	m.annots[a.key] = a.value
	m.origins["annotation/"+a.key] = p
	m.changed = true
}

// addInit injects an init container unless the pod has a container of that
// name. Container names are unique across init and app containers, so an
// app container of that name is a conflict too.
func (m *merger) addInit(p *Preset, c *corev1.Container) {
	field := "spec.initContainers[name=" + c.Name + "]"
	for _, t := range m.targets {
		if t.c.Name != c.Name {
			continue
		}
		if !t.sameInit(c) {
			from := (*Preset)(nil)
			if t.injected {
				from = m.origins["init/"+c.Name]
			}
			m.conflict(p, FieldInitContainer, "", field, t.c, from, c)
		}
		return
	}
	cp := c.DeepCopy()
	m.inits = append(m.inits, cp)
	m.targets = append(m.targets, &target{c: cp, path: field, injected: true})
	m.origins["init/"+c.Name] = p
	m.changed = true
}

// sameInit says whether the target is the init container c as a preset
// defines it, possibly after presets added env, envFrom and mounts to it:
// every other field equal, and c's own entries present and identical.
func (t *target) sameInit(c *corev1.Container) bool {
	if !t.isInit() {
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

func (t *target) isInit() bool {
	return t.injected || strings.HasPrefix(t.path, "spec.initContainers[")
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
		if m.annots == nil {
			m.annots = map[string]string{}
		}
		m.annots[AnnotationApplied] = v
		m.changed = true
	}
}

// finish writes what the presets added into the working copy.
func (m *merger) finish() *corev1.Pod {
	pod := m.pod
	for _, t := range m.targets {
		c := t.c
		if len(t.env) > 0 {
			c.Env = append(t.env, c.Env...)
		}
		if len(t.envFrom) > 0 {
			c.EnvFrom = append(t.envFrom, c.EnvFrom...)
		}
		if len(t.mounts) > 0 {
			c.VolumeMounts = append(c.VolumeMounts, t.mounts...)
		}
	}
	if len(m.inits) > 0 {
		inits := make([]corev1.Container, 0, len(m.inits)+len(pod.Spec.InitContainers))
		for _, c := range m.inits {
			inits = append(inits, *c)
		}
		pod.Spec.InitContainers = append(inits, pod.Spec.InitContainers...)
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, m.volumes...)
	pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, m.pulls...)
	if len(m.annots) > 0 {
		if pod.Annotations == nil {
			pod.Annotations = make(map[string]string, len(m.annots))
		}
		for k, v := range m.annots {
			pod.Annotations[k] = v
		}
	}
	return pod
}
