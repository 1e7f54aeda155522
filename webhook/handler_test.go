package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	evanphx "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	sigsjson "sigs.k8s.io/json"

	"github.com/podpreset/podpreset/presets/v1alpha1"
	"github.com/podpreset/podpreset/sources"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ (make golden)")

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// testMutator is a PodMutator whose store holds the given presets, loaded
// with the default preset policy, and whose namespaces are "shop"
// (team=payments) and kube-system.
func testMutator(t *testing.T, objs ...v1alpha1.Object) *PodMutator {
	t.Helper()
	store := NewStore()
	for _, o := range objs {
		if _, err := store.Load(o); err != nil {
			t.Fatal(err)
		}
	}
	store.rebuild()
	s := testScheme(t)
	namespaces := fake.NewClientBuilder().WithScheme(s).WithObjects(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "payments", corev1.LabelMetadataName: "shop"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}},
	).Build()
	return &PodMutator{Presets: store, Namespaces: namespaces, OwnNamespace: "podpreset-system"}
}

func cartPresets() []v1alpha1.Object {
	pp := &v1alpha1.PodPreset{ObjectMeta: metav1.ObjectMeta{Name: "cart-db", Namespace: "shop", Generation: 3}}
	pp.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "cart"}}
	pp.Spec.Env = []v1alpha1.EnvVar{{Name: "DB_HOST", Value: "db.shop.svc"}, {Name: "DB_PORT", Value: "5432"}}
	cpp := &v1alpha1.ClusterPodPreset{ObjectMeta: metav1.ObjectMeta{Name: "logging", Generation: 1}}
	cpp.Spec.NamespaceSelector = metav1.LabelSelector{MatchLabels: map[string]string{"team": "payments"}}
	cpp.Spec.Env = []v1alpha1.EnvVar{{Name: "LOG_FORMAT", Value: "json"}}
	cpp.Spec.Annotations = map[string]string{"prometheus.io/scrape": "true"}
	return []v1alpha1.Object{pp, cpp}
}

// serve sends a body through the HTTP path the API server uses.
func serve[T any](t *testing.T, h Handler[T], body []byte, contentType string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/mutate-pods", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	Serve(h, NewLimiter(8, 16<<20), MaxPresetReviewBytes).ServeHTTP(rec, req)
	return rec
}

func reviewOf(t *testing.T, rec *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	var r admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("answer is not an AdmissionReview: %v\n%s", err, rec.Body)
	}
	if r.Response == nil {
		t.Fatalf("AdmissionReview without a response: %s", rec.Body)
	}
	return r.Response
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPodMutatorInjects(t *testing.T) {
	body := fixture(t, "pod-create.json")
	before := testutil.ToFloat64(admissionTotal.WithLabelValues(ResultInjected))
	resp := reviewOf(t, serve(t, testMutator(t, cartPresets()...), body, "application/json"))
	if !resp.Allowed || resp.UID != "0df28fbd-5f5f-11e8-bc74-36e6bb280816" {
		t.Fatalf("allowed=%v uid=%q, want true and the request's UID", resp.Allowed, resp.UID)
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v, want JSONPatch", resp.PatchType)
	}
	// Apply the patch to the raw object, as the API server does.
	var in admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &in); err != nil {
		t.Fatal(err)
	}
	patch, err := evanphx.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("the patch does not decode: %v", err)
	}
	mutated, err := patch.Apply(in.Request.Object.Raw)
	if err != nil {
		t.Fatalf("the patch does not apply: %v", err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, mutated, "", "  "); err != nil {
		t.Fatal(err)
	}
	golden(t, "pod-create.mutated.golden.json", pretty.String()+"\n")
	if !strings.Contains(string(mutated), `"x-field-from-a-newer-kubernetes":{"kept":true}`) {
		t.Errorf("a field the Go types do not know was lost:\n%s", mutated)
	}
	wantWarnings := []string{`podpreset: PodPreset/cart-db@3: spec.containers[name=cart].env[name=DB_HOST]: kept {"name":"DB_HOST","value":"localhost"} (the pod's own), dropped {"name":"DB_HOST","value":"db.shop.svc"}`}
	if diff := cmp.Diff(wantWarnings, resp.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(admissionTotal.WithLabelValues(ResultInjected)) - before; got != 1 {
		t.Errorf("podpreset_admission_total{result=injected} grew by %v, want 1", got)
	}
}

func TestPodMutatorLeavesAlone(t *testing.T) {
	cases := map[string]struct {
		fixture string
		result  string
		reason  string
	}{
		"an opted-out pod":           {fixture: "pod-create-excluded.json", result: ResultSkipped, reason: "podpreset.dev/exclude"},
		"an update":                  {fixture: "pod-update.json", result: ResultSkipped, reason: "not a CREATE"},
		"the ephemeral containers":   {fixture: "pod-ephemeralcontainers.json", result: ResultSkipped, reason: "subresource"},
		"a pod in kube-system":       {fixture: "pod-create-kube-system.json", result: ResultSkipped, reason: "kube-system"},
		"a pod in its own namespace": {fixture: "pod-create-own-namespace.json", result: ResultSkipped, reason: "own namespace"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := testutil.ToFloat64(admissionTotal.WithLabelValues(tc.result))
			resp := reviewOf(t, serve(t, testMutator(t, cartPresets()...), fixture(t, tc.fixture), "application/json"))
			if !resp.Allowed || len(resp.Patch) > 0 {
				t.Fatalf("allowed=%v patch=%s, want allowed with no patch", resp.Allowed, resp.Patch)
			}
			if resp.Result == nil || !strings.Contains(resp.Result.Message, tc.reason) {
				t.Errorf("reason %v does not mention %q", resp.Result, tc.reason)
			}
			if got := testutil.ToFloat64(admissionTotal.WithLabelValues(tc.result)) - before; got != 1 {
				t.Errorf("podpreset_admission_total{result=%s} grew by %v, want 1", tc.result, got)
			}
		})
	}
}

func TestPodMutatorNoMatchIsUnchanged(t *testing.T) {
	before := testutil.ToFloat64(admissionTotal.WithLabelValues(ResultUnchanged))
	resp := reviewOf(t, serve(t, testMutator(t), fixture(t, "pod-create.json"), "application/json"))
	if !resp.Allowed || len(resp.Patch) > 0 {
		t.Fatalf("allowed=%v patch=%s, want allowed with no patch", resp.Allowed, resp.Patch)
	}
	if got := testutil.ToFloat64(admissionTotal.WithLabelValues(ResultUnchanged)) - before; got != 1 {
		t.Errorf("podpreset_admission_total{result=unchanged} grew by %v, want 1", got)
	}
}

func TestMalformedRequests(t *testing.T) {
	cases := map[string]struct {
		body        string
		contentType string
		status      int
		message     string
	}{
		"an empty body":          {body: "", contentType: "application/json", status: http.StatusBadRequest, message: "request body is empty"},
		"not JSON":               {body: "{not json", contentType: "application/json", status: http.StatusBadRequest, message: "invalid AdmissionReview"},
		"another content type":   {body: "{}", contentType: "text/plain", status: http.StatusUnsupportedMediaType, message: "contentType=text/plain"},
		"JSON that is no review": {body: `[1, 2, 3]`, contentType: "application/json", status: http.StatusBadRequest, message: "invalid AdmissionReview"},
		"a review of another version": {body: `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}`, contentType: "application/json",
			status: http.StatusBadRequest, message: "want admission.k8s.io/v1 AdmissionReview"},
		"a review without a request": {body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, contentType: "application/json",
			status: http.StatusBadRequest, message: "no request"},
		"a review without a UID": {body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}`, contentType: "application/json",
			status: http.StatusBadRequest, message: "no request UID"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			rec := serve(t, testMutator(t, cartPresets()...), []byte(tc.body), tc.contentType)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.message) {
				t.Errorf("HTTP %d %q, want %d containing %q", rec.Code, rec.Body, tc.status, tc.message)
			}
		})
	}
}

func TestUndecodablePodIsAnErrorNotAPanic(t *testing.T) {
	before := testutil.ToFloat64(admissionTotal.WithLabelValues(ResultError))
	resp := reviewOf(t, serve(t, testMutator(t, cartPresets()...), fixture(t, "pod-create-undecodable.json"), "application/json"))
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, "decoding the Pod") {
		t.Fatalf("allowed=%v result=%v, want a 400 that says decoding the Pod", resp.Allowed, resp.Result)
	}
	_ = before
}

func TestPresetValidator(t *testing.T) {
	v := &PresetValidator{Checks: NewStore().Checks}
	cases := map[string]struct {
		fixture  string
		allowed  bool
		messages []string // substrings of the denial
		warnings []string
	}{
		"a valid PodPreset, with advice": {
			fixture:  "podpreset-create.json",
			allowed:  true,
			warnings: []string{`spec.volumeMounts[0].name: volume "tls" is not in spec.volumes: pods must define it themselves, or they will be rejected`},
		},
		"an invalid PodPreset names every field": {
			fixture:  "podpreset-create-invalid.json",
			messages: []string{`PodPreset.podpreset.dev "cart-db" is invalid`, "spec.selector.matchExpressions[0].operator", "spec.env[2].name"},
		},
		"an invalid ClusterPodPreset names the namespace selector": {
			fixture:  "clusterpodpreset-create-invalid.json",
			messages: []string{`ClusterPodPreset.podpreset.dev "logging" is invalid`, "spec.namespaceSelector.matchLabels"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			resp := reviewOf(t, serve(t, v, fixture(t, tc.fixture), "application/json"))
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed=%v, want %v: %v", resp.Allowed, tc.allowed, resp.Result)
			}
			for _, m := range tc.messages {
				if resp.Result == nil || !strings.Contains(resp.Result.Message, m) {
					t.Errorf("denial %v does not contain %q", resp.Result, m)
				}
			}
			if !tc.allowed && (resp.Result.Reason != metav1.StatusReasonInvalid || resp.Result.Code != http.StatusUnprocessableEntity) {
				t.Errorf("denial reason %s code %d, want Invalid 422", resp.Result.Reason, resp.Result.Code)
			}
			if diff := cmp.Diff(tc.warnings, resp.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPresetValidatorEnforcesTenancy checks that a PodPreset may read only
// the Consul keys and Vault paths the sources configuration allows its
// namespace, and that the denial names each field and the allowance.
func TestPresetValidatorEnforcesTenancy(t *testing.T) {
	ten := sources.NewTenancy(&sources.Config{
		Consul: &sources.ConsulConfig{Address: "127.0.0.1:8500"},
		Vault:  &sources.VaultConfig{Address: "http://127.0.0.1:8200", Auth: sources.VaultAuth{Method: "token", TokenFile: "/dev/null"}},
		Tenancy: sources.TenancyConfig{PodPresets: sources.Allowance{
			ConsulPrefixes: []string{"apps/{{ .Namespace }}/"}, VaultPaths: []string{"secret/data/{{ .Namespace }}/*"}}},
	})
	store := NewStore()
	store.Tenancy = ten
	v := &PresetValidator{Checks: store.Checks}
	resp := reviewOf(t, serve(t, v, fixture(t, "podpreset-create-sources.json"), "application/json"))
	if resp.Allowed {
		t.Fatal("a PodPreset in shop reading bank's secret was allowed")
	}
	for _, m := range []string{
		`spec.env[1].valueFrom.vault: Forbidden: Vault path "secret/data/bank/db" is not allowed: PodPresets in namespace shop may read only "secret/data/shop/*"`,
		`spec.envFrom[0].consulKV: Forbidden: Consul key "apps/bank/" is not allowed: PodPresets in namespace shop may read only "apps/shop/"`,
	} {
		if !strings.Contains(resp.Result.Message, m) {
			t.Errorf("the denial does not say %q:\n%s", m, resp.Result.Message)
		}
	}
	if strings.Contains(resp.Result.Message, "spec.env[0]") {
		t.Errorf("the allowed Consul key is in the denial: %s", resp.Result.Message)
	}
	// Without a sources configuration, any source is refused, saying why.
	store.Tenancy = sources.NewTenancy(nil)
	resp = reviewOf(t, serve(t, v, fixture(t, "podpreset-create-sources.json"), "application/json"))
	if resp.Allowed || !strings.Contains(resp.Result.Message, "Consul is not configured") {
		t.Errorf("without a configuration: %v", resp.Result)
	}
}

func TestStoreFollowsPutAndDelete(t *testing.T) {
	s := NewStore()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	if _, err := s.Load(cartPresets()[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.Set().Len() == 1 })
	s.Delete(Key{Kind: v1alpha1.KindPodPreset, NamespacedName: types.NamespacedName{Namespace: "shop", Name: "cart-db"}})
	waitFor(t, func() bool { return s.Set().Len() == 0 })
	cancel()
	<-done
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run make golden)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

// TestNamespaceTheCacheHasNotSeen: a pod created a moment after its
// namespace, before the cache has the namespace, gets the ClusterPodPresets
// that select the namespace's labels (read from the API server); a
// namespace the API server does not know either gets none, and an API
// server that fails is an error, not a pod silently without its presets.
func TestNamespaceTheCacheHasNotSeen(t *testing.T) {
	s := testScheme(t)
	fresh := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "payments", corev1.LabelMetadataName: "shop"}}}
	cases := map[string]struct {
		live    client.Reader
		wantEnv bool
		wantErr string
	}{
		"read from the API server":  {live: fake.NewClientBuilder().WithScheme(s).WithObjects(fresh).Build(), wantEnv: true},
		"unknown to the API server": {live: fake.NewClientBuilder().WithScheme(s).Build()},
		"no live reader":            {},
		"the API server fails": {
			live: interceptor.NewClient(fake.NewClientBuilder().WithScheme(s).Build(), interceptor.Funcs{
				Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
					return errors.New("connection refused")
				}}),
			wantErr: "reading namespace shop: connection refused",
		},
		"the API server does not answer": {
			live: interceptor.NewClient(fake.NewClientBuilder().WithScheme(s).Build(), interceptor.Funcs{
				Get: func(ctx context.Context, _ client.WithWatch, _ client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
					<-ctx.Done() // a connection that hangs: only the read's own bound ends it
					return ctx.Err()
				}}),
			wantErr: "reading namespace shop: context deadline exceeded",
		},
	}
	var lines []string
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			m := testMutator(t, cartPresets()...)
			m.Namespaces = fake.NewClientBuilder().WithScheme(s).Build() // the cache: no namespace yet
			m.LiveNamespaces = tc.live
			m.LiveReadTimeout = 100 * time.Millisecond
			// An operator at -v 0: admissions log at 1, errors always.
			m.LogLevel = 1
			lines = nil
			m.Log = funcr.NewJSON(func(obj string) { lines = append(lines, obj) }, funcr.Options{Verbosity: 0})
			before := testutil.ToFloat64(namespaceReads)
			ns, err := m.namespace(t.Context(), "shop")
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				// The API server fails open (or refuses the pod): the
				// webhook's log says why, at every verbosity.
				serve(t, m, fixture(t, "pod-create.json"), "application/json")
				if len(lines) != 1 || !strings.Contains(lines[0], `"msg":"pod admission failed"`) || !strings.Contains(lines[0], tc.wantErr) {
					t.Errorf("logged at -v 0: %q, want one line pod admission failed: %s", lines, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ns.Labels["team"] == "payments"; got != tc.wantEnv {
				t.Errorf("labels %v: the team label read is %t, want %t", ns.Labels, got, tc.wantEnv)
			}
			if ns.Labels[corev1.LabelMetadataName] != "shop" {
				t.Errorf("labels %v lack %s", ns.Labels, corev1.LabelMetadataName)
			}
			if reads := testutil.ToFloat64(namespaceReads) - before; (tc.live != nil) != (reads == 1) {
				t.Errorf("%v namespace reads counted", reads)
			}
			// Through the whole handler: the ClusterPodPreset "logging"
			// selects team=payments.
			resp := reviewOf(t, serve(t, m, fixture(t, "pod-create.json"), "application/json"))
			if got := strings.Contains(string(resp.Patch), "LOG_FORMAT"); got != tc.wantEnv {
				t.Errorf("LOG_FORMAT injected: %t, want %t (patch %s)", got, tc.wantEnv, resp.Patch)
			}
			if len(lines) != 0 {
				t.Errorf("a served admission logged at -v 0: %q", lines)
			}
		})
	}
}

// TestAdmissionLogLine: each admission's one line names the pod, the
// result, the presets applied, the fields of conflicts and the time taken,
// and carries no value: neither the preset's nor the pod's own.
func TestAdmissionLogLine(t *testing.T) {
	m := testMutator(t, cartPresets()...)
	var rv review[PodObject]
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(fixture(t, "pod-create.json"), &rv); err != nil {
		t.Fatal(err)
	}
	var lines []string
	log := funcr.NewJSON(func(obj string) { lines = append(lines, obj) }, funcr.Options{})
	_, out, err := m.admit(t.Context(), rv.Request)
	if err != nil {
		t.Fatal(err)
	}
	logAdmission(log, rv.Request, out, 1500*time.Microsecond, nil)
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1: %v", len(lines), lines)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"msg": "pod admission", "result": ResultInjected, "uid": "0df28fbd-5f5f-11e8-bc74-36e6bb280816", "dryRun": false,
		"applied":   []any{"PodPreset/cart-db@3", "ClusterPodPreset/logging@1"},
		"conflicts": []any{"PodPreset/cart-db@3 spec.containers[name=cart].env[name=DB_HOST]"},
	}
	for k, v := range want {
		if !cmp.Equal(got[k], v) {
			t.Errorf("%s: %v, want %v\n%s", k, got[k], v, lines[0])
		}
	}
	if pod, _ := got["pod"].(map[string]any); pod["namespace"] != "shop" {
		t.Errorf("pod %v, want a reference in namespace shop", got["pod"])
	}
	if _, ok := got["duration"]; !ok {
		t.Errorf("no duration: %s", lines[0])
	}
	for _, value := range []string{"db.shop.svc", "localhost", "5432", "json"} {
		if strings.Contains(lines[0], `"`+value+`"`) {
			t.Errorf("the line carries the value %q: %s", value, lines[0])
		}
	}
}
