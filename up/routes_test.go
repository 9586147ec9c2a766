package up_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/up"
)

// Routes written in the "wrong" order: the catch-all first, the header
// route after it. Precedence, not the order written, decides.
const precedenceMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["reviews"]
		}
		reviews: {
			ports: http: port: 9080
			versions: {
				v1: labels: version: "v1"
				v2: labels: version: "v2"
			}
			routes: {
				all: {
					match: path: prefix: "/"
					to: v1: 100
				}
				canary: {
					match: headers: "x-canary": exact: "1"
					to: v2: 100
				}
				api: {
					match: path: prefix: "/api"
					to: v1: 100
				}
				// Without its priority, /api (a longer prefix) would win.
				beta: {
					priority: 1
					match: headers: "x-beta": present: true
					to: v2: 100
				}
			}
		}
`

// TestRoutePrecedence: through real Envoys, the header route wins over the
// catch-all written before it, a longer prefix wins over a header route,
// and priority wins over both.
func TestRoutePrecedence(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, precedenceMesh)
	tm := startMesh(t, dir, nil)
	c := tm.client("frontend-v1")

	cases := []struct {
		name, path string
		header     map[string]string
		want       string
	}{
		{"catch-all", "/", nil, "v1"},
		{"header route written after the catch-all", "/", map[string]string{"x-canary": "1"}, "v2"},
		{"longer prefix before a header route", "/api/items", map[string]string{"x-canary": "1"}, "v1"},
		{"priority before a longer prefix", "/api/items", map[string]string{"x-beta": "yes"}, "v2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < 20; i++ {
				code, a, _, err := get(c, "http://reviews:9080"+tc.path, tc.header)
				if err != nil || code != http.StatusOK || a == nil || a.Version != tc.want {
					t.Fatalf("request %d to %s %v: %d %+v %v, want %s", i, tc.path, tc.header, code, a, err, tc.want)
				}
			}
		})
	}
}

// The base, with its routes re-ordered (split written before canary)
// after the environments were written; dev and prod change split by name.
const overlayMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["reviews"]
			timeout: "5s"
			rateLimit: requestsPerSecond: 1000
		}
		reviews: {
			timeout: "2s"
			ports: http: port: 9080
			versions: {
				v1: labels: version: "v1"
				v2: labels: version: "v2"
			}
			routes: {
				split: {
					match: path: prefix: "/"
					to: {v1: *100 | _, v2: *0 | _}
				}
				canary: {
					match: headers: "x-canary": exact: "1"
					to: v2: 100
				}
			}
		}
`

// TestOverlayChangesRouteByName: an environment's split lands on the route
// it names, whatever the order of the base's routes: weft vet passes and
// reports the canary step on split only; through real Envoys, x-canary
// still reaches v2 every time and the rest is split 50/50.
func TestOverlayChangesRouteByName(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, overlayMesh)
	for env, to := range map[string]string{"dev": "{v1: 50, v2: 50}", "prod": "{v1: 90, v2: 10}"} {
		p := filepath.Join(dir, "environments", env, env+".cue")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		body := "package mesh\n\nmesh: services: reviews: routes: split: to: " + to + "\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	rep, err := policies.Vet(context.Background(), dir, policies.VetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := rep.Write(policies.Text, policies.WriteOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		t.Fatal(err)
	}
	t.Logf("weft vet:\n%s%s", stdout.String(), stderr.String())
	if rep.Failed() || stdout.String() != "ok\tbase\nok\tdev\nok\tprod\n" {
		t.Fatalf("vet failed:\n%s%s", stdout.String(), stderr.String())
	}
	wantWarn := "environments/prod/prod.cue\n    3:41  warn  canary_drift  canary weights of service reviews route \"split\" change from dev to prod: v1 50 -> 90, v2 50 -> 10\n"
	if !strings.Contains(stderr.String(), wantWarn) || strings.Contains(stderr.String(), `route "canary"`) {
		t.Errorf("vet findings:\n%s\nwant the canary step on split only:\n%s", stderr.String(), wantWarn)
	}
	for _, e := range rep.Envs {
		routes := e.Model.Services["reviews"].Routes
		if c := routes.Route("canary"); len(routes) != 2 || routes[0].Name != "canary" || len(c.To) != 1 || c.To["v2"] != 100 {
			t.Errorf("%s: routes %+v, want canary first and untouched (v2: 100)", e.Name, routes)
		}
	}

	tm := startMesh(t, dir, func(o *up.Options) { o.Env = "dev" })
	c := tm.client("frontend-v1")
	for i := 0; i < 200; i++ {
		code, a, _, err := get(c, "http://reviews:9080/", map[string]string{"x-canary": "1"})
		if err != nil || code != http.StatusOK || a == nil || a.Version != "v2" {
			t.Fatalf("x-canary request %d: %d %+v %v, want v2", i, code, a, err)
		}
	}
	const n = 2000
	var mu sync.Mutex
	counts := map[string]int{}
	parallel(n, 16, func(int) {
		code, a, _, err := get(c, "http://reviews:9080/", nil)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			counts["error: "+err.Error()]++
		case code != http.StatusOK || a == nil:
			counts["status "+http.StatusText(code)]++
		default:
			counts[a.Version]++
		}
	})
	v2 := 100 * float64(counts["v2"]) / n
	t.Logf("dev split over %d requests: %v (v2 %.1f%%)", n, counts, v2)
	if counts["v1"]+counts["v2"] != n {
		t.Fatalf("failed requests: %v", counts)
	}
	if v2 < 45 || v2 > 55 {
		t.Errorf("v2 got %.1f%% of requests, want dev's 50 +- 5", v2)
	}
}
