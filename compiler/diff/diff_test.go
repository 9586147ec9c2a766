package diff

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/schema/mesh"
)

// svc is a service with one HTTP port and versions, each with an endpoint.
func svc(name string, port uint32, calls []string, versions ...string) *mesh.Service {
	s := &mesh.Service{
		Name: name, Namespace: "shop", ServiceAccount: name, MTLS: mesh.MTLSStrict,
		Ports:    map[string]mesh.Port{"http": {Name: "http", Port: port, Protocol: mesh.HTTP}},
		Versions: map[string]*mesh.Version{},
		Calls:    calls,
		Timeout:  &mesh.Duration{Duration: 2 * time.Second},
		Retries:  &mesh.Retries{Attempts: 2, On: []string{"reset"}},
	}
	if len(versions) == 0 {
		versions = []string{"v1"}
	}
	for i, v := range versions {
		s.Versions[v] = &mesh.Version{Name: v, Replicas: 1, Endpoints: []string{fmt.Sprintf("10.0.0.%d:%d", i+1, port)}}
	}
	return s
}

func model(svcs ...*mesh.Service) *mesh.Model {
	m := &mesh.Model{Name: "shop", TrustDomain: "shop.example", Services: map[string]*mesh.Service{}, Positions: mesh.Positions{},
		Defaults: mesh.Defaults{Namespace: "shop", MTLS: mesh.MTLSStrict, Timeout: mesh.Duration{Duration: 2 * time.Second}, Retries: mesh.Retries{Attempts: 2, On: []string{"reset"}}}}
	for _, s := range svcs {
		m.Services[s.Name] = s
	}
	return m
}

func side(t *testing.T, m *mesh.Model, opts compiler.Options) *Side {
	t.Helper()
	r, err := compiler.Compile(m, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &Side{Model: m, Result: r}
}

func texts(ls []Line) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Text)
	}
	return out
}

// TestEdges: the authorization edges a change opens and closes, with the
// semantics of the callee's proxy.
func TestEdges(t *testing.T) {
	base := func() *mesh.Model {
		return model(svc("cart", 8080, []string{"orders"}), svc("web", 8081, nil), svc("orders", 8082, nil), svc("audit", 8083, nil))
	}
	for _, tc := range []struct {
		name string
		edit func(m *mesh.Model)
		want []string
	}{
		{"default callers: a new call opens an edge", func(m *mesh.Model) { m.Services["web"].Calls = []string{"orders"} },
			[]string{"orders may now be called by web"}},
		{"allow list without the caller", func(m *mesh.Model) {
			m.Services["orders"].Authz = &mesh.Authz{Allow: []mesh.AuthzRule{{From: []string{"web"}}}, AllowSet: true}
		}, []string{"orders may now be called by web", "orders may no longer be called by cart"}},
		{"empty allow list", func(m *mesh.Model) { m.Services["orders"].Authz = &mesh.Authz{AllowSet: true} },
			[]string{"orders may no longer be called by cart"}},
		{"allow everyone", func(m *mesh.Model) {
			m.Services["orders"].Authz = &mesh.Authz{Allow: []mesh.AuthzRule{{From: []string{"*"}}}, Deny: []mesh.AuthzRule{{From: []string{"audit"}}}}
		}, []string{"orders may now be called by any service of the mesh but audit"}},
		{"a conditional deny keeps the edge", func(m *mesh.Model) {
			m.Services["orders"].Authz = &mesh.Authz{Deny: []mesh.AuthzRule{{From: []string{"cart"}, Methods: []string{"DELETE"}}}}
		}, nil},
		{"an unconditional deny closes it", func(m *mesh.Model) {
			m.Services["orders"].Authz = &mesh.Authz{Deny: []mesh.AuthzRule{{From: []string{"cart"}}}}
		}, []string{"orders may no longer be called by cart"}},
		{"plaintext: names never match", func(m *mesh.Model) {
			m.Services["orders"].MTLS = mesh.MTLSDisable
			m.Services["orders"].Authz = &mesh.Authz{Allow: []mesh.AuthzRule{{From: []string{"cart"}}}}
		}, []string{"orders may no longer be called by cart"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.edit(m)
			var got []string
			for _, l := range edgeLines(base(), m) {
				got = append(got, l.Text)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("edges %q, want %q", got, tc.want)
			}
		})
	}
	// From any to a list, and back.
	open := base()
	open.Services["orders"].Authz = &mesh.Authz{Allow: []mesh.AuthzRule{{}}}
	if got := texts(edgeLines(open, base())); !slices.Equal(got, []string{"orders may no longer be called by any service of the mesh: only by cart"}) {
		t.Errorf("any -> default: %q", got)
	}
}

// TestSummaryNeverMissesACompiledChange: a compiled difference that no
// model difference explains (here: another outbound port) still gets a
// line per class, by class and resource.
func TestSummaryNeverMissesACompiledChange(t *testing.T) {
	m := model(svc("cart", 8080, []string{"orders"}), svc("orders", 8082, nil))
	e := Compare("prod", side(t, m, compiler.Options{}), side(t, m, compiler.Options{OutboundPort: 15002}))
	got := texts(e.Lines)
	want := []string{"cart-v1, orders-v1: listener outbound changed"}
	if !slices.Equal(got, want) || e.Status != Changed {
		t.Errorf("lines %q (%s), want %q", got, e.Status, want)
	}
}

// TestDefaultsAreToldOnce: a changed mesh default is one line, not one
// per service that inherits it; a service that sets its own value is
// unaffected.
func TestDefaultsAreToldOnce(t *testing.T) {
	a := model(svc("cart", 8080, []string{"orders"}), svc("orders", 8082, nil))
	b := model(svc("cart", 8080, []string{"orders"}), svc("orders", 8082, nil))
	b.Defaults.Timeout = mesh.Duration{Duration: 3 * time.Second}
	b.Services["cart"].Timeout = &mesh.Duration{Duration: 3 * time.Second}
	b.Services["orders"].Timeout = &mesh.Duration{Duration: 3 * time.Second}
	e := Compare("prod", side(t, a, compiler.Options{}), side(t, b, compiler.Options{}))
	if got := texts(e.Lines); !slices.Equal(got, []string{"defaults.timeout 2s → 3s"}) {
		t.Errorf("lines %q", got)
	}
}

// TestMarkdownStaysUnderTheCommentLimit: a change to hundreds of classes
// is cut, with a note, below GitHub's 65,536 characters.
func TestMarkdownStaysUnderTheCommentLimit(t *testing.T) {
	var a, b []*mesh.Service
	for i := range 400 {
		name := fmt.Sprintf("svc-%03d", i)
		deps := []string{fmt.Sprintf("svc-%03d", (i+1)%400)}
		a = append(a, svc(name, 8080, deps))
		s := svc(name, 8080, deps)
		s.Timeout = &mesh.Duration{Duration: 7 * time.Second}
		b = append(b, s)
	}
	rep := &Report{Base: "main", Head: "HEAD", Envs: []EnvDiff{Compare("prod", side(t, model(a...), compiler.Options{}), side(t, model(b...), compiler.Options{}))}}
	md := rep.Markdown(CommentLimit - 1024)
	if len(md) >= CommentLimit || !strings.Contains(md, "more changed class groups not shown") {
		t.Errorf("markdown: %d characters, note missing:\n%s", len(md), md[max(0, len(md)-600):])
	}
	if small := rep.Markdown(3000); len(small) > 3000 || !strings.Contains(small, "more summary lines not shown") {
		t.Errorf("markdown cut at 3000: %d characters:\n%s", len(small), small)
	}
	if strings.Count(md, "<details>") != strings.Count(md, "</details>") {
		t.Error("unbalanced <details>")
	}
	if full := rep.Text(); !strings.Contains(full, "svc-399-v1: changed") {
		t.Error("the text output is not cut")
	}
}

// TestDeterministic: the same inputs give the same bytes, in every format.
func TestDeterministic(t *testing.T) {
	build := func() *Report {
		a := model(svc("cart", 8080, []string{"orders", "web"}), svc("web", 8081, nil, "v1", "v2"), svc("orders", 8082, nil))
		b := model(svc("cart", 8080, []string{"orders"}), svc("web", 8081, nil, "v1"), svc("orders", 8082, nil), svc("new", 8084, nil))
		b.Services["orders"].Authz = &mesh.Authz{Allow: []mesh.AuthzRule{{From: []string{"cart", "new"}}}}
		return &Report{Base: "a", Head: "b", Envs: []EnvDiff{Compare("prod", side(t, a, compiler.Options{}), side(t, b, compiler.Options{}))}}
	}
	first := build()
	j1, _ := first.JSON()
	for range 5 {
		r := build()
		j, _ := r.JSON()
		if r.Text() != first.Text() || r.Markdown(CommentLimit) != first.Markdown(CommentLimit) || string(j) != string(j1) {
			t.Fatal("two runs differ")
		}
	}
}
