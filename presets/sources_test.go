package presets

import (
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// withSources makes a preset read a Consul key, a Vault field, a Consul
// prefix as env, a Vault secret as env, a Consul prefix as files, a Vault
// secret as files and a PKI certificate.
func withSources(s *v1alpha1.PodPresetSpec) {
	s.Env = append(s.Env,
		v1alpha1.EnvVar{Name: "DB_HOST", ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: "apps/default/db/host"}}},
		v1alpha1.EnvVar{Name: "DB_PASSWORD", ValueFrom: &v1alpha1.EnvVarSource{Vault: &v1alpha1.VaultKeySelector{Path: "secret/data/default/db", Field: "password", Optional: ptr.To(true)}}})
	s.EnvFrom = append(s.EnvFrom,
		v1alpha1.EnvFromSource{EnvFromSource: corev1.EnvFromSource{Prefix: "APP_"}, ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: "apps/default/env/"}},
		v1alpha1.EnvFromSource{Vault: &v1alpha1.VaultSecretSource{Path: "secret/data/default/api"}})
	s.Volumes = append(s.Volumes,
		v1alpha1.Volume{Volume: corev1.Volume{Name: "conf"}, ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: "apps/default/conf/"}},
		v1alpha1.Volume{Volume: corev1.Volume{Name: "creds"}, Vault: &v1alpha1.VaultSecretSource{Path: "secret/data/default/creds"}},
		v1alpha1.Volume{Volume: corev1.Volume{Name: "tls"}, VaultPKI: &v1alpha1.VaultPKISource{Mount: "pki", Role: "web", CommonName: "web.default.svc"}})
}

func TestApplyRewritesSourcesIntoNativeReferences(t *testing.T) {
	pp := testPP("db", withSources)
	if errs := ValidatePodPreset(pp); len(errs) > 0 {
		t.Fatalf("the preset is invalid: %v", errs)
	}
	res := Apply(testPod(withLabels("app", "web"), withContainer("app")), Namespace{Name: "default"}, mustSet(t, pp))
	c := container(res.Pod, "app")
	wantEnv := []corev1.EnvVar{
		{Name: "DB_HOST", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "podpreset-db"}, Key: "apps.default.db.host"}}},
		{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "podpreset-db"}, Key: "secret.data.default.db.password", Optional: ptr.To(true)}}},
	}
	if d := cmp.Diff(wantEnv, c.Env); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}
	envCM := EnvFromObjectName("db", Source{Kind: SourceConsulPrefix, Path: "apps/default/env/"})
	envSec := EnvFromObjectName("db", Source{Kind: SourceVault, Path: "secret/data/default/api"})
	wantEnvFrom := []corev1.EnvFromSource{
		{Prefix: "APP_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: envCM}}},
		{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: envSec}}},
	}
	if d := cmp.Diff(wantEnvFrom, c.EnvFrom); d != "" {
		t.Errorf("envFrom (-want +got):\n%s", d)
	}
	wantVolumes := []corev1.Volume{
		{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "podpreset-db-vol-conf"}}}},
		{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "podpreset-db-vol-creds"}}},
		{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "podpreset-db-vol-tls"}}},
	}
	if d := cmp.Diff(wantVolumes, res.Pod.Spec.Volumes); d != "" {
		t.Errorf("volumes (-want +got):\n%s", d)
	}
	if _, ok := res.Pod.Annotations[AnnotationSourcesHash]; ok {
		t.Errorf("a preset whose status reports no materialised version wrote %s", AnnotationSourcesHash)
	}

	// The plan the controller follows names the same objects.
	var names []string
	for _, o := range SourcePlan(&pp.Spec) {
		names = append(names, o.Kind()+"/"+o.Name("db"))
	}
	wantNames := []string{"ConfigMap/podpreset-db", "Secret/podpreset-db", "ConfigMap/" + envCM, "Secret/" + envSec,
		"ConfigMap/podpreset-db-vol-conf", "Secret/podpreset-db-vol-creds", "Secret/podpreset-db-vol-tls"}
	if d := cmp.Diff(wantNames, names); d != "" {
		t.Errorf("plan (-want +got):\n%s", d)
	}
}

func TestSourcesHashFollowsVersionsNotValues(t *testing.T) {
	pod := testPod(withLabels("app", "web"), withContainer("app"))
	hash := func(versions ...string) string {
		pp := testPP("db", withSources)
		for i := 0; i+1 < len(versions); i += 2 {
			pp.Status.Sources = append(pp.Status.Sources, v1alpha1.SourceStatus{Source: versions[i], Version: versions[i+1], LastSyncTime: &metav1.Time{}})
		}
		res := Apply(pod, Namespace{Name: "default"}, mustSet(t, pp))
		return res.Pod.Annotations[AnnotationSourcesHash]
	}
	a := hash("consul:apps/default/db/host", "17", "vault:secret/data/default/db", "3")
	if _, err := hex.DecodeString(a); err != nil || len(a) != 32 {
		t.Fatalf("hash %q: want 32 hex characters", a)
	}
	if b := hash("vault:secret/data/default/db", "3", "consul:apps/default/db/host", "17"); b != a {
		t.Errorf("the hash depends on the order of the status entries: %q, then %q", a, b)
	}
	if b := hash("consul:apps/default/db/host", "18", "vault:secret/data/default/db", "3"); b == a {
		t.Errorf("a new Consul ModifyIndex left the hash at %q", a)
	}
	// A reinvocation keeps the pod's hash.
	pp := testPP("db", withSources)
	pp.Status.Sources = []v1alpha1.SourceStatus{{Source: "consul:apps/default/db/host", Version: "18"}}
	res := Apply(testPod(withLabels("app", "web"), withContainer("app"), withAnnotation(AnnotationSourcesHash, a)), Namespace{Name: "default"}, mustSet(t, pp))
	if got := res.Pod.Annotations[AnnotationSourcesHash]; got != a {
		t.Errorf("reapplication changed the pod's hash from %q to %q", a, got)
	}
	// A preset without sources never writes it.
	plain := testPP("plain", injectEnv(env("A", "a")))
	plain.Status.Sources = []v1alpha1.SourceStatus{{Source: "consul:x", Version: "1"}}
	if res := Apply(pod, Namespace{Name: "default"}, mustSet(t, plain)); res.Pod.Annotations[AnnotationSourcesHash] != "" {
		t.Errorf("a preset without sources wrote %s", AnnotationSourcesHash)
	}
}

func TestValidateSources(t *testing.T) {
	vaultEnv := func(path, fieldName string) specOpt {
		return func(s *v1alpha1.PodPresetSpec) {
			s.Env = append(s.Env, v1alpha1.EnvVar{Name: "X", ValueFrom: &v1alpha1.EnvVarSource{Vault: &v1alpha1.VaultKeySelector{Path: path, Field: fieldName}}})
		}
	}
	cases := map[string]struct {
		pp   *v1alpha1.PodPreset
		want []string
	}{
		"every kind of source": {pp: testPP("ok", withSources)},
		"a Vault path that climbs out": {
			pp:   testPP("bad", vaultEnv("secret/data/a/../b/db", "password")),
			want: []string{"FieldValueInvalid spec.env[0].valueFrom.vault.path"},
		},
		"a Vault path with a leading slash": {
			pp:   testPP("bad", vaultEnv("/secret/data/a", "password")),
			want: []string{"FieldValueInvalid spec.env[0].valueFrom.vault.path"},
		},
		"a Vault field missing": {
			pp:   testPP("bad", vaultEnv("secret/data/a/db", "")),
			want: []string{"FieldValueRequired spec.env[0].valueFrom.vault.field"},
		},
		"a Consul key that is no ConfigMap key": {
			pp: testPP("bad", func(s *v1alpha1.PodPresetSpec) {
				s.Env = append(s.Env, v1alpha1.EnvVar{Name: "X", ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: "apps/a b"}}})
			}),
			want: []string{"FieldValueInvalid spec.env[0].valueFrom.consulKV.key"},
		},
		"two Consul keys stored under one key": {
			pp: testPP("bad", func(s *v1alpha1.PodPresetSpec) {
				s.Env = append(s.Env,
					v1alpha1.EnvVar{Name: "X", ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: "apps/a.b"}}},
					v1alpha1.EnvVar{Name: "Y", ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: "apps/a/b"}}})
			}),
			want: []string{"FieldValueDuplicate spec.env[1].valueFrom.consulKV.key"},
		},
		"consulKV next to configMapKeyRef": {
			pp: testPP("bad", func(s *v1alpha1.PodPresetSpec) {
				s.Env = append(s.Env, v1alpha1.EnvVar{Name: "X", ValueFrom: &v1alpha1.EnvVarSource{
					EnvVarSource: corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Key: "k"}},
					ConsulKV:     &v1alpha1.ConsulKeySelector{Key: "apps/a"}}})
			}),
			want: []string{"FieldValueInvalid spec.env[0].valueFrom"},
		},
		"envFrom with both consulKV and vault": {
			pp: testPP("bad", func(s *v1alpha1.PodPresetSpec) {
				s.EnvFrom = append(s.EnvFrom, v1alpha1.EnvFromSource{ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: "a/"}, Vault: &v1alpha1.VaultSecretSource{Path: "kv/a"}})
			}),
			want: []string{"FieldValueInvalid spec.envFrom[0]"},
		},
		"a volume with two sources": {
			pp: testPP("bad", func(s *v1alpha1.PodPresetSpec) {
				s.Volumes = append(s.Volumes, v1alpha1.Volume{Volume: corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: "a/"}})
			}),
			want: []string{"FieldValueInvalid spec.volumes[0]"},
		},
		"a PKI volume without role or name": {
			pp: testPP("bad", func(s *v1alpha1.PodPresetSpec) {
				s.Volumes = append(s.Volumes, v1alpha1.Volume{Volume: corev1.Volume{Name: "tls"}, VaultPKI: &v1alpha1.VaultPKISource{Mount: "pki"}})
			}),
			want: []string{"FieldValueRequired spec.volumes[0].vaultPKI.role", "FieldValueRequired spec.volumes[0].vaultPKI.commonName"},
		},
		"a preset name too long for its objects": {
			pp:   testPP(strings.Repeat("n", 245), withSources),
			want: slices.Repeat([]string{"FieldValueInvalid metadata.name"}, 6),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, errorSummary(ValidatePodPreset(tc.pp))); d != "" {
				t.Errorf("errors (-want +got):\n%s", d)
			}
		})
	}
}

func TestEnvAndFileNames(t *testing.T) {
	for rel, want := range map[string]string{"LOG_LEVEL": "LOG_LEVEL", "db/max-conns": "db_max_conns", "9lives": "_9lives", "a.b": "a_b"} {
		if got := EnvName(rel); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", rel, got, want)
		}
	}
	for rel, want := range map[string]string{"app.yaml": "app.yaml", "conf/app.yaml": "conf_app.yaml", "bad name": ""} {
		got, ok := FileName(rel)
		if !ok {
			got = ""
		}
		if got != want {
			t.Errorf("FileName(%q) = %q (ok %v), want %q", rel, got, ok, want)
		}
	}
}
