package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// services passes every default policy: an edge with a rate limit and a
// timeout, a route with a timeout.
const services = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["reviews"]
			timeout: "5s"
			rateLimit: {requestsPerSecond: 100, burst: 200}
		}
		reviews: {
			ports: http: port: 9080
			versions: {
				v1: labels: version: "v1"
				v2: labels: version: "v2"
			}
			routes: split: {
				match: path: prefix: "/"
				to: {v1: 100, v2: 0}
				timeout: "2s"
			}
		}
`

// writeMesh writes a mesh repository into dir (mesh.cue: the services
// given, inside the mesh).
func writeMesh(t *testing.T, dir, svcs string) {
	t.Helper()
	write(t, dir, "cue.mod/module.cue", "module: \"example.com/t\"\nlanguage: version: \"v0.17.0\"\n")
	write(t, dir, "mesh.cue", `package mesh

import "weft.dev/weft"

mesh: weft.#Mesh & {
	name:        "t"
	trustDomain: "t.example"
	defaults: namespace: "t"
	services: {
`+svcs+`
	}
}
`)
}

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newServer() *xds.Server {
	return xds.New(xds.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// dupPublisher publishes every class twice: the real server refuses it.
type dupPublisher struct{ *xds.Server }

func (d dupPublisher) Publish(rev string, res *compiler.Result) error {
	return d.Server.Publish(rev, &compiler.Result{Classes: append(res.Classes, res.Classes[0])})
}

// TestReconcileKeepsLastGood: every kind of bad revision fails at its
// step, typed stalling or retryable, recorded in the server's status with
// its problems' file:line, and the revision served before keeps serving
// unchanged.
func TestReconcileKeepsLastGood(t *testing.T) {
	srv := newServer()
	gate := &pipeline.Gate{}
	p := &pipeline.Pipeline{Gate: gate, Publisher: srv}
	good := t.TempDir()
	writeMesh(t, good, services)
	ctx := context.Background()
	if _, err := p.Reconcile(ctx, pipeline.Revision{Name: "good", Dir: good}); err != nil {
		t.Fatal(err)
	}
	served := srv.Status()
	if served.Revision != "good" || len(served.Classes) != 3 {
		t.Fatalf("served %q with classes %v, want good with 3 classes", served.Revision, served.Classes)
	}

	cases := []struct {
		name      string
		setup     func(t *testing.T, dir string)
		tweak     func(p *pipeline.Pipeline) func()
		step      string
		retryable bool
		want      []string // in the returned error and the status
		problem   string   // "file:line" of the first problem in the status
	}{{
		name: "CUE error",
		setup: func(t *testing.T, dir string) {
			writeMesh(t, dir, strings.Replace(services, "port: 9080", `port: "9080"`, 1))
		},
		step:    status.StepLoad,
		want:    []string{"mesh.services.reviews.ports.http.port: conflicting values"},
		problem: "mesh.cue:20",
	}, {
		name: "symlink to /dev/zero",
		setup: func(t *testing.T, dir string) {
			writeMesh(t, dir, services)
			if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.cue")); err != nil {
				t.Fatal(err)
			}
		},
		step:    status.StepLoad,
		want:    []string{"zero.cue: is a symbolic link to /dev/zero, outside the CUE module"},
		problem: "zero.cue",
	}, {
		name: "policy deny",
		setup: func(t *testing.T, dir string) {
			writeMesh(t, dir, strings.Replace(services, `timeout: "2s"`, "", 1))
		},
		step:    status.StepVet,
		want:    []string{"deny route_timeout"},
		problem: "mesh.cue:",
	}, {
		name: "broken policy",
		setup: func(t *testing.T, dir string) {
			writeMesh(t, dir, services)
			write(t, dir, "policies/bad.rego", "package weft.rules.bad\n\ndeny contains msg if {\n")
		},
		step:    status.StepVet,
		want:    []string{"policies: policies/bad.rego:"},
		problem: "policies/bad.rego:",
	}, {
		name:  "check refuses",
		setup: func(t *testing.T, dir string) { writeMesh(t, dir, services) },
		tweak: func(p *pipeline.Pipeline) func() {
			p.Check = func(m *mesh.Model) error { return errors.New("trust domain changed") }
			return func() { p.Check = nil }
		},
		step: status.StepVet,
		want: []string{"revision bad: vet: trust domain changed"},
	}, {
		name:  "acceptance problem",
		setup: func(t *testing.T, dir string) { writeMesh(t, dir, services) },
		tweak: func(p *pipeline.Pipeline) func() {
			p.Gate.Accept = func(res *compiler.Result) schema.Errors {
				return schema.Errors{{Pos: mesh.Pos{File: "mesh.cue", Line: 22, Column: 5}, Path: "mesh.services.reviews.routes[0]",
					Msg: "route name too long for Envoy", Fix: "shorten it"}}
			}
			return func() { p.Gate.Accept = nil }
		},
		step:    status.StepAccept,
		want:    []string{"revision bad: accept: mesh.cue:22:5: mesh.services.reviews.routes[0]: route name too long for Envoy"},
		problem: "mesh.cue:22",
	}, {
		name:  "publish fails",
		setup: func(t *testing.T, dir string) { writeMesh(t, dir, services) },
		tweak: func(p *pipeline.Pipeline) func() {
			p.Publisher = dupPublisher{srv}
			return func() { p.Publisher = srv }
		},
		step:      status.StepPublish,
		retryable: true,
		want:      []string{"revision bad: publish: class frontend-v1 appears twice"},
	}, {
		name:  "over the time limit",
		setup: func(t *testing.T, dir string) { writeMesh(t, dir, services) },
		tweak: func(p *pipeline.Pipeline) func() {
			p.Gate.SetLimits(pipeline.Limits{Timeout: time.Nanosecond})
			return func() { p.Gate.SetLimits(pipeline.Limits{}) }
		},
		step:      status.StepLoad,
		retryable: true,
		want:      []string{"revision bad: load: did not finish within the revision time limit of 1ns (--revision-timeout)"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.setup(t, dir)
			if c.tweak != nil {
				defer c.tweak(p)()
			}
			_, err := p.Reconcile(ctx, pipeline.Revision{Name: "bad", Dir: dir})
			if err == nil {
				t.Fatal("Reconcile succeeded")
			}
			if pipeline.StepOf(err) != c.step || pipeline.IsRetryable(err) != c.retryable || pipeline.IsStalling(err) == c.retryable {
				t.Errorf("error %T at step %q (retryable %v), want step %q, retryable %v", errors.Unwrap(err), pipeline.StepOf(err), pipeline.IsRetryable(err), c.step, c.retryable)
			}
			st := srv.Status()
			a := st.LastAttempt
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
				if w = strings.TrimPrefix(w, "revision bad: "+c.step+": "); !strings.Contains(a.Error, w) {
					t.Errorf("status error does not contain %q:\n%s", w, a.Error)
				}
			}
			if strings.Contains(err.Error(), c.step+": "+c.step+":") {
				t.Errorf("the step is repeated: %v", err)
			}
			if a.Revision != "bad" || a.Step != c.step {
				t.Errorf("last attempt %s at %q, want bad at %q", a.Revision, a.Step, c.step)
			}
			if c.problem != "" {
				if len(a.Problems) == 0 || !strings.HasPrefix(fmt.Sprintf("%s:%d", a.Problems[0].File, a.Problems[0].Line), strings.TrimSuffix(c.problem, ":")) {
					t.Errorf("status problems %+v, want the first at %s", a.Problems, c.problem)
				}
			}
			if st.Revision != "good" || !sameClasses(st.Classes, served.Classes) {
				t.Errorf("served %q %v after a bad revision, want good's %v", st.Revision, st.Classes, served.Classes)
			}
			t.Logf("%s: %v", c.name, err)
		})
	}
	if a := p.LastApplied(); a == nil || a.Revision != "good" {
		t.Errorf("LastApplied = %+v, want good", a)
	}
}

func sameClasses(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRepublish: the last applied revision is published again, unchanged,
// to a new server (a control-plane restart).
func TestRepublish(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, services)
	first := newServer()
	pub := &switchPublisher{Server: first}
	p := &pipeline.Pipeline{Gate: &pipeline.Gate{}, Publisher: pub}
	if _, err := p.Reconcile(context.Background(), pipeline.Revision{Name: "r1", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	pub.Server = newServer()
	if err := p.Republish("r1"); err != nil {
		t.Fatal(err)
	}
	if a, b := first.Status(), pub.Server.Status(); b.Revision != "r1" || !sameClasses(a.Classes, b.Classes) {
		t.Errorf("republished %q %v, want r1 %v", b.Revision, b.Classes, a.Classes)
	}
}

type switchPublisher struct{ *xds.Server }

// rejectingPublisher refuses every revision as a version the proxies
// rejected before, like the xDS server does.
type rejectingPublisher struct{ *xds.Server }

func (r rejectingPublisher) Publish(string, *compiler.Result) error {
	return &xds.RejectedError{Class: "reviews-v1", Version: "r1/abc", NACK: &status.NACK{NodeID: "reviews-v1-0", Reason: "bad"}}
}

// A revision whose version a proxy rejected earlier stalls: publishing the
// same bytes again would be refused again, so it is not retried.
func TestRejectedVersionStalls(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, services)
	p := &pipeline.Pipeline{Gate: &pipeline.Gate{}, Publisher: rejectingPublisher{newServer()}}
	_, err := p.Reconcile(context.Background(), pipeline.Revision{Name: "r1", Dir: dir})
	if !pipeline.IsStalling(err) || pipeline.StepOf(err) != status.StepPublish || !strings.Contains(err.Error(), "a rejected version is not served again") {
		t.Fatalf("Reconcile = %v (stalling %v, step %q), want a stalling publish failure", err, pipeline.IsStalling(err), pipeline.StepOf(err))
	}
}

// Republish serves the revision asked for among the last published, not
// only the last one (the proxies may have rejected that), and refuses one
// it no longer has.
func TestRepublishEarlier(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, services)
	pub := &switchPublisher{Server: newServer()}
	p := &pipeline.Pipeline{Gate: &pipeline.Gate{}, Publisher: pub}
	for _, rev := range []string{"r1", "r2"} {
		if _, err := p.Reconcile(context.Background(), pipeline.Revision{Name: rev, Dir: dir}); err != nil {
			t.Fatal(err)
		}
	}
	pub.Server = newServer()
	if err := p.Republish("r1"); err != nil {
		t.Fatal(err)
	}
	if got := pub.Server.Status().Revision; got != "r1" {
		t.Errorf("republished %q, want r1", got)
	}
	if err := p.Republish("r0"); err == nil || !strings.Contains(err.Error(), "not among the last") {
		t.Errorf("Republish(r0) = %v, want an error", err)
	}
}

// TestReconcileCompilesOnlyWhatChanged: each revision is compiled from the
// previous one (compiler.CompileFrom): a change to reviews' split compiles
// reviews and its caller frontend again and reuses nothing else's
// classes; a revision that changes nothing compiles nothing, and what is
// served is exactly what a full compile gives.
func TestReconcileCompilesOnlyWhatChanged(t *testing.T) {
	srv := newServer()
	p := &pipeline.Pipeline{Gate: &pipeline.Gate{}, Publisher: srv}
	three := services + `
		ratings: {
			ports: http: port: 9090
			timeout: "1s"
			versions: v1: labels: version: "v1"
		}
`
	ctx := context.Background()
	stats := func(name, svcs string) compiler.CompileStats {
		t.Helper()
		dir := t.TempDir()
		writeMesh(t, dir, svcs)
		a, err := p.Reconcile(ctx, pipeline.Revision{Name: name, Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		m, err := schema.Load(dir, schema.Options{Revision: name})
		if err != nil {
			t.Fatal(err)
		}
		full, err := compiler.Compile(m, nil, compiler.Options{Revision: name})
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range full.Classes {
			if got := a.Result.Classes[i]; got.Name != c.Name || got.SnapshotVersion != c.SnapshotVersion {
				t.Fatalf("%s: served %s %s, a full compile gives %s %s", name, got.Name, got.SnapshotVersion, c.Name, c.SnapshotVersion)
			}
		}
		return a.Result.Stats
	}
	if s := stats("r1", three); s.Compiled != 3 || s.Reused != 0 {
		t.Errorf("first revision: %+v, want 3 compiled", s)
	}
	if s := stats("r2", strings.Replace(three, "to: {v1: 100, v2: 0}", "to: {v1: 90, v2: 10}", 1)); s.Compiled != 2 || s.Reused != 1 {
		t.Errorf("reviews' split changed: %+v, want reviews and frontend compiled, ratings reused", s)
	}
	if s := stats("r3", strings.Replace(three, "to: {v1: 100, v2: 0}", "to: {v1: 90, v2: 10}", 1)); s.Compiled != 0 || s.Reused != 3 {
		t.Errorf("nothing changed: %+v, want all 3 reused", s)
	}
}
