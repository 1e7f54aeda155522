package presets

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podpreset/podpreset/presets/v1alpha1"
)

// checkFunc is a Check from a function, for tests.
type checkFunc struct {
	reason string
	f      func(v1alpha1.Object) field.ErrorList
}

func (c checkFunc) Check(o v1alpha1.Object) field.ErrorList { return c.f(o) }
func (c checkFunc) Reason() string                          { return c.reason }

func consulKeyPreset(key string) *v1alpha1.PodPreset {
	pp := testPP("steal")
	pp.Spec.Env = []v1alpha1.EnvVar{{Name: "X", ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: key}}}}
	return pp
}

func consulPrefixPreset(prefix string) *v1alpha1.PodPreset {
	pp := testPP("steal")
	pp.Spec.EnvFrom = []v1alpha1.EnvFromSource{{ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: prefix}}}
	return pp
}

// TestLoadRefusesConsulPathsThatCouldEscape plays the tenant of namespace
// "team" under the tenancy apps/team/: every way out of the folder is
// refused at validation, whatever the tenancy says, naming the field.
func TestLoadRefusesConsulPathsThatCouldEscape(t *testing.T) {
	cases := map[string]struct {
		obj   *v1alpha1.PodPreset
		field string
		want  string
	}{
		"a prefix that walks out":          {obj: consulPrefixPreset("apps/team/../other/"), field: "spec.envFrom[0].consulKV.prefix", want: "must not start with /, or have an empty, . or .. segment"},
		"a key that walks out":             {obj: consulKeyPreset("apps/team/../other/db-password"), field: "spec.env[0].valueFrom.consulKV.key", want: ". or .. segment"},
		"a . segment":                      {obj: consulKeyPreset("apps/team/./x"), field: "spec.env[0].valueFrom.consulKV.key", want: ". or .. segment"},
		"an empty segment":                 {obj: consulKeyPreset("apps//team/x"), field: "spec.env[0].valueFrom.consulKV.key", want: "empty"},
		"a key ending in /":                {obj: consulKeyPreset("apps/team/x/"), field: "spec.env[0].valueFrom.consulKV.key", want: "start or end with /"},
		"a leading /":                      {obj: consulPrefixPreset("/apps/team/"), field: "spec.envFrom[0].consulKV.prefix", want: "start with /"},
		"percent-encoded dots":             {obj: consulPrefixPreset("apps/team/%2e%2e/other/"), field: "spec.envFrom[0].consulKV.prefix", want: `must not contain '%'`},
		"a query that picks a datacenter":  {obj: consulKeyPreset("apps/team/x?dc=dc2"), field: "spec.env[0].valueFrom.consulKV.key", want: `must not contain '?'`},
		"a backslash":                      {obj: consulKeyPreset(`apps/team/..\other\x`), field: "spec.env[0].valueFrom.consulKV.key", want: `must not contain '\\'`},
		"a newline":                        {obj: consulKeyPreset("apps/team/x\ny"), field: "spec.env[0].valueFrom.consulKV.key", want: "control characters"},
		"a .. segment in a volume's files": {obj: volumePreset("apps/team/.."), field: "spec.volumes[0].consulKV.prefix", want: ". or .. segment"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p, errs := Load(tc.obj)
			if len(errs) == 0 {
				t.Fatal("accepted")
			}
			if errs[0].Field != tc.field || !strings.Contains(errs[0].Error(), tc.want) {
				t.Errorf("error %q at %s, want %s saying %q", errs[0].Error(), errs[0].Field, tc.field, tc.want)
			}
			if p == nil || p.Refused() == nil || p.Refused().Reason != v1alpha1.ReasonInvalid {
				t.Errorf("the compiled preset is not refused as Invalid: %+v", p)
			}
		})
	}
	// A folder's trailing / is fine in a prefix.
	if _, errs := Load(consulPrefixPreset("apps/team/")); len(errs) != 0 {
		t.Errorf("apps/team/: %v", errs)
	}
}

func volumePreset(prefix string) *v1alpha1.PodPreset {
	pp := testPP("steal")
	pp.Spec.Volumes = []v1alpha1.Volume{{Volume: corev1.Volume{Name: "f"}, ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: prefix}}}
	return pp
}

func TestLoadRunsEveryCheckAndNamesTheFirstReason(t *testing.T) {
	forbid := func(reason, fieldPath string) Check {
		return checkFunc{reason: reason, f: func(v1alpha1.Object) field.ErrorList {
			return field.ErrorList{field.Forbidden(field.NewPath(fieldPath), reason+" says no")}
		}}
	}
	pass := checkFunc{reason: "Pass", f: func(v1alpha1.Object) field.ErrorList { return nil }}
	pp := testPP("p", selecting("app", "web"), injectEnv(env("A", "1")))
	p, errs := Load(pp, pass, forbid("PolicyViolation", "spec.env[0]"), forbid("SourceForbidden", "spec.env[0]"))
	if len(errs) != 2 || p.Refused().Reason != "PolicyViolation" || !strings.Contains(p.Refused().Message, "SourceForbidden says no") {
		t.Errorf("errors %v, refusal %+v", errs, p.Refused())
	}
	// Invalid wins over a check's reason.
	bad := testPP("p", selecting("app", "web"), injectEnv(env("1A", "1")))
	p, _ = Load(bad, forbid("PolicyViolation", "spec.env[0]"))
	if p.Refused().Reason != v1alpha1.ReasonInvalid {
		t.Errorf("refusal %+v, want Invalid", p.Refused())
	}
	// A preset whose selector does not compile is nil, with the error.
	broken := testPP("p", injectEnv(env("A", "1")))
	broken.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near"}}
	if p, errs := Load(broken); p != nil || len(errs) == 0 {
		t.Errorf("a selector that does not parse: %v, %v", p, errs)
	}
}

// TestRefusedPresetsAreReportedNotApplied: a preset that failed Load still
// matches, so that the pod's warnings say why it did not get it.
func TestRefusedPresetsAreReportedNotApplied(t *testing.T) {
	good := testPP("a-good", selecting("app", "web"), injectEnv(env("GOOD", "1")))
	evil := testPP("b-evil", selecting("app", "web"), injectEnv(env("LD_PRELOAD", "/tmp/x.so")))
	no := checkFunc{reason: "PolicyViolation", f: func(o v1alpha1.Object) field.ErrorList {
		if o.GetName() == "b-evil" {
			return field.ErrorList{field.Forbidden(field.NewPath("spec", "env").Index(0).Child("name"), "denied")}
		}
		return nil
	}}
	var ps []*Preset
	for _, o := range []*v1alpha1.PodPreset{good, evil} {
		p, _ := Load(o, no)
		ps = append(ps, p)
	}
	res := Apply(testPod(), Namespace{Name: "default"}, NewSet(ps...))
	if got := container(res.Pod, "app").Env; len(got) != 1 || got[0].Name != "GOOD" {
		t.Errorf("env %v, want GOOD only", got)
	}
	want := []Refusal{{Preset: Ref{Kind: v1alpha1.KindPodPreset, Namespace: "default", Name: "b-evil", Generation: 1}, Reason: "PolicyViolation", Message: "spec.env[0].name: Forbidden: denied"}}
	if d := cmp.Diff(want, res.Refused); d != "" {
		t.Errorf("refused (-want +got):\n%s", d)
	}
	if applied := res.Pod.Annotations[AnnotationApplied]; applied != "PodPreset/a-good@1" {
		t.Errorf("applied %q", applied)
	}
	// Only a refused preset matches: the pod is unchanged, and told why.
	res = Apply(testPod(), Namespace{Name: "default"}, NewSet(ps[1]))
	if res.Changed || len(res.Refused) != 1 {
		t.Errorf("changed %v, refused %v", res.Changed, res.Refused)
	}
}

// TestForeignObjectsAreNeverReferenced: a ConfigMap or Secret under the
// name podpreset gives materialised values, that someone else created, is
// left out of the pod, with its volume's mounts, and reported.
func TestForeignObjectsAreNeverReferenced(t *testing.T) {
	pp := testPP("db", selecting("app", "web"), withSources, injectMount(mount("conf", "/etc/conf")), injectEnv(env("PLAIN", "1")))
	pp.Status.ForeignObjects = []v1alpha1.ObjectReference{
		{Kind: "ConfigMap", Namespace: "default", Name: "podpreset-db"},
		{Kind: "ConfigMap", Namespace: "default", Name: "podpreset-db-vol-conf"},
		{Kind: "Secret", Namespace: "other", Name: "podpreset-db"}, // another namespace: not this pod's
	}
	res := Apply(testPod(), Namespace{Name: "default"}, mustSet(t, pp))
	c := container(res.Pod, "app")
	var names []string
	for _, e := range c.Env {
		names = append(names, e.Name)
	}
	if d := cmp.Diff([]string{"DB_PASSWORD", "PLAIN"}, names); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}
	for _, v := range res.Pod.Spec.Volumes {
		if v.Name == "conf" {
			t.Errorf("the foreign ConfigMap's volume was injected: %+v", v)
		}
	}
	for _, m := range c.VolumeMounts {
		if m.Name == "conf" {
			t.Errorf("a mount of the left-out volume was injected: %+v", m)
		}
	}
	var omitted []string
	for _, o := range res.Omitted {
		omitted = append(omitted, o.String())
	}
	want := []string{
		"PodPreset/db@1: spec.volumes[name=conf]: left out: ConfigMap default/podpreset-db-vol-conf exists but is not this preset's",
		"PodPreset/db@1: spec.containers[name=app].env[name=DB_HOST]: left out: ConfigMap default/podpreset-db exists but is not this preset's",
		"PodPreset/db@1: spec.containers[name=app].volumeMounts[mountPath=/etc/conf]: left out: ConfigMap default/podpreset-db-vol-conf exists but is not this preset's",
	}
	if d := cmp.Diff(want, omitted); d != "" {
		t.Errorf("omitted (-want +got):\n%s", d)
	}
}

// TestConsulValuesMarkedSecretGoIntoSecrets: secret: true makes every
// Consul reference a Secret reference, so that the built-in view role
// cannot read the values.
func TestConsulValuesMarkedSecretGoIntoSecrets(t *testing.T) {
	pp := testPP("db", selecting("app", "web"))
	pp.Spec.Env = []v1alpha1.EnvVar{{Name: "PW", ValueFrom: &v1alpha1.EnvVarSource{ConsulKV: &v1alpha1.ConsulKeySelector{Key: "apps/default/pw", Secret: new(true)}}}}
	pp.Spec.EnvFrom = []v1alpha1.EnvFromSource{{ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: "apps/default/env/", Secret: new(true)}}}
	pp.Spec.Volumes = []v1alpha1.Volume{{Volume: corev1.Volume{Name: "f"}, ConsulKV: &v1alpha1.ConsulPrefixSource{Prefix: "apps/default/f/", Secret: new(true)}}}
	res := Apply(testPod(), Namespace{Name: "default"}, mustSet(t, pp))
	c := container(res.Pod, "app")
	if r := c.Env[0].ValueFrom.SecretKeyRef; r == nil || r.Name != "podpreset-db" || r.Key != "apps.default.pw" {
		t.Errorf("env %+v, want a secretKeyRef to podpreset-db", c.Env[0].ValueFrom)
	}
	if c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].ConfigMapRef != nil {
		t.Errorf("envFrom %+v, want a secretRef", c.EnvFrom[0])
	}
	if v := res.Pod.Spec.Volumes[0]; v.Secret == nil || v.Secret.SecretName != "podpreset-db-vol-f" {
		t.Errorf("volume %+v, want a secret volume", v)
	}
	var kinds []string
	for _, o := range SourcePlan(&pp.Spec) {
		kinds = append(kinds, o.Kind()+"/"+o.Name("db"))
	}
	want := []string{"Secret/podpreset-db", "Secret/" + EnvFromObjectName("db", Source{Kind: SourceConsulPrefix, Path: "apps/default/env/"}), "Secret/podpreset-db-vol-f"}
	if d := cmp.Diff(want, kinds); d != "" {
		t.Errorf("plan (-want +got):\n%s", d)
	}
}
