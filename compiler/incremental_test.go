package compiler

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weft-dev/weft/schema/mesh"
)

// edits are changes to one model; CompileFrom must give exactly what a
// fresh Compile of the edited model gives, whatever the edit touches.
var edits = []struct {
	name string
	edit func(m *mesh.Model)
}{
	{"nothing", func(*mesh.Model) {}},
	{"revision", func(m *mesh.Model) { m.Revision = "main@sha1:fedcba9876543210" }},
	{"split weights", func(m *mesh.Model) {
		for _, s := range sorted(m) {
			for i := range s.Routes {
				if len(s.Routes[i].To) > 1 {
					for v := range s.Routes[i].To {
						s.Routes[i].To[v] = 0
					}
					for _, v := range mesh.SortedKeys(s.Routes[i].To)[:1] {
						s.Routes[i].To[v] = 100
					}
					return
				}
			}
		}
	}},
	{"service timeout", func(m *mesh.Model) { first(m).Timeout = dur("7s") }},
	{"last service timeout", func(m *mesh.Model) { last(m).Timeout = dur("7s") }},
	{"retries", func(m *mesh.Model) { last(m).Retries = &mesh.Retries{Attempts: 4, On: []string{"5xx"}} }},
	{"namespace (identity)", func(m *mesh.Model) { last(m).Namespace = "other" }},
	{"service account", func(m *mesh.Model) { first(m).ServiceAccount = "renamed" }},
	{"trust domain", func(m *mesh.Model) { m.TrustDomain = "other.example" }},
	{"new call", func(m *mesh.Model) {
		s := sorted(m)
		s[0].Calls = append(s[0].Calls, s[len(s)-1].Name)
	}},
	{"dropped calls", func(m *mesh.Model) {
		for _, s := range sorted(m) {
			if len(s.Calls) > 0 {
				s.Calls = nil
				return
			}
		}
	}},
	{"new service", func(m *mesh.Model) {
		n := svc("ratings", 9090, "v1")
		n.Namespace, n.ServiceAccount, n.MTLS = "shop", "ratings", mesh.MTLSStrict
		n.Timeout, n.Retries = dur("1s"), &mesh.Retries{Attempts: 1}
		m.Services["ratings"] = n
		first(m).Calls = append(first(m).Calls, "ratings")
	}},
	{"removed version", func(m *mesh.Model) {
		for _, s := range sorted(m) {
			if len(s.Versions) > 1 {
				for _, v := range s.VersionNames()[1:] {
					delete(s.Versions, v)
					for i := range s.Routes {
						delete(s.Routes[i].To, v)
					}
				}
				return
			}
		}
	}},
	{"endpoint", func(m *mesh.Model) {
		for _, v := range last(m).Versions {
			v.Endpoints = append(v.Endpoints, "10.9.9.9:1234")
		}
	}},
	{"authz allow", func(m *mesh.Model) {
		last(m).Authz = &mesh.Authz{Allow: []mesh.AuthzRule{{From: []string{first(m).Name}}}, AllowSet: true}
	}},
	{"moved line", func(m *mesh.Model) {
		p := mesh.ServicePath(last(m).Name)
		pos := m.Positions[p]
		pos.Line += 3
		m.Positions[p] = pos
	}},
	{"defaults", func(m *mesh.Model) {
		m.Defaults.Timeout = *dur("9s")
		for _, s := range m.Services {
			s.Timeout = dur("9s")
		}
	}},
}

func sorted(m *mesh.Model) []*mesh.Service {
	var out []*mesh.Service
	for _, n := range m.ServiceNames() {
		out = append(out, m.Services[n])
	}
	return out
}

func first(m *mesh.Model) *mesh.Service { return sorted(m)[0] }
func last(m *mesh.Model) *mesh.Service  { s := sorted(m); return s[len(s)-1] }

// TestCompileFromEqualsCompile applies every edit to every golden case
// and compares CompileFrom(previous result, edited model) with Compile of
// the edited model: same classes, resources, snapshot versions and
// provenance.
func TestCompileFromEqualsCompile(t *testing.T) {
	checked := 0
	for i, tc := range cases() {
		for _, e := range edits {
			t.Run(tc.name+"/"+e.name, func(t *testing.T) {
				// Two independent models: a case's services may be
				// shared between the models one case value builds.
				base, eps := cases()[i].build()
				prev, err := Compile(base, eps, Options{})
				if err != nil {
					t.Fatal(err)
				}
				edited, eps2 := cases()[i].build()
				e.edit(edited)
				fresh, ferr := Compile(edited, eps2, Options{})
				next, nerr := CompileFrom(prev, edited, eps2, Options{})
				if (ferr == nil) != (nerr == nil) {
					t.Fatalf("Compile: %v; CompileFrom: %v", ferr, nerr)
				}
				if ferr != nil {
					return
				}
				assertSameResult(t, fresh, next)
				checked++
				if (e.name == "nothing" || e.name == "revision") && next.Stats.Compiled != 0 {
					t.Errorf("%d services compiled again, want 0 (stats %+v)", next.Stats.Compiled, next.Stats)
				}
			})
		}
	}
	t.Logf("%d edited models compiled both ways", checked)
}

// TestCompileFromRecompilesDependentsOnly: in a chain a -> b -> c (calls),
// with d alone, a change to c's routes recompiles c (its own inbound
// side) and b (which routes to c), not a or d; a change to c's identity
// also recompiles nothing more, but one to b's identity recompiles a (its
// cluster checks b's SPIFFE id) and c (b is c's default caller).
func TestCompileFromRecompilesDependentsOnly(t *testing.T) {
	build := func() *mesh.Model {
		return newModel(calls(svc("a", 8080), "b"), calls(svc("b", 8081), "c"), svc("c", 8082, "v1", "v2"), svc("d", 8083))
	}
	prev, err := Compile(build(), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(m *mesh.Model)
		want []string // services compiled again
	}{
		{"c's timeout", func(m *mesh.Model) { m.Services["c"].Timeout = dur("3s") }, []string{"b", "c"}},
		{"c's identity", func(m *mesh.Model) { m.Services["c"].ServiceAccount = "c2" }, []string{"b", "c"}},
		{"b's identity", func(m *mesh.Model) { m.Services["b"].ServiceAccount = "b2" }, []string{"a", "b", "c"}},
		{"d's endpoints", func(m *mesh.Model) { m.Services["d"].Versions["v1"].Endpoints = []string{"10.1.1.1:8083"} }, []string{"d"}},
		{"a calls d", func(m *mesh.Model) { m.Services["a"].Calls = []string{"b", "d"} }, []string{"a", "d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := build()
			tc.edit(m)
			next, err := CompileFrom(prev, m, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			fresh, err := Compile(m, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			assertSameResult(t, fresh, next)
			var got []string
			for _, c := range next.Classes {
				if c.Version == firstVersion(next, c.Service) && !sameClass(prev.Class(c.Name), c) {
					got = append(got, c.Service)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || next.Stats.Compiled != len(tc.want) {
				t.Errorf("compiled again: %v (stats %+v), want %v", got, next.Stats, tc.want)
			}
		})
	}
}

func firstVersion(r *Result, service string) string {
	for _, c := range r.Classes {
		if c.Service == service {
			return c.Version
		}
	}
	return ""
}

// sameClass reports whether b reuses a's resources (the very messages).
func sameClass(a, b *Class) bool {
	if a == nil || b == nil {
		return false
	}
	for _, t := range ResourceTypes {
		if len(a.Resources[t]) != len(b.Resources[t]) {
			return false
		}
		for i := range a.Resources[t] {
			if a.Resources[t][i] != b.Resources[t][i] {
				return false
			}
		}
	}
	return true
}

func assertSameResult(t *testing.T, want, got *Result) {
	t.Helper()
	if len(want.Classes) != len(got.Classes) {
		t.Fatalf("%d classes, want %d", len(got.Classes), len(want.Classes))
	}
	for i, w := range want.Classes {
		g := got.Classes[i]
		if w.Name != g.Name || w.Service != g.Service || w.Version != g.Version {
			t.Fatalf("class %d: %s, want %s", i, g.Name, w.Name)
		}
		if w.SnapshotVersion != g.SnapshotVersion {
			t.Errorf("%s: snapshot version %s, want %s", w.Name, g.SnapshotVersion, w.SnapshotVersion)
		}
		if fmt.Sprint(w.Provenance) != fmt.Sprint(g.Provenance) {
			t.Errorf("%s: provenance differs:\n got %v\nwant %v", w.Name, g.Provenance, w.Provenance)
		}
		for _, typ := range ResourceTypes {
			if len(w.Resources[typ]) != len(g.Resources[typ]) {
				t.Fatalf("%s: %d %s, want %d", w.Name, len(g.Resources[typ]), typ, len(w.Resources[typ]))
			}
			for j := range w.Resources[typ] {
				if !proto.Equal(w.Resources[typ][j], g.Resources[typ][j]) {
					t.Errorf("%s: %s #%d differs", w.Name, typ, j)
				}
			}
		}
	}
}

// TestIncremental: revision after revision, an Incremental compiles only
// what changed, gives Compile's result, and keeps its last good result
// across a failed revision.
func TestIncremental(t *testing.T) {
	build := func() *mesh.Model {
		return newModel(calls(svc("a", 8080), "b"), calls(svc("b", 8081), "c"), svc("c", 8082, "v1", "v2"), svc("d", 8083))
	}
	var inc Incremental
	first, err := inc.Compile(build(), nil, Options{})
	if err != nil || first.Stats != (CompileStats{Compiled: 4}) {
		t.Fatalf("first: %+v %v", first.Stats, err)
	}
	m := build()
	m.Services["d"].Timeout = dur("9s")
	second, err := inc.Compile(m, nil, Options{})
	if err != nil || second.Stats != (CompileStats{Compiled: 1, Reused: 3}) {
		t.Fatalf("second: %+v %v", second.Stats, err)
	}
	fresh, err := Compile(m, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	assertSameResult(t, fresh, second)
	bad := build()
	bad.Services["a"].Calls = []string{"ghost"}
	if _, err := inc.Compile(bad, nil, Options{}); err == nil {
		t.Fatal("a call to an unknown service compiled")
	}
	third, err := inc.Compile(m, nil, Options{Revision: "r3"})
	if err != nil || third.Stats != (CompileStats{Reused: 4}) {
		t.Fatalf("after a failure: %+v %v", third.Stats, err)
	}
	inc.Reset()
	if r, _ := inc.Compile(m, nil, Options{}); r.Stats != (CompileStats{Compiled: 4}) {
		t.Errorf("after Reset: %+v", r.Stats)
	}
}
