package manifests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// loadCRD reads a generated CRD and converts it to the API server's
// internal form.
func loadCRD(t *testing.T, name string) *apiextensions.CustomResourceDefinition {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("crd", name))
	if err != nil {
		t.Fatal(err)
	}
	var v1 apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &v1); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var internal apiextensions.CustomResourceDefinition
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&v1, &internal, nil); err != nil {
		t.Fatalf("%s: converting: %v", name, err)
	}
	return &internal
}

var crds = map[string]struct {
	file, kind, shortName string
	scope                 apiextensions.ResourceScope
}{
	"PodPreset":        {"podpreset.dev_podpresets.yaml", "PodPreset", "pp", apiextensions.NamespaceScoped},
	"ClusterPodPreset": {"podpreset.dev_clusterpodpresets.yaml", "ClusterPodPreset", "cpp", apiextensions.ClusterScoped},
}

// TestCRDsAreAccepted runs the API server's own CRD validation: structural
// schema, CEL rules that compile and fit the cost budget.
func TestCRDsAreAccepted(t *testing.T) {
	for name, c := range crds {
		t.Run(name, func(t *testing.T) {
			crd := loadCRD(t, c.file)
			// Set by the API server's create strategy.
			crd.Status.StoredVersions = []string{crd.Spec.Versions[0].Name}
			if errs := validation.ValidateCustomResourceDefinition(context.Background(), crd); len(errs) > 0 {
				t.Fatalf("the API server would reject the CRD:\n%v", errs.ToAggregate())
			}
			if crd.Spec.Names.Kind != c.kind || crd.Spec.Scope != c.scope {
				t.Errorf("kind %s scope %s, want %s %s", crd.Spec.Names.Kind, crd.Spec.Scope, c.kind, c.scope)
			}
			if got := crd.Spec.Names.ShortNames; len(got) != 1 || got[0] != c.shortName {
				t.Errorf("short names %v, want [%s]", got, c.shortName)
			}
		})
	}
}

// TestCRDRejects checks the CRD's own rules on objects, as the API server
// applies them: CEL rules and list-map uniqueness, each naming the field.
func TestCRDRejects(t *testing.T) {
	cases := map[string]struct {
		spec string
		want string // substring of the error, "" when valid
	}{
		"a preset that injects something": {
			spec: `{"selector": {}, "env": [{"name": "A", "value": "1"}]}`,
		},
		"a preset that injects nothing": {
			spec: `{"selector": {"matchLabels": {"app": "web"}}}`,
			want: "spec: Invalid value: spec must inject something",
		},
		"empty lists inject nothing": {
			spec: `{"env": [], "volumes": []}`,
			want: "spec must inject something",
		},
		"duplicate env names": {
			spec: `{"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}`,
			want: "spec.env[1]: Duplicate value",
		},
		"duplicate volume names": {
			spec: `{"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]}`,
			want: "spec.volumes[1]: Duplicate value",
		},
		"duplicate mount paths": {
			spec: `{"volumeMounts": [{"name": "a", "mountPath": "/x"}, {"name": "b", "mountPath": "/x"}]}`,
			want: "spec.volumeMounts[1]: Duplicate value",
		},
		"duplicate init container names": {
			spec: `{"initContainers": [{"name": "i", "image": "a"}, {"name": "i", "image": "b"}]}`,
			want: "spec.initContainers[1]: Duplicate value",
		},
	}
	for name, c := range crds {
		crd := loadCRD(t, c.file)
		// With a single version, the internal form holds the schema at the
		// top level.
		validation := crd.Spec.Validation
		if v := crd.Spec.Versions[0]; v.Schema != nil {
			validation = v.Schema
		}
		st, err := schema.NewStructural(validation.OpenAPIV3Schema)
		if err != nil {
			t.Fatalf("%s: not structural: %v", name, err)
		}
		specSchema := st.Properties["spec"]
		validator := cel.NewValidator(&specSchema, false, celconfig.PerCallLimit)
		for caseName, tc := range cases {
			t.Run(name+"/"+caseName, func(t *testing.T) {
				var spec map[string]any
				if err := yaml.Unmarshal([]byte(tc.spec), &spec); err != nil {
					t.Fatal(err)
				}
				path := field.NewPath("spec")
				errs := listtype.ValidateListSetsAndMaps(path, &specSchema, spec)
				celErrs, _ := validator.Validate(context.Background(), path, &specSchema, spec, nil, celconfig.RuntimeCELCostBudget)
				errs = append(errs, celErrs...)
				got := ""
				if agg := errs.ToAggregate(); agg != nil {
					got = agg.Error()
				}
				switch {
				case tc.want == "" && got != "":
					t.Errorf("rejected a valid spec: %s", got)
				case tc.want != "" && !strings.Contains(got, tc.want):
					t.Errorf("error %q does not contain %q", got, tc.want)
				}
			})
		}
	}
}
