package v1alpha1_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/api/status"
)

// Compile time: the interfaces Flux's helpers take.
var (
	_ conditions.Setter                      = &meshv1.Mesh{}
	_ meta.ObjectWithConditions              = &meshv1.Mesh{}
	_ meta.ObjectWithConditionsSetter        = &meshv1.Mesh{}
	_ meta.ObjectWithAnnotationRequests      = &meshv1.Mesh{}
	_ meta.StatusWithHandledReconcileRequest = meshv1.MeshStatus{}
)

// Flux's conditions helpers (what the controller will use) read and write
// the Mesh's conditions, and Ready/Reconciling/Stalled keep their
// polarity.
func TestFluxConditionsHelpers(t *testing.T) {
	m := &meshv1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "weft-system", Generation: 3}}

	conditions.MarkReconciling(m, meta.ProgressingReason, "fetching revision %s", "main@sha1:abc")
	conditions.MarkUnknown(m, meta.ReadyCondition, meta.ProgressingReason, "reconciliation in progress")
	if !conditions.IsReconciling(m) || conditions.IsReady(m) {
		t.Fatalf("after MarkReconciling: reconciling=%v ready=%v, want true false", conditions.IsReconciling(m), conditions.IsReady(m))
	}

	conditions.MarkFalse(m, meta.ReadyCondition, meshv1.LoadFailedReason, "orders.cue:12:3: mesh.services.orders.routes[0].to.v3: unknown version")
	conditions.MarkStalled(m, meshv1.LoadFailedReason, "the revision does not load")
	conditions.Delete(m, meta.ReconcilingCondition)
	if got := conditions.GetReason(m, meta.ReadyCondition); got != meshv1.LoadFailedReason {
		t.Errorf("Ready reason = %q, want %q", got, meshv1.LoadFailedReason)
	}
	if !conditions.IsStalled(m) || conditions.IsReconciling(m) {
		t.Errorf("stalled=%v reconciling=%v, want true false", conditions.IsStalled(m), conditions.IsReconciling(m))
	}
	if got := conditions.GetMessage(m, meta.ReadyCondition); !strings.HasPrefix(got, "orders.cue:12:3:") {
		t.Errorf("Ready message = %q, want the file:line first", got)
	}

	conditions.MarkTrue(m, meta.ReadyCondition, meta.SucceededReason, "serving main@sha1:abc")
	conditions.Delete(m, meta.StalledCondition)
	if !conditions.IsReady(m) || conditions.IsStalled(m) {
		t.Errorf("ready=%v stalled=%v, want true false", conditions.IsReady(m), conditions.IsStalled(m))
	}
	if c := conditions.Get(m, meta.ReadyCondition); c == nil || c.ObservedGeneration != 3 {
		t.Errorf("Ready = %+v, want observedGeneration 3 (from the object)", c)
	}
	if len(m.Status.Conditions) != 1 {
		t.Errorf("conditions = %+v, want only Ready", m.Status.Conditions)
	}
}

func TestReconcileRequestAnnotation(t *testing.T) {
	m := &meshv1.Mesh{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{meta.ReconcileRequestAnnotation: "2026-11-30T10:00:00Z"}}}
	v, ok := meta.ReconcileAnnotationValue(m.GetAnnotations())
	if !ok || v == m.GetLastHandledReconcileRequest() {
		t.Fatalf("a new request must differ from the handled one: %q %v", v, ok)
	}
	m.Status.SetLastHandledReconcileRequest(v)
	if got := m.GetLastHandledReconcileRequest(); got != v {
		t.Errorf("GetLastHandledReconcileRequest = %q, want %q", got, v)
	}
	b, _ := json.Marshal(m.Status)
	if !strings.Contains(string(b), `"lastHandledReconcileAt":"2026-11-30T10:00:00Z"`) {
		t.Errorf("status JSON %s lacks lastHandledReconcileAt (Flux's field name)", b)
	}
}

func TestDurations(t *testing.T) {
	d := func(s string) *metav1.Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return &metav1.Duration{Duration: v}
	}
	tests := []struct {
		name                          string
		spec                          meshv1.MeshSpec
		interval, retry, timeout, req time.Duration
	}{
		{"unset: the default interval for all", meshv1.MeshSpec{}, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute},
		{"interval only", meshv1.MeshSpec{Interval: *d("1m")}, time.Minute, time.Minute, time.Minute, time.Minute},
		{"all set", meshv1.MeshSpec{Interval: *d("5m"), RetryInterval: d("30s"), Timeout: d("2m")}, 5 * time.Minute, 30 * time.Second, 2 * time.Minute, 5 * time.Minute},
		{"zero pointers fall back", meshv1.MeshSpec{Interval: *d("5m"), RetryInterval: d("0s"), Timeout: d("0s")}, 5 * time.Minute, 5 * time.Minute, 5 * time.Minute, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &meshv1.Mesh{Spec: tt.spec}
			got := []time.Duration{m.GetInterval(), m.GetRetryInterval(), m.GetTimeout(), m.GetRequeueAfter()}
			want := []time.Duration{tt.interval, tt.retry, tt.timeout, tt.req}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("interval, retry, timeout, requeue = %v, want %v", got, want)
			}
		})
	}
}

// An unset interval is left out of the JSON, so the API server's default
// (10m) applies instead of "0s".
func TestUnsetIntervalIsOmitted(t *testing.T) {
	b, err := json.Marshal(meshv1.MeshSpec{SourceRef: meshv1.SourceReference{Kind: meshv1.GitRepositoryKind, Name: "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"sourceRef":{"kind":"GitRepository","name":"shop"}}`; string(b) != want {
		t.Errorf("JSON = %s, want %s", b, want)
	}
}

func TestSourceNamespace(t *testing.T) {
	m := &meshv1.Mesh{ObjectMeta: metav1.ObjectMeta{Namespace: "shop"}}
	if got := m.SourceNamespace(); got != "shop" {
		t.Errorf("SourceNamespace = %q, want the Mesh's namespace", got)
	}
	m.Spec.SourceRef.Namespace = "flux-system"
	if got := m.SourceNamespace(); got != "flux-system" {
		t.Errorf("SourceNamespace = %q, want flux-system", got)
	}
}

func TestProxiesSummary(t *testing.T) {
	tests := []struct {
		total, inSync, nacking int32
		want                   string
	}{
		{0, 0, 0, "0/0"},
		{3, 3, 0, "3/3"},
		{5, 3, 2, "3/5, 2 NACKing"},
	}
	for _, tt := range tests {
		var p meshv1.ProxiesStatus
		p.SetCounts(tt.total, tt.inSync, tt.nacking)
		if p.Summary != tt.want || p.Total != tt.total || p.InSync != tt.inSync || p.NACKing != tt.nacking {
			t.Errorf("SetCounts(%d, %d, %d) = %+v, want summary %q", tt.total, tt.inSync, tt.nacking, p, tt.want)
		}
	}
}

// Problem mirrors status.Problem: the same fields under the same JSON
// names, so the control plane's problems reach the Mesh unchanged.
func TestProblemMirrorsStatusProblem(t *testing.T) {
	fields := func(v any) map[string]string {
		out := map[string]string{}
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			out[rt.Field(i).Name] = rt.Field(i).Tag.Get("json")
		}
		return out
	}
	if got, want := fields(meshv1.Problem{}), fields(status.Problem{}); !reflect.DeepEqual(got, want) {
		t.Errorf("v1alpha1.Problem fields %v, status.Problem fields %v: keep them the same", got, want)
	}
}

func TestFromStatusProblems(t *testing.T) {
	in := []status.Problem{{File: "orders.cue", Line: 12, Column: 3, Path: "mesh.services.orders.routes[0].to.v3", Message: "unknown version v3", Fix: "use v1 or v2"}}
	got, truncated := meshv1.FromStatusProblems(in)
	want := []meshv1.Problem{{File: "orders.cue", Line: 12, Column: 3, Path: "mesh.services.orders.routes[0].to.v3", Message: "unknown version v3", Fix: "use v1 or v2"}}
	if !reflect.DeepEqual(got, want) || truncated != 0 {
		t.Errorf("FromStatusProblems = %+v, %d; want %+v, 0", got, truncated, want)
	}

	many := make([]status.Problem, meshv1.MaxProblems+7)
	for i := range many {
		many[i].Message = "m"
	}
	got, truncated = meshv1.FromStatusProblems(many)
	if len(got) != meshv1.MaxProblems || truncated != 7 {
		t.Errorf("%d problems -> %d kept, %d truncated; want %d, 7", len(many), len(got), truncated, meshv1.MaxProblems)
	}

	long := strings.Repeat("é", 3000) // 6000 bytes
	got, _ = meshv1.FromStatusProblems([]status.Problem{{Message: long}})
	if m := got[0].Message; len(m) > 4096 || !utf8.ValidString(m) || !strings.HasSuffix(m, "…") {
		t.Errorf("a 6000-byte message became %d bytes (valid UTF-8: %v): want at most 4096, valid, ending in …", len(m), utf8.ValidString(m))
	}
}

func TestAddToScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := meshv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	gvks, _, err := s.ObjectKinds(&meshv1.Mesh{})
	if err != nil || len(gvks) != 1 || gvks[0].String() != "mesh.weft.dev/v1alpha1, Kind=Mesh" {
		t.Errorf("ObjectKinds(Mesh) = %v, %v", gvks, err)
	}
	if _, err := s.New(meshv1.GroupVersion.WithKind("MeshList")); err != nil {
		t.Errorf("MeshList is not registered: %v", err)
	}
}

// DeepCopy copies every pointer and slice (the generated code is current;
// this guards against a hand edit).
func TestDeepCopyIsDeep(t *testing.T) {
	m := &meshv1.Mesh{
		Spec: meshv1.MeshSpec{Policies: []string{"policies"}, Timeout: &metav1.Duration{Duration: time.Second}},
		Status: meshv1.MeshStatus{
			Proxies: &meshv1.ProxiesStatus{NACKs: []meshv1.ProxyNACK{{Proxy: "a"}}},
			Failure: &meshv1.Failure{Step: meshv1.StepLoad, Problems: []meshv1.Problem{{Message: "x"}}},
		},
	}
	c := m.DeepCopy()
	c.Spec.Policies[0] = "other"
	c.Spec.Timeout.Duration = time.Hour
	c.Status.Proxies.NACKs[0].Proxy = "b"
	c.Status.Failure.Problems[0].Message = "y"
	if m.Spec.Policies[0] != "policies" || m.Spec.Timeout.Duration != time.Second ||
		m.Status.Proxies.NACKs[0].Proxy != "a" || m.Status.Failure.Problems[0].Message != "x" {
		t.Errorf("DeepCopy shares memory with the original: %+v", m)
	}
}
