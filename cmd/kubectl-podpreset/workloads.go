package main

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// podOf returns the pod a workload creates (the pod itself, or its pod
// template as a pod), and a function that writes a mutated pod back into
// the workload. ok is false for objects that are not workloads.
func podOf(obj runtime.Object) (pod *corev1.Pod, set func(*corev1.Pod), ok bool) {
	var tpl *corev1.PodTemplateSpec
	switch o := obj.(type) {
	case *corev1.Pod:
		return o, func(p *corev1.Pod) { *o = *p }, true
	case *corev1.PodTemplate:
		tpl = &o.Template
	case *corev1.ReplicationController:
		if o.Spec.Template == nil {
			return nil, nil, false
		}
		tpl = o.Spec.Template
	case *appsv1.Deployment:
		tpl = &o.Spec.Template
	case *appsv1.StatefulSet:
		tpl = &o.Spec.Template
	case *appsv1.DaemonSet:
		tpl = &o.Spec.Template
	case *appsv1.ReplicaSet:
		tpl = &o.Spec.Template
	case *batchv1.Job:
		tpl = &o.Spec.Template
	case *batchv1.CronJob:
		tpl = &o.Spec.JobTemplate.Spec.Template
	default:
		return nil, nil, false
	}
	pod = &corev1.Pod{ObjectMeta: tpl.ObjectMeta, Spec: tpl.Spec}
	return pod, func(p *corev1.Pod) {
		tpl.Annotations = p.Annotations
		tpl.Spec = p.Spec
	}, true
}
