package schema_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/txtar"

	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// newRepo copies testdata/base into a temporary mesh repository and adds
// (or replaces) the given files.
func newRepo(t testing.TB, files []txtar.File) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/base")); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadBase(t *testing.T) {
	m, err := schema.Load(newRepo(t, nil), schema.Options{Revision: "abc123"})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if got := m.ServiceNames(); strings.Join(got, ",") != "frontend,reviews" {
		t.Fatalf("services = %v", got)
	}
	r := m.Services["reviews"]
	if r.Namespace != "shop" || r.ServiceAccount != "reviews" || r.MTLS != mesh.MTLSStrict {
		t.Errorf("defaults not resolved: ns=%q sa=%q mtls=%q", r.Namespace, r.ServiceAccount, r.MTLS)
	}
	if r.Timeout == nil || r.Timeout.String() != "15s" || r.Retries == nil || r.Retries.Attempts != 2 {
		t.Errorf("timeout/retries defaults not resolved: %+v %+v", r.Timeout, r.Retries)
	}
	if got := routeNames(r.Routes); got != "canary,split" {
		t.Errorf("routes = %s, want canary,split (precedence order, names from the keys)", got)
	}
	if got := r.Routes.Route("split").To; got["v1"] != 90 || got["v2"] != 10 {
		t.Errorf("split = %v, want base defaults 90/10", got)
	}
	if got := r.Routes.Route("split").Timeout; got == nil || got.String() != "2s" {
		t.Errorf("route timeout = %v", got)
	}
	if p := m.Positions.Lookup(mesh.RoutePath("reviews", "canary")); p.File != "mesh.cue" || p.Line != 24 {
		t.Errorf("route position = %v, want mesh.cue:24", p)
	}
	if got := m.SPIFFEID(r); got != "spiffe://shop.example/ns/shop/sa/reviews" {
		t.Errorf("spiffe id = %s", got)
	}
	if m.Revision != "abc123" {
		t.Errorf("revision = %q", m.Revision)
	}
}

func TestLoadEnvironmentOverridesDefaults(t *testing.T) {
	dir := newRepo(t, []txtar.File{{Name: "environments/dev/dev.cue", Data: []byte(
		"package shop\nmesh: services: reviews: routes: split: to: {v1: 50, v2: 50}\n")}})
	m, err := schema.Load(dir, schema.Options{Env: "dev"})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if got := m.Services["reviews"].Routes.Route("split").To; got["v1"] != 50 {
		t.Errorf("split = %v, want the dev overlay's 50/50", got)
	}
	if got := m.Services["reviews"].Routes.Route("canary").To; len(got) != 1 || got["v2"] != 100 {
		t.Errorf("canary = %v, want the base's v2: 100, untouched", got)
	}
	if p := m.Positions.Lookup("mesh.services.reviews.routes.split.to.v1"); p.File != filepath.Join("environments", "dev", "dev.cue") {
		t.Errorf("position of overridden weight = %v, want the overlay file", p)
	}
	if m.Environment != "dev" {
		t.Errorf("environment = %q", m.Environment)
	}
	if got := schema.Environments(dir); strings.Join(got, ",") != "dev" {
		t.Errorf("environments = %v", got)
	}
}

// TestLoadTrafficFields: the per-period rate limit, a Host rewrite, a
// mirror to another version of the route's own service, the connection's
// request cap and the outlier detection default all load.
func TestLoadTrafficFields(t *testing.T) {
	dir := newRepo(t, []txtar.File{{Name: "environments/dev/dev.cue", Data: []byte(`package shop
mesh: services: reviews: {
	rateLimit: {requests: 4, per: "60s"}
	circuitBreaker: {maxConnections: 1, maxRequestsPerConnection: 1}
	outlierDetection: consecutive5xx: 3
	routes: split: {to: {v1: 100, v2: 0}, mirror: {to: "reviews", version: "v2"}, rewrite: host: "reviews.internal:9080"}
}
`)}})
	m, err := schema.Load(dir, schema.Options{Env: "dev"})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	r := m.Services["reviews"]
	if tokens, every := r.RateLimit.Refill(); tokens != 4 || every != time.Minute || r.RateLimit.BurstOrDefault() != 4 {
		t.Errorf("rate limit %+v: refill %d per %s, burst %d; want 4 per 1m0s, burst 4", r.RateLimit, tokens, every, r.RateLimit.BurstOrDefault())
	}
	if cb := r.CircuitBreaker; cb == nil || cb.MaxRequestsPerConnection == nil || *cb.MaxRequestsPerConnection != 1 {
		t.Errorf("circuit breaker = %+v", cb)
	}
	if od := r.OutlierDetection; od == nil || od.MaxEjectionPercent == nil || *od.MaxEjectionPercent != mesh.DefaultMaxEjectionPercent {
		t.Errorf("outlier detection = %+v, want the schema's maxEjectionPercent default %v", od, mesh.DefaultMaxEjectionPercent)
	}
	var rt mesh.Route
	for _, x := range r.Routes {
		if x.Name == "split" {
			rt = x
		}
	}
	if rt.Mirror == nil || rt.Mirror.To != "reviews" || rt.Mirror.Version != "v2" || rt.Rewrite == nil || rt.Rewrite.Host != "reviews.internal:9080" {
		t.Errorf("route = %+v mirror %+v rewrite %+v", rt, rt.Mirror, rt.Rewrite)
	}
}

// TestLoadRoutePrecedence: the loader orders routes by precedence, not as
// written, and priority overrides it; matches it cannot prove to overlap
// (regexes) load.
func TestLoadRoutePrecedence(t *testing.T) {
	dir := newRepo(t, []txtar.File{{Name: "environments/dev/dev.cue", Data: []byte(`package shop
mesh: services: reviews: routes: {
	z: {match: path: prefix: "/api", to: v1: 100}
	items: {match: path: regex: "^/api/items/[0-9]+$", to: v2: 100}
	"api-v1": {match: path: prefix: "/api/v1", to: v2: 100}
	health: {match: {path: exact: "/healthz", methods: ["GET"]}, to: v1: 100}
	writes: {match: {path: prefix: "/api", methods: ["POST"]}, to: v1: 100}
	pinned: {priority: 5, match: path: prefix: "/api/v1/pinned", to: v1: 100}
	anything: {match: path: regex: "/.*", to: v1: 100}
}
`)}})
	m, err := schema.Load(dir, schema.Options{Env: "dev"})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	want := "pinned,health,anything,items,api-v1,writes,z,canary,split"
	if got := routeNames(m.Services["reviews"].Routes); got != want {
		t.Errorf("routes = %s\nwant     %s", got, want)
	}
	if p := m.Positions.Lookup(mesh.RoutePath("reviews", "api-v1") + ".to.v2"); p.File != filepath.Join("environments", "dev", "dev.cue") || p.Line != 5 {
		t.Errorf("position of routes.\"api-v1\".to.v2 = %v, want dev.cue:5", p)
	}
}

func TestLoadUnknownEnvironment(t *testing.T) {
	_, err := schema.Load(newRepo(t, nil), schema.Options{Env: "qa"})
	if err == nil || !strings.Contains(err.Error(), `environment "qa"`) {
		t.Fatalf("err = %v, want an unknown environment error", err)
	}
}

// TestLoadBad runs testdata/bad/*.txtar: each adds files to the base
// repository (dev/ is the environment loaded) and lists, as "want: " lines
// in its comment, texts the error must contain: file:line:column, field path,
// what is wrong and the fix; "not: " lines, texts it must not contain; and
// an optional "errors: N" line, how many errors there must be.
func TestLoadBad(t *testing.T) {
	cases, _ := filepath.Glob("testdata/bad/*.txtar")
	if len(cases) < 15 {
		t.Fatalf("only %d bad-input cases", len(cases))
	}
	for _, file := range cases {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			t.Parallel()
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			dir := newRepo(t, ar.Files)
			env := ""
			for _, f := range ar.Files {
				if strings.HasPrefix(f.Name, "dev/") {
					env = "dev"
				}
			}
			_, err = schema.Load(dir, schema.Options{Env: env})
			if err == nil {
				t.Fatal("load succeeded, want an error")
			}
			if !schema.IsErrors(err) {
				t.Fatalf("error is not a definition error: %v", err)
			}
			for _, line := range strings.Split(string(ar.Comment), "\n") {
				if want, ok := strings.CutPrefix(line, "want: "); ok && !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
				if not, ok := strings.CutPrefix(line, "not: "); ok && strings.Contains(err.Error(), not) {
					t.Errorf("error contains %q:\n%v", not, err)
				}
				if n, ok := strings.CutPrefix(line, "errors: "); ok {
					var es schema.Errors
					errors.As(err, &es)
					if strconv.Itoa(len(es)) != n {
						t.Errorf("%d errors, want %s:\n%v", len(es), n, err)
					}
				}
			}
		})
	}
}

func routeNames(rs mesh.Routes) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Name
	}
	return strings.Join(names, ",")
}
