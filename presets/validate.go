package presets

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// ValidatePodPreset checks a PodPreset the way the CRD and the validating
// webhook do, naming each field that is wrong.
func ValidatePodPreset(pp *v1alpha1.PodPreset) field.ErrorList {
	return append(ValidateSpec(&pp.Spec, field.NewPath("spec")), validateObjectNames(pp.Name, &pp.Spec)...)
}

// ValidateClusterPodPreset checks a ClusterPodPreset, namespace selector
// included.
func ValidateClusterPodPreset(cpp *v1alpha1.ClusterPodPreset) field.ErrorList {
	p := field.NewPath("spec")
	errs := metav1validation.ValidateLabelSelector(&cpp.Spec.NamespaceSelector, metav1validation.LabelSelectorValidationOptions{}, p.Child("namespaceSelector"))
	errs = append(errs, ValidateSpec(&cpp.Spec.PodPresetSpec, p)...)
	return append(errs, validateObjectNames(cpp.Name, &cpp.Spec.PodPresetSpec)...)
}

// validateObjectNames checks that the names of the objects the sources
// controller would write are valid: a long preset name can make them too
// long.
func validateObjectNames(name string, spec *v1alpha1.PodPresetSpec) field.ErrorList {
	var errs field.ErrorList
	seen := sets.New[string]()
	for _, o := range SourcePlan(spec) {
		objName := o.Name(name)
		if seen.Has(objName) {
			continue
		}
		seen.Insert(objName)
		for _, msg := range validation.IsDNS1123Subdomain(objName) {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), name,
				fmt.Sprintf("%s needs an object named %q: %s; use a shorter preset name", o.Items[0].Field, objName, msg)))
		}
	}
	return errs
}

// ValidateSpec checks what a preset injects: the selector parses, something
// is injected, keys are unique and well formed, and each entry is one that
// Kubernetes would accept in a pod. It does not repeat all of the API
// server's pod validation: a pod the presets make invalid is still rejected
// by the API server when it is created.
func ValidateSpec(spec *v1alpha1.PodPresetSpec, p *field.Path) field.ErrorList {
	errs := metav1validation.ValidateLabelSelector(&spec.Selector, metav1validation.LabelSelectorValidationOptions{}, p.Child("selector"))
	if len(spec.Env)+len(spec.EnvFrom)+len(spec.Volumes)+len(spec.VolumeMounts)+len(spec.InitContainers)+len(spec.ImagePullSecrets)+len(spec.Annotations) == 0 {
		errs = append(errs, field.Required(p, "spec must inject something: set at least one of env, envFrom, volumes, volumeMounts, initContainers, imagePullSecrets or annotations"))
	}
	for i, name := range spec.Containers {
		if name == "" {
			errs = append(errs, field.Required(p.Child("containers").Index(i), "container name must not be empty"))
		}
	}
	errs = append(errs, validateEnv(spec.Env, p.Child("env"))...)
	errs = append(errs, validateEnvFrom(spec.EnvFrom, p.Child("envFrom"))...)
	vols := sets.New[string]()
	for i, v := range spec.Volumes {
		vp := p.Child("volumes").Index(i)
		errs = append(errs, dnsLabel(v.Name, vp.Child("name"))...)
		if vols.Has(v.Name) {
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		}
		vols.Insert(v.Name)
		if n := countSources(&v.VolumeSource) + count(v.ConsulKV != nil, v.Vault != nil, v.VaultPKI != nil); n != 1 {
			errs = append(errs, field.Invalid(vp, v.Name, "a volume must have exactly one source (emptyDir, configMap, secret, consulKV, vault, vaultPKI, ...)"))
		}
		switch {
		case v.ConsulKV != nil:
			errs = append(errs, ValidateConsulPrefix(v.ConsulKV.Prefix, vp.Child("consulKV", "prefix"))...)
		case v.Vault != nil:
			errs = append(errs, ValidateVaultPath(v.Vault.Path, vp.Child("vault", "path"))...)
		case v.VaultPKI != nil:
			errs = append(errs, validatePKI(v.VaultPKI, vp.Child("vaultPKI"))...)
		}
	}
	errs = append(errs, validateMounts(spec.VolumeMounts, p.Child("volumeMounts"))...)
	inits := sets.New[string]()
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		cp := p.Child("initContainers").Index(i)
		errs = append(errs, dnsLabel(c.Name, cp.Child("name"))...)
		if inits.Has(c.Name) {
			errs = append(errs, field.Duplicate(cp.Child("name"), c.Name))
		}
		inits.Insert(c.Name)
		if c.Image == "" {
			errs = append(errs, field.Required(cp.Child("image"), "an init container needs an image"))
		}
		errs = append(errs, validateCoreEnv(c.Env, cp.Child("env"))...)
		errs = append(errs, validateMounts(c.VolumeMounts, cp.Child("volumeMounts"))...)
	}
	for i, s := range spec.ImagePullSecrets {
		if s.Name == "" {
			errs = append(errs, field.Required(p.Child("imagePullSecrets").Index(i).Child("name"), "image pull secret name must not be empty"))
		}
	}
	ap := p.Child("annotations")
	errs = append(errs, apivalidation.ValidateAnnotations(spec.Annotations, ap)...)
	for k := range spec.Annotations {
		if strings.HasPrefix(k, "podpreset.dev/") {
			errs = append(errs, field.Invalid(ap.Key(k), k, "annotations under podpreset.dev/ are written by podpreset itself"))
		}
	}
	if r := spec.Rollout; r != nil && r.MinInterval != nil && r.MinInterval.Duration < MinRolloutInterval {
		errs = append(errs, field.Invalid(p.Child("rollout", "minInterval"), r.MinInterval.Duration.String(),
			"must be at least "+MinRolloutInterval.String()+": restarts are paced so that a preset cannot churn its workloads"))
	}
	return errs
}

// Rollout pacing: the least and the default time between two restarts for
// one preset.
const (
	MinRolloutInterval     = 10 * time.Second
	DefaultRolloutInterval = 30 * time.Second
)

func dnsLabel(name string, p *field.Path) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(p, "name must not be empty")}
	}
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(name) {
		errs = append(errs, field.Invalid(p, name, msg))
	}
	return errs
}

func validateEnv(env []v1alpha1.EnvVar, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	core := make([]corev1.EnvVar, len(env))
	dataKeys := map[string]string{} // kind and data key in podpreset-<preset> -> field
	for i := range env {
		e := &env[i]
		core[i] = coreEnv("preset", e)
		if e.ValueFrom == nil || (e.ValueFrom.ConsulKV == nil && e.ValueFrom.Vault == nil) {
			continue
		}
		vp := p.Index(i).Child("valueFrom")
		s := &e.ValueFrom.EnvVarSource
		if count(e.ValueFrom.ConsulKV != nil, e.ValueFrom.Vault != nil, s.FieldRef != nil, s.ResourceFieldRef != nil, s.ConfigMapKeyRef != nil, s.SecretKeyRef != nil, s.FileKeyRef != nil) != 1 {
			errs = append(errs, field.Invalid(vp, "", "must set exactly one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef, fileKeyRef, consulKV or vault"))
			continue
		}
		var key string
		var kp *field.Path
		if c := e.ValueFrom.ConsulKV; c != nil {
			kp = vp.Child("consulKV", "key")
			errs = append(errs, ValidateConsulKey(c.Key, kp)...)
			key = KindConfigMap + " " + ConsulDataKey(c.Key)
			if isTrue(c.Secret) {
				key = KindSecret + " " + ConsulDataKey(c.Key)
			}
			for _, msg := range validation.IsConfigMapKey(ConsulDataKey(c.Key)) {
				errs = append(errs, field.Invalid(kp, c.Key, "with / replaced by . the key must be a valid ConfigMap key: "+msg))
			}
		} else {
			v := e.ValueFrom.Vault
			kp = vp.Child("vault")
			errs = append(errs, ValidateVaultPath(v.Path, kp.Child("path"))...)
			if v.Field == "" {
				errs = append(errs, field.Required(kp.Child("field"), "the secret's field to read"))
			}
			key = KindSecret + " " + VaultDataKey(v.Path, v.Field)
			for _, msg := range validation.IsConfigMapKey(VaultDataKey(v.Path, v.Field)) {
				errs = append(errs, field.Invalid(kp, v.Path+"#"+v.Field, "path.field, with / replaced by ., must be a valid Secret key: "+msg))
			}
		}
		if other, ok := dataKeys[key]; ok {
			errs = append(errs, field.Duplicate(kp, fmt.Sprintf("%s (stored under the same key as %s)", key, other)))
		}
		dataKeys[key] = kp.String()
	}
	return append(errs, validateCoreEnv(core, p)...)
}

func count(set ...bool) int {
	n := 0
	for _, b := range set {
		if b {
			n++
		}
	}
	return n
}

// ValidateConsulKey checks a Consul KV key by the rules of Vault paths, so
// that no key can step out of the prefix that tenancy allows: no leading or
// trailing /, no empty, . or .. segment (Consul's HTTP server answers
// apps/a/../b with a redirect to apps/b, which clients follow), no %, ?, #
// or \ (encoded or query characters), no control characters.
func ValidateConsulKey(key string, p *field.Path) field.ErrorList {
	return validatePath(key, p, pathRules{what: "a Consul key", forbidden: `%?#\`})
}

// ValidateConsulPrefix checks a Consul KV prefix: as ValidateConsulKey,
// but a trailing / (a folder) is allowed.
func ValidateConsulPrefix(prefix string, p *field.Path) field.ErrorList {
	return validatePath(prefix, p, pathRules{what: "a Consul prefix", folder: true, forbidden: `%?#\`})
}

// ValidateVaultPath checks a Vault API path: no leading or trailing /, no
// empty, . or .. segment (so that a tenancy prefix cannot be escaped), no
// query, glob or encoded characters, no control characters.
func ValidateVaultPath(path string, p *field.Path) field.ErrorList {
	return validatePath(path, p, pathRules{what: "a Vault path", forbidden: `?#%*+ \`})
}

// pathRules are the rules of one kind of path.
type pathRules struct {
	what string
	// folder allows a trailing / (a Consul prefix that names a folder).
	folder bool
	// forbidden are characters the path may not contain.
	forbidden string
}

// validatePath checks a path segment by segment.
func validatePath(path string, p *field.Path, r pathRules) field.ErrorList {
	if path == "" {
		return field.ErrorList{field.Required(p, r.what+" must not be empty")}
	}
	trimmed := path
	if r.folder {
		trimmed = strings.TrimSuffix(path, "/")
	}
	for _, seg := range strings.Split(trimmed, "/") {
		if seg == "" || seg == "." || seg == ".." {
			end := "start or end with /"
			if r.folder {
				end = "start with /"
			}
			return field.ErrorList{field.Invalid(p, path, r.what+" must not "+end+", or have an empty, . or .. segment")}
		}
	}
	if i := strings.IndexAny(path, r.forbidden); i >= 0 {
		return field.ErrorList{field.Invalid(p, path, fmt.Sprintf("%s must not contain %q (it may not contain any of %s)", r.what, path[i], quoteChars(r.forbidden)))}
	}
	if strings.ContainsFunc(path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return field.ErrorList{field.Invalid(p, path, r.what+" must not contain control characters")}
	}
	return nil
}

func quoteChars(chars string) string {
	out := make([]string, 0, len(chars))
	for _, c := range chars {
		out = append(out, strconv.QuoteRune(c))
	}
	return strings.Join(out, " ")
}

func validatePKI(k *v1alpha1.VaultPKISource, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, ValidateVaultPath(k.Mount, p.Child("mount"))...)
	if k.Role == "" {
		errs = append(errs, field.Required(p.Child("role"), "the PKI role that issues the certificate"))
	} else if strings.Contains(k.Role, "/") {
		errs = append(errs, field.Invalid(p.Child("role"), k.Role, "a role name has no /"))
	}
	if k.CommonName == "" {
		errs = append(errs, field.Required(p.Child("commonName"), "the certificate's common name"))
	}
	for i, n := range k.AltNames {
		if n == "" {
			errs = append(errs, field.Required(p.Child("altNames").Index(i), "an alt name must not be empty"))
		}
	}
	if k.TTL != nil && k.TTL.Duration <= 0 {
		errs = append(errs, field.Invalid(p.Child("ttl"), k.TTL.Duration.String(), "must be positive"))
	}
	return errs
}

func validateCoreEnv(env []corev1.EnvVar, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, e := range env {
		ep := p.Index(i)
		if e.Name == "" {
			errs = append(errs, field.Required(ep.Child("name"), "env var name must not be empty"))
		} else {
			for _, msg := range validation.IsEnvVarName(e.Name) {
				errs = append(errs, field.Invalid(ep.Child("name"), e.Name, msg))
			}
		}
		if names.Has(e.Name) {
			errs = append(errs, field.Duplicate(ep.Child("name"), e.Name))
		}
		names.Insert(e.Name)
		if e.ValueFrom != nil {
			if e.Value != "" {
				errs = append(errs, field.Invalid(ep.Child("valueFrom"), "", "may not be set when value is not empty"))
			}
			s := e.ValueFrom
			n := 0
			for _, set := range []bool{s.FieldRef != nil, s.ResourceFieldRef != nil, s.ConfigMapKeyRef != nil, s.SecretKeyRef != nil, s.FileKeyRef != nil} {
				if set {
					n++
				}
			}
			if n != 1 {
				errs = append(errs, field.Invalid(ep.Child("valueFrom"), "", "must set exactly one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef or fileKeyRef"))
			}
		}
	}
	return errs
}

func validateEnvFrom(envFrom []v1alpha1.EnvFromSource, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	keys := sets.New[string]()
	for i := range envFrom {
		src := &envFrom[i]
		e := coreEnvFrom("preset", src)
		ep := p.Index(i)
		if src.ConsulKV != nil || src.Vault != nil {
			if count(src.ConsulKV != nil, src.Vault != nil, src.ConfigMapRef != nil, src.SecretRef != nil) != 1 {
				errs = append(errs, field.Invalid(ep, "", "must set exactly one of configMapRef, secretRef, consulKV or vault"))
				continue
			}
			if src.ConsulKV != nil {
				errs = append(errs, ValidateConsulPrefix(src.ConsulKV.Prefix, ep.Child("consulKV", "prefix"))...)
			} else {
				errs = append(errs, ValidateVaultPath(src.Vault.Path, ep.Child("vault", "path"))...)
			}
		}
		switch {
		case e.ConfigMapRef != nil && e.SecretRef != nil:
			errs = append(errs, field.Invalid(ep, "", "may not set both configMapRef and secretRef"))
		case e.ConfigMapRef == nil && e.SecretRef == nil:
			errs = append(errs, field.Required(ep, "must set configMapRef, secretRef, consulKV or vault"))
		case e.ConfigMapRef != nil && e.ConfigMapRef.Name == "":
			errs = append(errs, field.Required(ep.Child("configMapRef", "name"), "ConfigMap name must not be empty"))
		case e.SecretRef != nil && e.SecretRef.Name == "":
			errs = append(errs, field.Required(ep.Child("secretRef", "name"), "Secret name must not be empty"))
		}
		if k := envFromKey(&e); keys.Has(k) {
			errs = append(errs, field.Duplicate(ep, k))
		} else {
			keys.Insert(k)
		}
	}
	return errs
}

func validateMounts(mounts []corev1.VolumeMount, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	paths := sets.New[string]()
	for i, m := range mounts {
		mp := p.Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(mp.Child("name"), "volume name must not be empty"))
		}
		if m.MountPath == "" {
			errs = append(errs, field.Required(mp.Child("mountPath"), "mount path must not be empty"))
		}
		if paths.Has(m.MountPath) {
			errs = append(errs, field.Duplicate(mp.Child("mountPath"), m.MountPath))
		}
		paths.Insert(m.MountPath)
	}
	return errs
}

// countSources counts the volume sources set in a VolumeSource. Every
// field of VolumeSource is a pointer to one source, so counting the non-nil
// ones keeps up with sources that later Kubernetes versions add.
func countSources(vs *corev1.VolumeSource) int {
	v := reflect.ValueOf(vs).Elem()
	n := 0
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
		}
	}
	return n
}

// Advise returns advice on a valid preset that is not an error: things that
// work but are probably not what was meant. The validating webhook returns
// it as warnings.
func Advise(spec *v1alpha1.PodPresetSpec, p *field.Path) []string {
	var out []string
	if len(spec.Containers) > 0 && len(spec.Env)+len(spec.EnvFrom)+len(spec.VolumeMounts) == 0 {
		out = append(out, p.Child("containers").String()+": has no effect, as the preset injects no env, envFrom or volumeMounts")
	}
	vols := sets.New[string]()
	for _, v := range spec.Volumes {
		vols.Insert(v.Name)
	}
	for i, m := range spec.VolumeMounts {
		if !vols.Has(m.Name) {
			out = append(out, fmt.Sprintf("%s: volume %q is not in %s: pods must define it themselves, or they will be rejected",
				p.Child("volumeMounts").Index(i).Child("name"), m.Name, p.Child("volumes")))
		}
	}
	return out
}
