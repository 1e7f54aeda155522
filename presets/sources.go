package presets

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// SourceKind is where a source's values come from.
type SourceKind string

// Source kinds, as they prefix a source's ID.
const (
	SourceConsulKey    SourceKind = "consul"
	SourceConsulPrefix SourceKind = "consul-prefix"
	SourceVault        SourceKind = "vault"
	SourceVaultPKI     SourceKind = "vault-pki"
)

// Source is one thing a preset reads: a Consul key or prefix, a Vault KV
// secret, or a Vault PKI role.
type Source struct {
	Kind SourceKind
	// Path is the Consul key or prefix, the Vault secret's path, or
	// <mount>/issue/<role> for PKI.
	Path string
	// PKI is the certificate request, for SourceVaultPKI.
	PKI *v1alpha1.VaultPKISource
}

// ID names the source in a preset's status: kind:path.
func (s Source) ID() string { return string(s.Kind) + ":" + s.Path }

// Layout says how a source's values are laid out in the object.
type Layout int

// Layouts.
const (
	// LayoutKey: one value (a Consul key, or one field of a Vault secret)
	// under Item.DataKey.
	LayoutKey Layout = iota
	// LayoutEnv: every key under the prefix (every field of the secret),
	// named by EnvName.
	LayoutEnv
	// LayoutFiles: every key under the prefix (every field), named by
	// FileName.
	LayoutFiles
	// LayoutTLS: tls.crt, tls.key and ca.crt.
	LayoutTLS
)

// Item is one source's part of a materialised object.
type Item struct {
	// Field is where the preset names the source, for errors.
	Field string
	Source
	// VaultField is the field read, for a LayoutKey Vault source.
	VaultField string
	// DataKey is the object's key, for LayoutKey.
	DataKey string
	Layout  Layout
	// Optional items may be missing without an error.
	Optional bool
}

// ObjectRole says what a materialised object holds, and so how it is named.
type ObjectRole int

// Object roles.
const (
	// RoleValues is podpreset-<preset>: the single values of env
	// valueFrom (a ConfigMap for Consul, a Secret for Vault and for Consul
	// keys marked secret).
	RoleValues ObjectRole = iota
	// RoleEnvFrom is podpreset-<preset>-env-<hash>: one envFrom source.
	RoleEnvFrom
	// RoleVolume is podpreset-<preset>-vol-<volume>: one volume's files.
	RoleVolume
)

// Object is a ConfigMap or a Secret that the sources controller writes for
// a preset, in each namespace the preset serves. It is planned from the
// spec alone; Name gives it the name it has for a given preset.
type Object struct {
	Role ObjectRole
	// Secret says it is a Secret (Vault values, and Consul values marked
	// secret), not a ConfigMap.
	Secret bool
	// Volume is the volume's name, for RoleVolume.
	Volume string
	Items  []Item
}

// Name is the object's name for the preset named preset.
func (o *Object) Name(preset string) string {
	switch o.Role {
	case RoleEnvFrom:
		return EnvFromObjectName(preset, o.Items[0].Source)
	case RoleVolume:
		return VolumeObjectName(preset, o.Volume)
	}
	return ValuesObjectName(preset)
}

// Kind is Secret or ConfigMap.
func (o *Object) Kind() string {
	if o.Secret {
		return KindSecret
	}
	return KindConfigMap
}

// Kinds of materialised objects.
const (
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
)

// Object names. Single values share podpreset-<preset> (a ConfigMap for
// Consul, a Secret for Vault); envFrom and volume sources need an object of
// their own, as Kubernetes loads a whole object into env or a volume.

// ValuesObjectName is the ConfigMap and the Secret that hold a preset's
// single values (env valueFrom).
func ValuesObjectName(preset string) string { return "podpreset-" + preset }

// EnvFromObjectName is the object that holds an envFrom source's values.
func EnvFromObjectName(preset string, s Source) string {
	h := fnv.New32a()
	h.Write([]byte(s.ID()))
	return fmt.Sprintf("podpreset-%s-env-%08x", preset, h.Sum32())
}

// VolumeObjectName is the object that holds a volume's files.
func VolumeObjectName(preset, volume string) string {
	return "podpreset-" + preset + "-vol-" + volume
}

// ConsulDataKey is the key a single Consul key is stored under in the
// preset's ConfigMap: the Consul key with / replaced by ., so apps/shop/host
// becomes apps.shop.host.
func ConsulDataKey(key string) string { return strings.ReplaceAll(strings.Trim(key, "/"), "/", ".") }

// VaultDataKey is the key a single Vault field is stored under in the
// preset's Secret: path.field, with / replaced by . in the path.
func VaultDataKey(path, fieldName string) string {
	return strings.ReplaceAll(strings.Trim(path, "/"), "/", ".") + "." + fieldName
}

// EnvName is the environment variable a key under a prefix (or a field of
// a secret) becomes: every character that is not an ASCII letter, digit or
// _ replaced by _, and a leading digit prefixed with _.
func EnvName(rel string) string {
	b := []byte(rel)
	for i, c := range b {
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		return "_" + string(b)
	}
	return string(b)
}

// FileName is the file a key under a prefix (or a field) becomes in a
// volume: / replaced by _. ok is false when the result is still not a
// valid ConfigMap or Secret key ([-._a-zA-Z0-9]+, at most 253 bytes).
func FileName(rel string) (name string, ok bool) {
	name = strings.ReplaceAll(rel, "/", "_")
	return name, len(validation.IsConfigMapKey(name)) == 0
}

// SourcePlan lists the objects the sources controller writes for a preset,
// and what goes into each: the values object(s) first (ConfigMap, then
// Secret), then one per envFrom source and one per volume source, in spec
// order. It is empty for a preset without Consul or Vault sources.
func SourcePlan(spec *v1alpha1.PodPresetSpec) []Object {
	var cm, sec *Object
	var out []Object
	p := field.NewPath("spec")
	for i := range spec.Env {
		e := &spec.Env[i]
		if e.ValueFrom == nil {
			continue
		}
		fp := p.Child("env").Index(i).Child("valueFrom")
		var it Item
		var secret bool
		switch {
		case e.ValueFrom.ConsulKV != nil:
			c := e.ValueFrom.ConsulKV
			it = Item{Field: fp.Child("consulKV").String(), Source: Source{Kind: SourceConsulKey, Path: c.Key},
				DataKey: ConsulDataKey(c.Key), Layout: LayoutKey, Optional: isTrue(c.Optional)}
			secret = isTrue(c.Secret)
		case e.ValueFrom.Vault != nil:
			v := e.ValueFrom.Vault
			it = Item{Field: fp.Child("vault").String(), Source: Source{Kind: SourceVault, Path: v.Path},
				VaultField: v.Field, DataKey: VaultDataKey(v.Path, v.Field), Layout: LayoutKey, Optional: isTrue(v.Optional)}
			secret = true
		default:
			continue
		}
		obj := &cm
		if secret {
			obj = &sec
		}
		if *obj == nil {
			*obj = &Object{Role: RoleValues, Secret: secret}
		}
		(*obj).Items = append((*obj).Items, it)
	}
	if cm != nil {
		out = append(out, *cm)
	}
	if sec != nil {
		out = append(out, *sec)
	}
	for i := range spec.EnvFrom {
		e := &spec.EnvFrom[i]
		fp := p.Child("envFrom").Index(i)
		if c := e.ConsulKV; c != nil {
			out = append(out, Object{Role: RoleEnvFrom, Secret: isTrue(c.Secret), Items: []Item{{Field: fp.Child("consulKV").String(),
				Source: Source{Kind: SourceConsulPrefix, Path: c.Prefix}, Layout: LayoutEnv, Optional: isTrue(c.Optional)}}})
		}
		if v := e.Vault; v != nil {
			out = append(out, Object{Role: RoleEnvFrom, Secret: true, Items: []Item{{Field: fp.Child("vault").String(),
				Source: Source{Kind: SourceVault, Path: v.Path}, Layout: LayoutEnv, Optional: isTrue(v.Optional)}}})
		}
	}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		fp := p.Child("volumes").Index(i)
		switch {
		case v.ConsulKV != nil:
			out = append(out, Object{Role: RoleVolume, Volume: v.Name, Secret: isTrue(v.ConsulKV.Secret), Items: []Item{{Field: fp.Child("consulKV").String(),
				Source: Source{Kind: SourceConsulPrefix, Path: v.ConsulKV.Prefix}, Layout: LayoutFiles, Optional: isTrue(v.ConsulKV.Optional)}}})
		case v.Vault != nil:
			out = append(out, Object{Role: RoleVolume, Volume: v.Name, Secret: true, Items: []Item{{Field: fp.Child("vault").String(),
				Source: Source{Kind: SourceVault, Path: v.Vault.Path}, Layout: LayoutFiles, Optional: isTrue(v.Vault.Optional)}}})
		case v.VaultPKI != nil:
			out = append(out, Object{Role: RoleVolume, Volume: v.Name, Secret: true, Items: []Item{{Field: fp.Child("vaultPKI").String(),
				Source: PKISource(v.VaultPKI), Layout: LayoutTLS}}})
		}
	}
	return out
}

// PKISource is the source of a vaultPKI volume: <mount>/issue/<role>.
func PKISource(k *v1alpha1.VaultPKISource) Source {
	return Source{Kind: SourceVaultPKI, Path: strings.Trim(k.Mount, "/") + "/issue/" + k.Role, PKI: k}
}

func isTrue(b *bool) bool { return b != nil && *b }

// HasSources says whether a preset reads Consul or Vault.
func HasSources(spec *v1alpha1.PodPresetSpec) bool {
	for i := range spec.Env {
		if v := spec.Env[i].ValueFrom; v != nil && (v.ConsulKV != nil || v.Vault != nil) {
			return true
		}
	}
	for i := range spec.EnvFrom {
		if spec.EnvFrom[i].ConsulKV != nil || spec.EnvFrom[i].Vault != nil {
			return true
		}
	}
	for i := range spec.Volumes {
		if v := &spec.Volumes[i]; v.ConsulKV != nil || v.Vault != nil || v.VaultPKI != nil {
			return true
		}
	}
	return false
}

// coreEnv is an env entry with its source rewritten into the native
// reference to the materialised object.
func coreEnv(preset string, e *v1alpha1.EnvVar) corev1.EnvVar {
	out := e.Core()
	if e.ValueFrom == nil {
		return out
	}
	name := corev1.LocalObjectReference{Name: ValuesObjectName(preset)}
	switch c, v := e.ValueFrom.ConsulKV, e.ValueFrom.Vault; {
	case c != nil && isTrue(c.Secret):
		out.ValueFrom = &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: name, Key: ConsulDataKey(c.Key), Optional: copyBool(c.Optional)}}
	case c != nil:
		out.ValueFrom = &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: name, Key: ConsulDataKey(c.Key), Optional: copyBool(c.Optional)}}
	case v != nil:
		out.ValueFrom = &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: name, Key: VaultDataKey(v.Path, v.Field), Optional: copyBool(v.Optional)}}
	}
	return out
}

func coreEnvFrom(preset string, e *v1alpha1.EnvFromSource) corev1.EnvFromSource {
	out := e.Core()
	switch c, v := e.ConsulKV, e.Vault; {
	case c != nil:
		name := corev1.LocalObjectReference{Name: EnvFromObjectName(preset, Source{Kind: SourceConsulPrefix, Path: c.Prefix})}
		if isTrue(c.Secret) {
			out.SecretRef = &corev1.SecretEnvSource{LocalObjectReference: name, Optional: copyBool(c.Optional)}
		} else {
			out.ConfigMapRef = &corev1.ConfigMapEnvSource{LocalObjectReference: name, Optional: copyBool(c.Optional)}
		}
	case v != nil:
		out.SecretRef = &corev1.SecretEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: EnvFromObjectName(preset, Source{Kind: SourceVault, Path: v.Path})},
			Optional:             copyBool(v.Optional)}
	}
	return out
}

func coreVolume(preset string, v *v1alpha1.Volume) corev1.Volume {
	out := v.Core()
	obj := VolumeObjectName(preset, v.Name)
	switch {
	case v.ConsulKV != nil && isTrue(v.ConsulKV.Secret):
		out.Secret = &corev1.SecretVolumeSource{SecretName: obj, Optional: copyBool(v.ConsulKV.Optional)}
	case v.ConsulKV != nil:
		out.ConfigMap = &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: obj}, Optional: copyBool(v.ConsulKV.Optional)}
	case v.Vault != nil:
		out.Secret = &corev1.SecretVolumeSource{SecretName: obj, Optional: copyBool(v.Vault.Optional)}
	case v.VaultPKI != nil:
		out.Secret = &corev1.SecretVolumeSource{SecretName: obj}
	}
	return out
}

func copyBool(b *bool) *bool {
	if b == nil {
		return nil
	}
	v := *b
	return &v
}

// sourceVersions renders the versions a preset's status reports for its
// sources, sorted, for the sources hash; empty when it reports none.
func sourceVersions(spec *v1alpha1.PodPresetSpec, status *v1alpha1.PodPresetStatus) string {
	if len(status.Sources) == 0 || !HasSources(spec) {
		return ""
	}
	var vs []string
	for _, s := range status.Sources {
		if s.Version != "" {
			vs = append(vs, s.Source+"@"+s.Version)
		}
	}
	slices.Sort(vs)
	return strings.Join(vs, "\n")
}

// sourcesHash hashes the source versions of the presets applied to a pod;
// empty (and free) when none reports any.
func sourcesHash(presets []*Preset) string {
	if !slices.ContainsFunc(presets, func(p *Preset) bool { return p.sourceVersions != "" }) {
		return ""
	}
	h := sha256.New()
	for _, p := range presets {
		if p.sourceVersions != "" {
			fmt.Fprintf(h, "%s/%s/%s\n%s\n", p.ref.Kind, p.ref.Namespace, p.ref.Name, p.sourceVersions)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}
