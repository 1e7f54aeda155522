package sources

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/podpreset/podpreset/presets"
	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// materialiseCase builders: a spec, and what is known of its sources.

func consulEnvSpec(keys ...string) *v1alpha1.PodPresetSpec {
	s := &v1alpha1.PodPresetSpec{}
	for _, k := range keys {
		s.Env = append(s.Env, v1alpha1.EnvVar{Name: presets.EnvName(k), ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: k}}})
	}
	return s
}

func read(data map[string]string, version string) Snapshot {
	s := Snapshot{Has: true, Exists: true, Version: version, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func TestMaterialise(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	envFrom := &v1alpha1.PodPresetSpec{EnvFrom: []v1alpha1.EnvFromSource{{ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: "apps/shop/env/"}}}}
	files := &v1alpha1.PodPresetSpec{Volumes: []v1alpha1.Volume{{Volume: corev1.Volume{Name: "conf"}, ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: "apps/shop/conf/"}}}}
	secretKey := consulEnvSpec("apps/shop/db/password")
	secretKey.Env[0].ValueFrom.ConsulKV.Secret = new(true)
	vaultField := &v1alpha1.PodPresetSpec{Env: []v1alpha1.EnvVar{{Name: "PW", ValueFrom: &v1alpha1.EnvVarSource{Vault: &v1alpha1.VaultKeySelector{Path: "secret/data/shop/db", Field: "password"}}}}}
	optional := consulEnvSpec("apps/shop/maybe")
	optional.Env[0].ValueFrom.ConsulKV.Optional = new(true)
	pki := &v1alpha1.PodPresetSpec{Volumes: []v1alpha1.Volume{{Volume: corev1.Volume{Name: "tls"}, VaultPKI: &v1alpha1.VaultPKISource{Mount: "pki", Role: "web", CommonName: "web"}}}}
	tlsData := map[string][]byte{"tls.crt": []byte("C"), "tls.key": []byte("K"), "ca.crt": []byte("A")}

	type want struct {
		objects map[objectKey]map[string]string // nil value: left as it is
		errs    map[string]string               // source ID -> a part of its error
		version map[string]string
	}
	cases := map[string]struct {
		spec   *v1alpha1.PodPresetSpec
		denied map[string][]string
		snaps  map[string]Snapshot
		certs  map[string]certResult
		want   want
	}{
		"a Consul key into the values ConfigMap": {
			spec:  consulEnvSpec("apps/shop/db/host"),
			snaps: map[string]Snapshot{"consul:apps/shop/db/host": read(map[string]string{"": "db-1"}, "17")},
			want: want{objects: map[objectKey]map[string]string{{"ConfigMap", "podpreset-p"}: {"apps.shop.db.host": "db-1"}},
				version: map[string]string{"consul:apps/shop/db/host": "17"}},
		},
		"a Consul key marked secret goes into the values Secret": {
			spec:  secretKey,
			snaps: map[string]Snapshot{"consul:apps/shop/db/password": read(map[string]string{"": "pw"}, "3")},
			want:  want{objects: map[objectKey]map[string]string{{"Secret", "podpreset-p"}: {"apps.shop.db.password": "pw"}}},
		},
		"never read: left as it is": {
			spec:  consulEnvSpec("apps/shop/db/host"),
			snaps: map[string]Snapshot{"consul:apps/shop/db/host": {}},
			want:  want{objects: map[objectKey]map[string]string{{"ConfigMap", "podpreset-p"}: nil}},
		},
		"denied: never read, left as it is, and the reason reported": {
			spec:   consulEnvSpec("apps/bank/db/host"),
			denied: map[string][]string{"spec.env[0].valueFrom.consulKV": {"not allowed"}},
			snaps:  map[string]Snapshot{"consul:apps/bank/db/host": read(map[string]string{"": "stolen"}, "1")},
			want: want{objects: map[objectKey]map[string]string{{"ConfigMap", "podpreset-p"}: nil},
				errs: map[string]string{"consul:apps/bank/db/host": "not allowed"}},
		},
		"a missing key is an error": {
			spec:  consulEnvSpec("apps/shop/gone"),
			snaps: map[string]Snapshot{"consul:apps/shop/gone": {Has: true, Version: "absent"}},
			want: want{objects: map[objectKey]map[string]string{{"ConfigMap", "podpreset-p"}: {}},
				errs: map[string]string{"consul:apps/shop/gone": "Consul key apps/shop/gone does not exist"}},
		},
		"a missing optional key is not": {
			spec:  optional,
			snaps: map[string]Snapshot{"consul:apps/shop/maybe": {Has: true, Version: "absent"}},
			want:  want{objects: map[objectKey]map[string]string{{"ConfigMap", "podpreset-p"}: {}}},
		},
		"a prefix as env, names made valid, a collision reported": {
			spec: envFrom,
			snaps: map[string]Snapshot{"consul-prefix:apps/shop/env/": read(map[string]string{
				"LOG_LEVEL": "info", "db/max-conns": "10", "db_max_conns": "20", "9lives": "x"}, "40")},
			want: want{objects: map[objectKey]map[string]string{
				{"ConfigMap", presets.EnvFromObjectName("p", presets.Source{Kind: presets.SourceConsulPrefix, Path: "apps/shop/env/"})}: {
					"LOG_LEVEL": "info", "db_max_conns": "10", "_9lives": "x"}},
				errs: map[string]string{"consul-prefix:apps/shop/env/": `"apps/shop/env/db/max-conns" and "apps/shop/env/db_max_conns" both become "db_max_conns"`}},
		},
		"a prefix as files, a key that cannot be a file left out": {
			spec:  files,
			snaps: map[string]Snapshot{"consul-prefix:apps/shop/conf/": read(map[string]string{"app.yaml": "a: 1", "nested/b.yaml": "b", "bad name": "x"}, "9")},
			want: want{objects: map[objectKey]map[string]string{{"ConfigMap", "podpreset-p-vol-conf"}: {"app.yaml": "a: 1", "nested_b.yaml": "b"}},
				errs: map[string]string{"consul-prefix:apps/shop/conf/": `key "apps/shop/conf/bad name" cannot be a file name`}},
		},
		"a Vault field": {
			spec:  vaultField,
			snaps: map[string]Snapshot{"vault:secret/data/shop/db": read(map[string]string{"password": "s3cret", "user": "u"}, "2")},
			want:  want{objects: map[objectKey]map[string]string{{"Secret", "podpreset-p"}: {"secret.data.shop.db.password": "s3cret"}}},
		},
		"a Vault field that is not there": {
			spec:  vaultField,
			snaps: map[string]Snapshot{"vault:secret/data/shop/db": read(map[string]string{"user": "u"}, "2")},
			want: want{objects: map[objectKey]map[string]string{{"Secret", "podpreset-p"}: {}},
				errs: map[string]string{"vault:secret/data/shop/db": `has no field "password"`}},
		},
		"a source that fails keeps its last values": {
			spec: consulEnvSpec("apps/shop/db/host"),
			snaps: map[string]Snapshot{"consul:apps/shop/db/host": func() Snapshot {
				s := read(map[string]string{"": "db-1"}, "17")
				s.Err, s.ErrSince = stringError("consul unreachable"), t0
				return s
			}()},
			want: want{objects: map[objectKey]map[string]string{{"ConfigMap", "podpreset-p"}: {"apps.shop.db.host": "db-1"}},
				errs: map[string]string{"consul:apps/shop/db/host": "consul unreachable"}},
		},
		"over the size limit: not written": {
			spec:  files,
			snaps: map[string]Snapshot{"consul-prefix:apps/shop/conf/": read(map[string]string{"big": strings.Repeat("x", MaxObjectBytes)}, "9")},
			want: want{objects: map[objectKey]map[string]string{{"ConfigMap", "podpreset-p-vol-conf"}: nil},
				errs: map[string]string{"consul-prefix:apps/shop/conf/": "over the"}},
		},
		"a certificate": {
			spec:  pki,
			certs: map[string]certResult{"spec.volumes[0].vaultPKI": {data: tlsData, version: "ab", synced: t0}},
			want: want{objects: map[objectKey]map[string]string{{"Secret", "podpreset-p-vol-tls"}: {"tls.crt": "C", "tls.key": "K", "ca.crt": "A"}},
				version: map[string]string{"vault-pki:pki/issue/web": "ab"}},
		},
		"a certificate Vault could not issue": {
			spec:  pki,
			certs: map[string]certResult{"spec.volumes[0].vaultPKI": {err: "vault unreachable", errSince: t0}},
			want: want{objects: map[objectKey]map[string]string{{"Secret", "podpreset-p-vol-tls"}: nil},
				errs: map[string]string{"vault-pki:pki/issue/web": "vault unreachable"}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			desired, states := materialise(materialiseInput{preset: "p", plan: presets.SourcePlan(tc.spec), denied: tc.denied, snaps: tc.snaps, certs: tc.certs})
			got := map[objectKey]map[string]string{}
			for _, d := range desired {
				if d.Data == nil {
					got[d.objectKey] = nil
					continue
				}
				m := map[string]string{}
				for k, v := range d.Data {
					m[k] = string(v)
				}
				got[d.objectKey] = m
			}
			if diff := cmp.Diff(tc.want.objects, got); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			for id, st := range states {
				msg := strings.Join(st.errs, "; ")
				if want := tc.want.errs[id]; want == "" && msg != "" || want != "" && !strings.Contains(msg, want) {
					t.Errorf("%s: errors %q, want %q", id, msg, want)
				}
				if v, ok := tc.want.version[id]; ok && st.version != v {
					t.Errorf("%s: version %q, want %q", id, st.version, v)
				}
			}
		})
	}
}

type stringError string

func (e stringError) Error() string { return string(e) }
