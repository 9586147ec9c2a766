package controller

import (
	"errors"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weft-dev/weft/compiler"
	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// The oldest Mesh not being deleted is served; ties go by namespace and
// name.
func TestOldest(t *testing.T) {
	at := func(s int) metav1.Time { return metav1.NewTime(time.Unix(int64(s), 0)) }
	gone := metav1.Now()
	mk := func(ns, name string, created int, deleting bool) meshv1.Mesh {
		m := meshv1.Mesh{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: at(created)}}
		if deleting {
			m.DeletionTimestamp = &gone
		}
		return m
	}
	for _, tt := range []struct {
		name string
		ms   []meshv1.Mesh
		want string
	}{
		{"none", nil, ""},
		{"oldest", []meshv1.Mesh{mk("a", "new", 20, false), mk("b", "old", 10, false)}, "b/old"},
		{"deleting skipped", []meshv1.Mesh{mk("a", "new", 20, false), mk("b", "old", 10, true)}, "a/new"},
		{"tie by namespace", []meshv1.Mesh{mk("b", "x", 10, false), mk("a", "y", 10, false)}, "a/y"},
		{"tie by name", []meshv1.Mesh{mk("a", "z", 10, false), mk("a", "y", 10, false)}, "a/y"},
		{"all deleting", []meshv1.Mesh{mk("a", "z", 10, true)}, ""},
	} {
		got := ""
		if m := Oldest(tt.ms); m != nil {
			got = m.Namespace + "/" + m.Name
		}
		if got != tt.want {
			t.Errorf("%s: Oldest = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// Each failed step has its Ready reason.
func TestReasonOf(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{&pipeline.StallingError{Step: "fetch", Err: errors.New("no path")}, meta.ArtifactFailedReason},
		{&pipeline.RetryableError{Step: "fetch", Err: &pipeline.TimeoutError{Limit: time.Second}}, meta.ReconciliationFailedReason},
		{&pipeline.RetryableError{Step: "fetch", Err: errors.New("503")}, meta.ArtifactFailedReason},
		{&pipeline.StallingError{Step: "load", Err: errors.New("cue")}, meshv1.LoadFailedReason},
		{&pipeline.RetryableError{Step: "load", Err: &pipeline.TimeoutError{Limit: time.Second}}, meta.ReconciliationFailedReason},
		{&pipeline.StallingError{Step: "vet", Err: errors.New("deny")}, meshv1.PolicyDeniedReason},
		{&pipeline.StallingError{Step: "compile", Err: errors.New("x")}, meshv1.CompileFailedReason},
		{&pipeline.StallingError{Step: "accept", Err: errors.New("x")}, meshv1.CompileFailedReason},
		{&pipeline.RetryableError{Step: "publish", Err: errors.New("x")}, meshv1.PublishFailedReason},
		{&pipeline.StallingError{Step: "publish", Err: &xds.RejectedError{}}, meshv1.ProxyRejectedReason},
	} {
		if got := reasonOf(tt.err); got != tt.want {
			t.Errorf("reasonOf(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// The Ready message of a failure names the step, the revision and the
// first problems with their repository paths; the rest are counted.
func TestFailureMessage(t *testing.T) {
	es := schema.Errors{}
	for i := 1; i <= 5; i++ {
		es = append(es, &schema.Error{Pos: mesh.Pos{File: "/tmp/weft-artifact-42/mesh/mesh.cue", Line: i, Column: 3}, Path: "mesh.services.a", Msg: "bad"})
	}
	err := &pipeline.StallingError{Revision: "main@sha1:1", Step: "load", Err: es}
	f := failureOf(err, "main@sha1:1", relPaths)
	got := failureMessage(f, err)
	want := "load failed for revision main@sha1:1: mesh/mesh.cue:1:3: mesh.services.a: bad; mesh/mesh.cue:2:3: mesh.services.a: bad; " +
		"mesh/mesh.cue:3:3: mesh.services.a: bad (and 2 more: kubectl get mesh -o yaml shows status.failure)"
	if got != want {
		t.Errorf("message\n %q\nwant\n %q", got, want)
	}
	// An error without positions is its innermost text, paths rewritten.
	err2 := &pipeline.RetryableError{Revision: "r", Step: "fetch", Err: errors.New("GET /tmp/weft-artifact-1/x: refused")}
	if f := failureOf(err2, "r", relPaths); f.Step != "fetch" || f.Problems[0].Message != "GET x: refused" {
		t.Errorf("failure %+v", f)
	}
}

// SnapshotVersion changes with any class's version and only then.
func TestSnapshotVersion(t *testing.T) {
	res := func(vs ...string) *compiler.Result {
		r := &compiler.Result{}
		for i, v := range vs {
			r.Classes = append(r.Classes, &compiler.Class{Name: string(rune('a' + i)), SnapshotVersion: v})
		}
		return r
	}
	a := SnapshotVersion("r1", res("r1/aa", "r1/bb"))
	if a != SnapshotVersion("r1", res("r1/aa", "r1/bb")) || a == SnapshotVersion("r1", res("r1/aa", "r1/bc")) {
		t.Errorf("SnapshotVersion is not a function of the class versions")
	}
	if len(a) != len("r1/")+12 || a[:3] != "r1/" {
		t.Errorf("SnapshotVersion %q: want r1/<12 hex>", a)
	}
}
