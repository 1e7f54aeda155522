package presets

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// sameArray says whether two lists are one: the same backing array and
// length.
func sameArray[T any](a, b []T) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// TestContainersShareListsThatComeOutTheSame: containers whose final
// envFrom or mounts are equal get one list between them; a container whose
// own entries differ in any field, or that a preset does not target, gets
// its own; and the lists are what each container should have.
func TestContainersShareListsThatComeOutTheSame(t *testing.T) {
	prop := corev1.MountPropagationHostToContainer
	data := mount("data", "/data")
	dataProp := data
	dataProp.MountPropagation = &prop
	pod := testPod(withContainer("b"), withContainer("c"), withContainer("d"), withContainer("e"),
		withMount("app", data), withMount("b", data), withMount("c", dataProp), withMount("d", data), withMount("e", data),
		withEnv("app", env("OWN", "1")), withEnv("b", env("OWN", "1")), withEnv("c", env("OWN", "2")))
	set := mustSet(t,
		testPP("p", injectEnv(env("A", "a")), injectEnvFrom(cmEnvFrom("cm", "")), injectMount(mount("cfg", "/etc/cfg"))),
		testPP("q", targeting("app", "b", "c", "d"), injectMount(mount("more", "/etc/more"))))
	res := Apply(pod, defaultNS, set)
	if !res.Changed || len(res.Conflicts) != 0 {
		t.Fatalf("Changed %v, conflicts %v", res.Changed, res.Conflicts)
	}
	c := func(name string) *corev1.Container { return container(res.Pod, name) }
	for _, tc := range []struct {
		what   string
		got    bool
		shared bool
	}{
		{"app and b: envFrom, no own entries", sameArray(c("app").EnvFrom, c("b").EnvFrom), true},
		{"app and e: envFrom", sameArray(c("app").EnvFrom, c("e").EnvFrom), true},
		{"app and b: mounts, own equal", sameArray(c("app").VolumeMounts, c("b").VolumeMounts), true},
		{"app and d: mounts", sameArray(c("app").VolumeMounts, c("d").VolumeMounts), true},
		{"app and c: mounts, own mountPropagation differs", sameArray(c("app").VolumeMounts, c("c").VolumeMounts), false},
		{"app and e: mounts, e not targeted by q", sameArray(c("app").VolumeMounts, c("e").VolumeMounts), false},
		{"app and b: env, own equal", sameArray(c("app").Env, c("b").Env), true},
		{"app and c: env, own value differs", sameArray(c("app").Env, c("c").Env), false},
		{"app and d: env, d has no own", sameArray(c("app").Env, c("d").Env), false},
		{"d and e: env, neither has own", sameArray(c("d").Env, c("e").Env), true},
	} {
		if tc.got != tc.shared {
			t.Errorf("%s: shared %v, want %v", tc.what, tc.got, tc.shared)
		}
	}
	want := map[string][]corev1.VolumeMount{
		"app": {data, mount("cfg", "/etc/cfg"), mount("more", "/etc/more")},
		"c":   {dataProp, mount("cfg", "/etc/cfg"), mount("more", "/etc/more")},
		"e":   {data, mount("cfg", "/etc/cfg")},
	}
	for name, w := range want {
		if diff := cmp.Diff(w, c(name).VolumeMounts); diff != "" {
			t.Errorf("%s: mounts (-want +got):\n%s", name, diff)
		}
	}
	if diff := cmp.Diff([]corev1.EnvVar{env("A", "a"), env("OWN", "2")}, c("c").Env); diff != "" {
		t.Errorf("c: env (-want +got):\n%s", diff)
	}
	// The input keeps its own lists.
	if got := container(pod, "c").VolumeMounts; len(got) != 1 || got[0].MountPropagation == nil {
		t.Errorf("the input's mounts changed: %v", got)
	}
}

// TestSameMountKnowsEveryField: two mounts that differ in any one field of
// corev1.VolumeMount are not the same, so that a field a Kubernetes
// release adds cannot make two containers share a list they must not.
func TestSameMountKnowsEveryField(t *testing.T) {
	typ := reflect.TypeFor[corev1.VolumeMount]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		var a, b corev1.VolumeMount
		v := reflect.ValueOf(&b).Elem().Field(i)
		switch f.Type.Kind() {
		case reflect.String:
			v.SetString("x")
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Pointer:
			v.Set(reflect.New(f.Type.Elem()))
		case reflect.Slice:
			v.Set(reflect.MakeSlice(f.Type, 1, 1))
		default:
			t.Fatalf("VolumeMount.%s is a %s: teach sameMount and this test about it", f.Name, f.Type)
		}
		if sameMount(&a, &b) {
			t.Errorf("mounts differing in %s are the same to sameMount", f.Name)
		}
		if !sameMount(&a, &a) {
			t.Errorf("a mount is not the same as itself")
		}
	}
}
