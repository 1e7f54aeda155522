// Package helm4 checks the Helm chart with Helm 4's SDK, in a module of its
// own so that helm.sh/helm/v4's dependencies stay out of podpreset's; make
// test runs it with the unit tests (make test-helm4).
package helm4

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	helm4common "helm.sh/helm/v4/pkg/chart/common"
	helm4util "helm.sh/helm/v4/pkg/chart/common/util"
	helm4lint "helm.sh/helm/v4/pkg/chart/v2/lint"
	helm4support "helm.sh/helm/v4/pkg/chart/v2/lint/support"
	helm4loader "helm.sh/helm/v4/pkg/chart/v2/loader"
	helm4engine "helm.sh/helm/v4/pkg/engine"
	helm4release "helm.sh/helm/v4/pkg/release/v1/util"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/podpreset/podpreset/manifests"
)

// TestChartWithHelm4: Helm 4's own packages (helm.sh/helm/v4) lint the
// chart clean and render every documented combination into the same
// objects as Helm 3's (manifests.RenderChart).
func TestChartWithHelm4(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(manifests.ChartValueCases)) {
		t.Run(name, func(t *testing.T) {
			vals := map[string]any{}
			if err := yaml.Unmarshal([]byte(manifests.ChartValueCases[name]), &vals); err != nil {
				t.Fatal(err)
			}
			for _, m := range helm4lint.RunAll(manifests.ChartDir(), vals, "podpreset-system").Messages {
				if m.Severity > helm4support.InfoSev {
					t.Errorf("helm 4 lint: %s", m)
				}
			}
			chart, err := helm4loader.Load(manifests.ChartDir())
			if err != nil {
				t.Fatal(err)
			}
			rv, err := helm4util.ToRenderValues(chart, vals, helm4common.ReleaseOptions{Name: "podpreset", Namespace: "podpreset-system", IsInstall: true, Revision: 1}, helm4common.DefaultCapabilities)
			if err != nil {
				t.Fatal(err)
			}
			files, err := helm4engine.Render(chart, rv)
			if err != nil {
				t.Fatal(err)
			}
			for f := range files {
				if strings.HasSuffix(f, "NOTES.txt") {
					delete(files, f)
				}
			}
			_, sorted, err := helm4release.SortManifests(files, nil, helm4release.InstallOrder)
			if err != nil {
				t.Fatal(err)
			}
			var got []*unstructured.Unstructured
			for _, m := range sorted {
				u := &unstructured.Unstructured{}
				if err := yaml.Unmarshal([]byte(m.Content), &u.Object); err != nil {
					t.Fatalf("%s: %v", m.Name, err)
				}
				if len(u.Object) > 0 {
					got = append(got, u)
				}
			}
			want, err := manifests.RenderChartCase(name, "podpreset", "podpreset-system")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(byKindName(t, want), byKindName(t, got)); diff != "" {
				t.Errorf("Helm 4 (+) against Helm 3 (-):\n%s", diff)
			}
		})
	}
}

// byKindName keys objects by kind and name, as JSON reads them.
func byKindName(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, o := range objs {
		b, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		out[o.GetKind()+"/"+o.GetName()] = v
	}
	return out
}
