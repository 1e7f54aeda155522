package main

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// podOf returns the pod a workload creates (the pod itself, or its pod
// template as a pod) and the JSON pointer of that pod in the workload's
// document. ok is false for objects that are not workloads.
func podOf(obj runtime.Object) (pod *corev1.Pod, prefix string, ok bool) {
	var tpl *corev1.PodTemplateSpec
	prefix = "/spec/template"
	switch o := obj.(type) {
	case *corev1.Pod:
		return o, "", true
	case *corev1.PodTemplate:
		tpl, prefix = &o.Template, "/template"
	case *corev1.ReplicationController:
		if o.Spec.Template == nil {
			return nil, "", false
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
		tpl, prefix = &o.Spec.JobTemplate.Spec.Template, "/spec/jobTemplate/spec/template"
	default:
		return nil, "", false
	}
	return &corev1.Pod{ObjectMeta: tpl.ObjectMeta, Spec: tpl.Spec}, prefix, true
}
