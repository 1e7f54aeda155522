package presets

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
)

// wantConflict is the part of a Conflict a case asserts.
type wantConflict struct {
	Preset, Field, KeptFrom string
}

func summarize(cs []Conflict) []wantConflict {
	var out []wantConflict
	for _, c := range cs {
		out = append(out, wantConflict{Preset: c.Preset.String(), Field: c.Field, KeptFrom: c.KeptFrom})
	}
	return out
}

var defaultNS = Namespace{Name: "default", Labels: map[string]string{"kubernetes.io/metadata.name": "default"}}

// applyCase is one of the engine's table cases.
type applyCase struct {
	pod       *corev1.Pod
	ns        *Namespace // defaultNS when nil
	presets   []any
	want      *corev1.Pod
	conflicts []wantConflict
	skipped   SkipReason
}

// applyCases are the engine's table cases; TestEngineCasesFile exports
// them for the compiled policy's differential test.
func applyCases() map[string]applyCase {
	return map[string]applyCase{
		"env is added before the container's own": {
			pod:     testPod(withEnv("app", env("OWN", "1"))),
			presets: []any{testPP("p", injectEnv(env("A", "a"), env("B", "b")))},
			want:    testPod(withEnv("app", env("A", "a"), env("B", "b"), env("OWN", "1")), withApplied("PodPreset/p@1")),
		},
		"env the pod already has is kept and reported": {
			pod:       testPod(withEnv("app", env("A", "mine"))),
			presets:   []any{testPP("p", injectEnv(env("A", "a"), env("B", "b")))},
			want:      testPod(withEnv("app", env("B", "b"), env("A", "mine")), withApplied("PodPreset/p@1")),
			conflicts: []wantConflict{{"PodPreset/p@1", "spec.containers[name=app].env[name=A]", "pod"}},
		},
		"envFrom is added before the container's own": {
			pod:     testPod(withEnvFrom("app", cmEnvFrom("own", ""))),
			presets: []any{testPP("p", injectEnvFrom(cmEnvFrom("shared", "")))},
			want:    testPod(withEnvFrom("app", cmEnvFrom("shared", ""), cmEnvFrom("own", "")), withApplied("PodPreset/p@1")),
		},
		"envFrom with the same key but another optional is a conflict": {
			pod: testPod(withEnvFrom("app", cmEnvFrom("shared", "P_"))),
			presets: []any{testPP("p", injectEnvFrom(func() corev1.EnvFromSource {
				e := cmEnvFrom("shared", "P_")
				e.ConfigMapRef.Optional = new(true)
				return e
			}()))},
			want:      testPod(withEnvFrom("app", cmEnvFrom("shared", "P_")), withApplied("PodPreset/p@1")),
			conflicts: []wantConflict{{"PodPreset/p@1", "spec.containers[name=app].envFrom[configMapRef=shared,prefix=P_]", "pod"}},
		},
		"envFrom of the same ConfigMap with another prefix is another entry": {
			pod:     testPod(withEnvFrom("app", cmEnvFrom("shared", "A_"))),
			presets: []any{testPP("p", injectEnvFrom(cmEnvFrom("shared", "B_")))},
			want:    testPod(withEnvFrom("app", cmEnvFrom("shared", "B_"), cmEnvFrom("shared", "A_")), withApplied("PodPreset/p@1")),
		},
		"volumeMounts are added after the container's own": {
			pod:     testPod(withVolume(emptyDir("own")), withMount("app", mount("own", "/own"))),
			presets: []any{testPP("p", injectVolume(emptyDir("cache")), injectMount(mount("cache", "/cache")))},
			want: testPod(withVolume(emptyDir("own"), emptyDir("cache")), withMount("app", mount("own", "/own"), mount("cache", "/cache")),
				withApplied("PodPreset/p@1")),
		},
		"a mount at a path the pod uses is kept and reported": {
			pod:     testPod(withVolume(emptyDir("own")), withMount("app", mount("own", "/cache"))),
			presets: []any{testPP("p", injectVolume(emptyDir("cache")), injectMount(mount("cache", "/cache")))},
			want: testPod(withVolume(emptyDir("own"), emptyDir("cache")), withMount("app", mount("own", "/cache")),
				withApplied("PodPreset/p@1")),
			conflicts: []wantConflict{{"PodPreset/p@1", "spec.containers[name=app].volumeMounts[mountPath=/cache]", "pod"}},
		},
		"one volume mounted at two paths": {
			pod:     testPod(),
			presets: []any{testPP("p", injectVolume(emptyDir("cache")), injectMount(mount("cache", "/a"), mount("cache", "/b")))},
			want:    testPod(withVolume(emptyDir("cache")), withMount("app", mount("cache", "/a"), mount("cache", "/b")), withApplied("PodPreset/p@1")),
		},
		"a volume the pod has under that name is kept and reported": {
			pod:       testPod(withVolume(cmVolume("cfg", "mine"))),
			presets:   []any{testPP("p", injectVolume(cmVolume("cfg", "theirs")))},
			want:      testPod(withVolume(cmVolume("cfg", "mine")), withApplied("PodPreset/p@1")),
			conflicts: []wantConflict{{"PodPreset/p@1", "spec.volumes[name=cfg]", "pod"}},
		},
		"init containers go before the pod's own, in preset order": {
			pod: testPod(withInitContainer(initC("own"))),
			presets: []any{
				testPP("a", injectInit(initC("a1"), initC("a2"))),
				testPP("b", injectInit(initC("b1"))),
			},
			want: testPod(withInitContainer(initC("a1")), withInitContainer(initC("a2")), withInitContainer(initC("b1")),
				withInitContainer(initC("own")), withApplied("PodPreset/a@1,PodPreset/b@1")),
		},
		"an init container the pod has under that name is kept and reported": {
			pod:     testPod(withInitContainer(initC("setup"))),
			presets: []any{testPP("p", injectInit(initC("setup", func(c *corev1.Container) { c.Image = "other" })))},
			want:    testPod(withInitContainer(initC("setup")), withApplied("PodPreset/p@1")),
			conflicts: []wantConflict{
				{"PodPreset/p@1", "spec.initContainers[name=setup]", "pod"},
			},
		},
		"an init container named like an app container is a conflict": {
			pod:       testPod(),
			presets:   []any{testPP("p", injectInit(initC("app")))},
			want:      testPod(withApplied("PodPreset/p@1")),
			conflicts: []wantConflict{{"PodPreset/p@1", "spec.initContainers[name=app]", "pod"}},
		},
		"init containers of a preset receive its env and mounts": {
			pod: testPod(),
			presets: []any{testPP("p", injectInit(initC("setup")), injectEnv(env("A", "a")),
				injectVolume(emptyDir("cfg")), injectMount(mount("cfg", "/cfg")))},
			want: testPod(withInitContainer(initC("setup", func(c *corev1.Container) {
				c.Env = []corev1.EnvVar{env("A", "a")}
				c.VolumeMounts = []corev1.VolumeMount{mount("cfg", "/cfg")}
			})), withEnv("app", env("A", "a")), withVolume(emptyDir("cfg")), withMount("app", mount("cfg", "/cfg")),
				withApplied("PodPreset/p@1")),
		},
		"init containers injected by a later preset receive an earlier preset's env": {
			pod: testPod(),
			presets: []any{
				testPP("a", injectEnv(env("A", "a"))),
				testPP("b", injectInit(initC("setup"))),
			},
			want: testPod(withInitContainer(initC("setup", func(c *corev1.Container) { c.Env = []corev1.EnvVar{env("A", "a")} })),
				withEnv("app", env("A", "a")), withApplied("PodPreset/a@1,PodPreset/b@1")),
		},
		"imagePullSecrets are added when absent, never a conflict": {
			pod:     testPod(withPullSecret("own", "shared")),
			presets: []any{testPP("p", injectPullSecret("shared", "registry"))},
			want:    testPod(withPullSecret("own", "shared", "registry"), withApplied("PodPreset/p@1")),
		},
		"annotations are added when absent; the pod's value is kept": {
			pod:     testPod(withAnnotation("team", "mine")),
			presets: []any{testPP("p", injectAnnotation("team", "platform"), injectAnnotation("prometheus.io/scrape", "true"))},
			want: testPod(withAnnotation("team", "mine"), withAnnotation("prometheus.io/scrape", "true"),
				withApplied("PodPreset/p@1")),
			conflicts: []wantConflict{{"PodPreset/p@1", "metadata.annotations[team]", "pod"}},
		},
		"identical entries are no-ops, not conflicts": {
			pod: testPod(withEnv("app", env("A", "a")), withEnvFrom("app", cmEnvFrom("cm", "")), withVolume(emptyDir("v")),
				withMount("app", mount("v", "/v")), withInitContainer(initC("setup")), withPullSecret("reg"), withAnnotation("k", "v")),
			presets: []any{testPP("p", injectEnv(env("A", "a")), injectEnvFrom(cmEnvFrom("cm", "")), injectVolume(emptyDir("v")),
				injectMount(mount("v", "/v")), injectInit(initC("setup")), injectPullSecret("reg"), injectAnnotation("k", "v"))},
			want: testPod(withEnv("app", env("A", "a")), withEnvFrom("app", cmEnvFrom("cm", "")), withVolume(emptyDir("v")),
				withMount("app", mount("v", "/v")), withInitContainer(initC("setup", func(c *corev1.Container) {
					c.Env = []corev1.EnvVar{env("A", "a")}
					c.EnvFrom = []corev1.EnvFromSource{cmEnvFrom("cm", "")}
					c.VolumeMounts = []corev1.VolumeMount{mount("v", "/v")}
				})), withPullSecret("reg"), withAnnotation("k", "v"), withApplied("PodPreset/p@1")),
		},
		"between two presets the first by name wins": {
			pod: testPod(),
			presets: []any{
				testPP("b", injectEnv(env("A", "from-b"), env("B", "b"))),
				testPP("a", injectEnv(env("A", "from-a"))),
			},
			want:      testPod(withEnv("app", env("A", "from-a"), env("B", "b")), withApplied("PodPreset/a@1,PodPreset/b@1")),
			conflicts: []wantConflict{{"PodPreset/b@1", "spec.containers[name=app].env[name=A]", "PodPreset/a@1"}},
		},
		"a PodPreset beats a ClusterPodPreset whatever the names": {
			pod: testPod(),
			presets: []any{
				testCPP("a-cluster", nil, injectEnv(env("LOG_FORMAT", "text"), env("LOG_LEVEL", "info"))),
				testPP("z-local", injectEnv(env("LOG_FORMAT", "json"))),
			},
			want: testPod(withEnv("app", env("LOG_FORMAT", "json"), env("LOG_LEVEL", "info")),
				withApplied("PodPreset/z-local@1,ClusterPodPreset/a-cluster@1")),
			conflicts: []wantConflict{{"ClusterPodPreset/a-cluster@1", "spec.containers[name=app].env[name=LOG_FORMAT]", "PodPreset/z-local@1"}},
		},
		"a ClusterPodPreset applies only in namespaces it selects": {
			pod: testPod(),
			ns:  &Namespace{Name: "default", Labels: map[string]string{"team": "payments"}},
			presets: []any{
				testCPP("payments", map[string]string{"team": "payments"}, injectEnv(env("TEAM", "payments"))),
				testCPP("search", map[string]string{"team": "search"}, injectEnv(env("TEAM", "search"))),
			},
			want: testPod(withEnv("app", env("TEAM", "payments")), withApplied("ClusterPodPreset/payments@1")),
		},
		"spec.containers targets only the named containers": {
			pod:     testPod(withContainer("sidecar"), withInitContainer(initC("own-init"))),
			presets: []any{testPP("p", targeting("sidecar", "missing"), injectEnv(env("A", "a")))},
			want: testPod(withContainer("sidecar"), withInitContainer(initC("own-init")), withEnv("sidecar", env("A", "a")),
				withApplied("PodPreset/p@1")),
		},
		"without spec.containers every container and init container is a target": {
			pod:     testPod(withContainer("sidecar"), withInitContainer(initC("own-init"))),
			presets: []any{testPP("p", injectEnv(env("A", "a")))},
			want: testPod(withContainer("sidecar"), withInitContainer(initC("own-init")), withEnv("app", env("A", "a")),
				withEnv("sidecar", env("A", "a")), withEnv("own-init", env("A", "a")), withApplied("PodPreset/p@1")),
		},
		"a PodPreset in another namespace does not apply": {
			pod:     testPod(),
			presets: []any{inNamespace("other", testPP("p", injectEnv(env("A", "a"))))},
			want:    testPod(),
		},
		"a selector that does not match does not apply": {
			pod:     testPod(withLabels("app", "api")),
			presets: []any{testPP("p", injectEnv(env("A", "a")))},
			want:    testPod(withLabels("app", "api")),
		},
		"an empty selector matches every pod": {
			pod:     testPod(withLabels()),
			presets: []any{testPP("p", selecting(), injectEnv(env("A", "a")))},
			want:    testPod(withLabels(), withEnv("app", env("A", "a")), withApplied("PodPreset/p@1")),
		},
		"opted out with podpreset.dev/exclude": {
			pod:     testPod(withAnnotation(AnnotationExclude, "true")),
			presets: []any{testPP("p", injectEnv(env("A", "a")))},
			want:    testPod(withAnnotation(AnnotationExclude, "true")),
			skipped: SkipExcluded,
		},
		"opted out with the legacy in-tree key": {
			pod:     testPod(withAnnotation(AnnotationExcludeLegacy, "true")),
			presets: []any{testPP("p", injectEnv(env("A", "a")))},
			want:    testPod(withAnnotation(AnnotationExcludeLegacy, "true")),
			skipped: SkipExcludedLegacy,
		},
		"exclude set to something else than true does not opt out": {
			pod:     testPod(withAnnotation(AnnotationExclude, "false")),
			presets: []any{testPP("p", injectEnv(env("A", "a")))},
			want:    testPod(withAnnotation(AnnotationExclude, "false"), withEnv("app", env("A", "a")), withApplied("PodPreset/p@1")),
		},
		"mirror pods are left alone": {
			pod:     testPod(withAnnotation(corev1.MirrorPodAnnotationKey, "abc")),
			presets: []any{testPP("p", injectEnv(env("A", "a")))},
			want:    testPod(withAnnotation(corev1.MirrorPodAnnotationKey, "abc")),
			skipped: SkipMirrorPod,
		},
		"kube-system is left alone": {
			pod:     testPod(),
			ns:      &Namespace{Name: "kube-system"},
			presets: []any{testCPP("everywhere", nil, injectEnv(env("A", "a")))},
			want:    testPod(),
			skipped: SkipSystemNamespace,
		},
		"a namespace labelled podpreset.dev/ignore is left alone": {
			pod:     testPod(),
			ns:      &Namespace{Name: "default", Labels: map[string]string{LabelIgnore: "true"}},
			presets: []any{testPP("p", injectEnv(env("A", "a")))},
			want:    testPod(),
			skipped: SkipIgnoredNamespace,
		},
		"a re-application updates the generation and appends new presets": {
			pod:     testPod(withApplied("PodPreset/p@1"), withEnv("app", env("A", "a"))),
			presets: []any{func() any { p := testPP("p", injectEnv(env("A", "a"))); p.Generation = 2; return p }(), testPP("q", injectEnv(env("B", "b")))},
			want:    testPod(withApplied("PodPreset/p@2,PodPreset/q@1"), withEnv("app", env("B", "b"), env("A", "a"))),
		},
	}
}

func TestApply(t *testing.T) {
	for name, tc := range applyCases() {
		t.Run(name, func(t *testing.T) {
			ns := defaultNS
			if tc.ns != nil {
				ns = *tc.ns
			}
			set := mustSet(t, tc.presets...)
			checkPatch(t, tc.pod, ns, set, true)
			before := tc.pod.DeepCopy()
			res := Apply(tc.pod, ns, set)
			if diff := cmp.Diff(tc.want, res.Pod); diff != "" {
				t.Errorf("pod (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.conflicts, summarize(res.Conflicts)); diff != "" {
				t.Errorf("conflicts (-want +got):\n%s", diff)
			}
			if res.Skipped != tc.skipped {
				t.Errorf("skipped = %q, want %q", res.Skipped, tc.skipped)
			}
			if diff := cmp.Diff(before, tc.pod); diff != "" {
				t.Errorf("Apply modified its input (-before +after):\n%s", diff)
			}
			if res.Changed != !cmp.Equal(before, res.Pod) {
				t.Errorf("Changed = %v, but the pod changed: %v", res.Changed, !cmp.Equal(before, res.Pod))
			}
			// Applying the same presets again changes nothing.
			again := Apply(res.Pod, ns, set)
			if again.Changed {
				t.Errorf("second Apply changed the pod:\n%s", cmp.Diff(res.Pod, again.Pod))
			}
			if diff := cmp.Diff(res.Pod, again.Pod, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("second Apply (-first +second):\n%s", diff)
			}
		})
	}
}

func TestConflictRecordsKeptAndDropped(t *testing.T) {
	pod := testPod(withEnv("app", env("DB_PORT", "5432")))
	res := Apply(pod, defaultNS, mustSet(t, testPP("db", injectEnv(env("DB_PORT", "3306")))))
	want := []Conflict{{
		Preset:    Ref{Kind: "PodPreset", Namespace: "default", Name: "db", Generation: 1},
		Kind:      FieldEnv,
		Container: "app",
		Field:     "spec.containers[name=app].env[name=DB_PORT]",
		Kept:      `{"name":"DB_PORT","value":"5432"}`,
		KeptFrom:  KeptFromPod,
		Dropped:   `{"name":"DB_PORT","value":"3306"}`,
	}}
	if diff := cmp.Diff(want, res.Conflicts); diff != "" {
		t.Fatalf("conflicts (-want +got):\n%s", diff)
	}
	const wantMsg = `PodPreset/db@1: spec.containers[name=app].env[name=DB_PORT]: kept {"name":"DB_PORT","value":"5432"} (the pod's own), dropped {"name":"DB_PORT","value":"3306"}`
	if got := res.Conflicts[0].String(); got != wantMsg {
		t.Errorf("String() = %s\nwant       %s", got, wantMsg)
	}
}

func TestConflictsDoNotStopTheRestOfThePreset(t *testing.T) {
	pod := testPod(withEnv("app", env("A", "mine")), withVolume(cmVolume("cfg", "mine")))
	res := Apply(pod, defaultNS, mustSet(t, testPP("p",
		injectEnv(env("A", "theirs"), env("B", "b")),
		injectVolume(cmVolume("cfg", "theirs"), emptyDir("extra")),
		injectAnnotation("k", "v"))))
	if got := len(res.Conflicts); got != 2 {
		t.Fatalf("got %d conflicts, want 2: %v", got, res.Conflicts)
	}
	if got := container(res.Pod, "app").Env; !cmp.Equal(got, []corev1.EnvVar{env("B", "b"), env("A", "mine")}) {
		t.Errorf("env = %v", got)
	}
	if got := len(res.Pod.Spec.Volumes); got != 2 {
		t.Errorf("volumes = %v, want cfg (the pod's) and extra", res.Pod.Spec.Volumes)
	}
	if res.Pod.Annotations["k"] != "v" {
		t.Errorf("annotation k not injected: %v", res.Pod.Annotations)
	}
}

func TestInjectedEnvKeepsPresetOrderAcrossPresets(t *testing.T) {
	// $(VAR) references resolve against variables defined earlier, so the
	// first preset's entries must come first, then the next preset's, then
	// the pod's own.
	pod := testPod(withEnv("app", env("URL", "http://$(HOST):$(PORT)")))
	res := Apply(pod, defaultNS, mustSet(t,
		testPP("a", injectEnv(env("HOST", "db"))),
		testPP("b", injectEnv(env("PORT", "5432")))))
	want := []corev1.EnvVar{env("HOST", "db"), env("PORT", "5432"), env("URL", "http://$(HOST):$(PORT)")}
	if diff := cmp.Diff(want, container(res.Pod, "app").Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
}

func TestUnchangedPodIsTheInput(t *testing.T) {
	pod := testPod(withEnv("app", env("A", "a")), withApplied("PodPreset/p@1"))
	res := Apply(pod, defaultNS, mustSet(t, testPP("p", injectEnv(env("A", "a")))))
	if res.Changed || res.Pod != pod {
		t.Errorf("Changed = %v, same object = %v; want false, true", res.Changed, res.Pod == pod)
	}
	if len(res.Applied) != 1 {
		t.Errorf("Applied = %v, want the matching preset", res.Applied)
	}
}
