package node

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podpreset/podpreset/test/cluster"
)

// reportPod is a pod of the report workload, reporting the given paths.
func reportPod(name, ns string, labels map[string]string, paths ...string) *corev1.Pod {
	args := []string{"--interval=1s", "--mounts"}
	for _, p := range paths {
		args = append(args, "--path="+p)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			Containers:                    []corev1.Container{{Name: "app", Image: cluster.ReportImage, Args: args}},
		},
	}
}

// report waits until a container has printed a whole report and returns
// its last one, as lines ("env NAME=\"value\"", "file PATH ...", "tls ...").
func report(t *testing.T, ns, pod, container string, ok func(lines []string) error) []string {
	t.Helper()
	var last []string
	eventually(t, 30*time.Second, func() error {
		var p corev1.Pod
		if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: pod}, &p); err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("pod %s/%s is %s: %+v", ns, pod, p.Status.Phase, p.Status.ContainerStatuses)
		}
		out, err := cp.PodLogs(t.Context(), ns, pod, container)
		if err != nil {
			return err
		}
		last = lastReport(out)
		if last == nil {
			return fmt.Errorf("no whole report from %s/%s yet", pod, container)
		}
		return ok(last)
	})
	return last
}

// lastReport cuts the last whole report out of a container's output.
func lastReport(out string) []string {
	lines := strings.Split(out, "\n")
	end := -1
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "report end ") && end < 0 {
			end = i
		}
		if end >= 0 && strings.HasPrefix(lines[i], "report begin ") {
			return lines[i+1 : end]
		}
	}
	return nil
}

// envOf is the report's environment.
func envOf(lines []string) map[string]string {
	out := map[string]string{}
	for _, l := range lines {
		if kv, ok := strings.CutPrefix(l, "env "); ok {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}

func TestAPodRunsAndReports(t *testing.T) {
	ns := namespace(t, nil)
	pod := reportPod("hello", ns, nil)
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "GREETING", Value: "hello"}}
	if err := k8s.Create(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	report(t, ns, "hello", "app", func(lines []string) error {
		if envOf(lines)["GREETING"] != "hello" {
			return fmt.Errorf("env %v", envOf(lines))
		}
		return nil
	})
}
