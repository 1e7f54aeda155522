package v1alpha1

import corev1 "k8s.io/api/core/v1"

// Core returns a deep copy of this entry as the core EnvVar it stands for.
func (e *EnvVar) Core() corev1.EnvVar {
	out := corev1.EnvVar{Name: e.Name, Value: e.Value}
	if e.ValueFrom != nil {
		out.ValueFrom = e.ValueFrom.EnvVarSource.DeepCopy()
	}
	return out
}

// Core returns a deep copy of this entry as the core EnvFromSource it stands
// for.
func (e *EnvFromSource) Core() corev1.EnvFromSource { return *e.EnvFromSource.DeepCopy() }

// Core returns a deep copy of this entry as the core Volume it stands for.
func (v *Volume) Core() corev1.Volume { return *v.Volume.DeepCopy() }
