// Package patch computes the JSON patch that turns a pod into the pod
// presets.Apply made of it, from the two typed pods, without encoding
// either: the engine only ever prepends (env, envFrom, init containers) or
// appends (volumeMounts, volumes, imagePullSecrets) entries and adds
// annotations, so the patch inserts exactly those entries, at their index.
// Entries the pod already had are never replaced, so fields inside them
// that our Go types do not know (a newer Kubernetes' fields) survive, and
// the patch stays small: a generic JSON diff would rewrite every entry that
// an insertion shifted.
//
// Paths are relative to prefix: "" for a Pod, "/spec/template" for a pod
// template. The CLI uses it for workloads' templates; the webhook writes the
// same patch for pods straight from the merge (presets.MergePatch), and the
// engine's tests hold that one to this one, byte for byte.
package patch

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// Operation is one JSON patch (RFC 6902) operation; podpreset only adds.
type Operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// Pod returns the operations that turn before into after, where after is
// the result of presets.Apply on before. It fails, rather than guess, when
// after is not before with entries added as the engine adds them.
func Pod(before, after *corev1.Pod, prefix string) ([]Operation, error) {
	b := &builder{}
	b.annotations(prefix+"/metadata/annotations", before.Annotations, after.Annotations)
	nInits := len(after.Spec.InitContainers) - len(before.Spec.InitContainers)
	if nInits < 0 {
		return nil, fmt.Errorf("patch: init containers were removed")
	}
	// Containers first, at their original indices; the injected init
	// containers are inserted last, so no index has shifted yet.
	for i := range before.Spec.InitContainers {
		b.container(prefix+"/spec/initContainers/"+strconv.Itoa(i), &before.Spec.InitContainers[i], &after.Spec.InitContainers[nInits+i])
	}
	if len(after.Spec.Containers) != len(before.Spec.Containers) {
		return nil, fmt.Errorf("patch: containers were added or removed")
	}
	for i := range before.Spec.Containers {
		b.container(prefix+"/spec/containers/"+strconv.Itoa(i), &before.Spec.Containers[i], &after.Spec.Containers[i])
	}
	// The pod's own init containers may have received env; compare names.
	names := func(cs []corev1.Container) []string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.Name
		}
		return out
	}
	if !slices.Equal(names(after.Spec.InitContainers[nInits:]), names(before.Spec.InitContainers)) {
		b.fail("init containers were not only prepended")
	} else if nInits > 0 {
		if len(before.Spec.InitContainers) == 0 {
			b.add(prefix+"/spec/initContainers", after.Spec.InitContainers)
		} else {
			for i := range nInits {
				b.add(prefix+"/spec/initContainers/"+strconv.Itoa(i), after.Spec.InitContainers[i])
			}
		}
	}
	appendTo(b, prefix+"/spec/volumes", before.Spec.Volumes, after.Spec.Volumes)
	appendTo(b, prefix+"/spec/imagePullSecrets", before.Spec.ImagePullSecrets, after.Spec.ImagePullSecrets)
	if b.err != nil {
		return nil, b.err
	}
	return b.ops, nil
}

type builder struct {
	ops []Operation
	err error
}

func (b *builder) add(path string, value any) {
	b.ops = append(b.ops, Operation{Op: "add", Path: path, Value: value})
}

func (b *builder) fail(format string, args ...any) {
	if b.err == nil {
		b.err = fmt.Errorf("patch: "+format, args...)
	}
}

func (b *builder) container(path string, before, after *corev1.Container) {
	prepend(b, path+"/env", before.Env, after.Env)
	prepend(b, path+"/envFrom", before.EnvFrom, after.EnvFrom)
	appendTo(b, path+"/volumeMounts", before.VolumeMounts, after.VolumeMounts)
}

// same says whether two lists are equal: at once when they share their
// backing array or their entries are == (the engine copies on write, so an
// entry it kept shares its pointers), else by a deep comparison.
func same[T any](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return shallowEqual(a, b) || equality.Semantic.DeepEqual(a, b)
}

// shallowEqual compares lists of comparable entries with ==; for lists of
// other entries it says false, and same compares them deeply.
func shallowEqual[T any](a, b []T) bool {
	switch a := any(a).(type) {
	case []corev1.EnvVar:
		return slices.Equal(a, any(b).([]corev1.EnvVar))
	case []corev1.EnvFromSource:
		return slices.Equal(a, any(b).([]corev1.EnvFromSource))
	case []corev1.Volume:
		return slices.Equal(a, any(b).([]corev1.Volume))
	case []corev1.LocalObjectReference:
		return slices.Equal(a, any(b).([]corev1.LocalObjectReference))
	case []corev1.VolumeMount:
		return slices.EqualFunc(a, any(b).([]corev1.VolumeMount), sameMount)
	}
	return false
}

// sameMount compares two mounts field by field, pointers and the options
// slice by identity (VolumeMount is not comparable with ==).
func sameMount(a, b corev1.VolumeMount) bool {
	return a.Name == b.Name && a.MountPath == b.MountPath && a.SubPath == b.SubPath && a.SubPathExpr == b.SubPathExpr &&
		a.ReadOnly == b.ReadOnly && a.RecursiveReadOnly == b.RecursiveReadOnly && a.MountPropagation == b.MountPropagation &&
		len(a.BindMountOptions) == len(b.BindMountOptions) && (len(a.BindMountOptions) == 0 || &a.BindMountOptions[0] == &b.BindMountOptions[0])
}

// prepend adds the entries after has in front of before's.
func prepend[T any](b *builder, path string, before, after []T) {
	n := len(after) - len(before)
	switch {
	case n == 0:
		if !same(before, after) {
			b.fail("%s: entries were changed", path)
		}
		return
	case n < 0 || !same(after[n:], before):
		b.fail("%s: entries were not only prepended", path)
	case len(before) == 0:
		b.add(path, after)
	default:
		for i := range n {
			b.add(path+"/"+strconv.Itoa(i), after[i])
		}
	}
}

// appendTo adds the entries after has behind before's.
func appendTo[T any](b *builder, path string, before, after []T) {
	n := len(after) - len(before)
	switch {
	case n == 0:
		if !same(before, after) {
			b.fail("%s: entries were changed", path)
		}
		return
	case n < 0 || !same(after[:len(before)], before):
		b.fail("%s: entries were not only appended", path)
	case len(before) == 0:
		b.add(path, after)
	default:
		for _, e := range after[len(before):] {
			b.add(path+"/-", e)
		}
	}
}

func (b *builder) annotations(path string, before, after map[string]string) {
	if len(after) == 0 || len(before) == 0 && len(after) > 0 {
		if len(after) > 0 {
			b.add(path, after)
		}
		return
	}
	for _, k := range slices.Sorted(maps.Keys(after)) {
		v := after[k]
		if old, ok := before[k]; ok && old == v {
			continue
		}
		// "add" replaces a member that exists (podpreset.dev/applied on a
		// re-application).
		b.add(path+"/"+escape(k), v)
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			b.fail("annotation %s was removed", k)
		}
	}
}

// escape encodes a map key as a JSON pointer token (RFC 6901).
func escape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}
