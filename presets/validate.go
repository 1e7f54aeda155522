package presets

import (
	"fmt"
	"reflect"
	"strings"

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
	return ValidateSpec(&pp.Spec, field.NewPath("spec"))
}

// ValidateClusterPodPreset checks a ClusterPodPreset, namespace selector
// included.
func ValidateClusterPodPreset(cpp *v1alpha1.ClusterPodPreset) field.ErrorList {
	p := field.NewPath("spec")
	errs := metav1validation.ValidateLabelSelector(&cpp.Spec.NamespaceSelector, metav1validation.LabelSelectorValidationOptions{}, p.Child("namespaceSelector"))
	return append(errs, ValidateSpec(&cpp.Spec.PodPresetSpec, p)...)
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
		if n := countSources(&v.VolumeSource); n != 1 {
			errs = append(errs, field.Invalid(vp, v.Name, "a volume must have exactly one source (emptyDir, configMap, secret, ...)"))
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
	return errs
}

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
	core := make([]corev1.EnvVar, len(env))
	for i := range env {
		core[i] = env[i].Core()
	}
	return validateCoreEnv(core, p)
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
		e := envFrom[i].Core()
		ep := p.Index(i)
		switch {
		case e.ConfigMapRef != nil && e.SecretRef != nil:
			errs = append(errs, field.Invalid(ep, "", "may not set both configMapRef and secretRef"))
		case e.ConfigMapRef == nil && e.SecretRef == nil:
			errs = append(errs, field.Required(ep, "must set configMapRef or secretRef"))
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
