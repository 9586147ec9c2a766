package up_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

const edgeHeadersMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["reviews"]
			authz: deny: [{paths: ["/admin"]}]
			headers: {
				request: {
					set: {"x-shop-edge": "frontend"}
					add: {"x-via": "weft"}
					remove: ["x-weft-internal", "x-shop-user-id"]
				}
				response: {
					preset: "security"
					add: {"x-served-by": "frontend"}
					remove: ["server", "x-powered-by"]
				}
			}
			routes: {
				static: {
					match: path: prefix: "/static/"
					headers: {
						request: add: {"x-route": "static"}
						response: set: {"cache-control": "public, max-age=3600"}
					}
				}
				pages: match: path: prefix: "/"
			}
		}
		ops: {
			ports: http: port: 7070
			versions: v1: labels: version: "v1"
			calls: ["frontend"]
		}
		reviews: {
			ports: http: port: 9080
			versions: v1: labels: version: "v1"
			headers: {
				request: {add: {"x-via": "weft"}, remove: ["x-weft-internal"]}
				response: {add: {"x-served-by": "reviews"}, preset: "security"}
			}
		}
`

// An edge service's header rules apply to traffic from outside the mesh
// (issue 8: x-weft-internal and x-shop-user-id reached the frontend app,
// the security preset added nothing, "server: envoy" came back); mesh
// callers see each rule applied once, an "add" included; no weft listener
// answers with a server header.
func TestEdgeHeaderRules(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, edgeHeadersMesh)
	tm := startMesh(t, dir, nil)
	fe := tm.instance("frontend-v1")
	outside := &http.Client{Timeout: 10 * time.Second}
	sent := map[string]string{"x-weft-internal": "1", "x-shop-user-id": "42", "x-via": "client"}
	// x_shop_user_id is x-shop-user-id to a backend that reads "_" as "-".
	outsideSent := map[string]string{"x-weft-internal": "1", "x-shop-user-id": "42", "x-via": "client", "x_shop_user_id": "42"}
	securityPreset := []string{"strict-transport-security", "x-content-type-options", "x-frame-options", "referrer-policy"}

	for _, tc := range []struct {
		name, url string
		c         *http.Client
		service   string
		sent      map[string]string // request headers sent (default: sent)
		removed   []string          // request headers the app must not see
		request   map[string]string // request headers as the app sees them
		response  map[string]string // response headers (each must have exactly this one value)
		preset    bool
	}{{
		name: "outside -> edge", url: "http://" + fe.Addr(8080) + "/page", c: outside, service: "frontend",
		sent:     outsideSent,
		removed:  []string{"x-weft-internal", "x-shop-user-id", "x_shop_user_id"},
		request:  map[string]string{"x-shop-edge": "frontend", "x-via": "client,weft"},
		response: map[string]string{"x-served-by": "frontend"}, preset: true,
	}, {
		name: "outside -> edge route", url: "http://" + fe.Addr(8080) + "/static/app.js", c: outside, service: "frontend",
		removed:  []string{"x-weft-internal", "x-shop-user-id"},
		request:  map[string]string{"x-shop-edge": "frontend", "x-via": "client,weft", "x-route": "static"},
		response: map[string]string{"x-served-by": "frontend", "cache-control": "public, max-age=3600"}, preset: true,
	}, {
		name: "mesh caller -> edge", url: "http://frontend:8080/page", c: tm.client("ops-v1"), service: "frontend",
		removed:  []string{"x-weft-internal", "x-shop-user-id"},
		request:  map[string]string{"x-shop-edge": "frontend", "x-via": "client,weft"},
		response: map[string]string{"x-served-by": "frontend"}, preset: true,
	}, {
		name: "mesh caller -> edge route", url: "http://frontend:8080/static/app.js", c: tm.client("ops-v1"), service: "frontend",
		request:  map[string]string{"x-via": "client,weft", "x-route": "static"},
		response: map[string]string{"x-served-by": "frontend", "cache-control": "public, max-age=3600"}, preset: true,
	}, {
		name: "mesh caller -> internal service", url: "http://reviews:9080/", c: tm.client("frontend-v1"), service: "reviews",
		removed:  []string{"x-weft-internal"},
		request:  map[string]string{"x-via": "client,weft", "x-shop-user-id": "42"},
		response: map[string]string{"x-served-by": "reviews"}, preset: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.sent == nil {
				tc.sent = sent
			}
			code, a, hdr, err := get(tc.c, tc.url, tc.sent)
			if err != nil || code != 200 || a == nil || a.Service != tc.service {
				t.Fatalf("GET %s: %d %v %+v, want 200 from %s", tc.url, code, err, a, tc.service)
			}
			for _, h := range tc.removed {
				if v, ok := a.Headers[h]; ok {
					t.Errorf("the app received %s: %q", h, v)
				}
			}
			for h, want := range tc.request {
				if got := a.Headers[h]; got != want {
					t.Errorf("the app received %s: %q, want %q", h, got, want)
				}
			}
			for h, want := range tc.response {
				if got := hdr.Values(h); len(got) != 1 || got[0] != want {
					t.Errorf("response header %s: %q, want exactly %q", h, got, want)
				}
			}
			if tc.preset {
				for _, h := range securityPreset {
					if got := hdr.Values(h); len(got) != 1 {
						t.Errorf("response header %s of the security preset: %q, want one value", h, got)
					}
				}
			}
			if s := hdr.Values("server"); len(s) > 0 {
				t.Errorf("response has server: %q", s)
			}
			if strings.HasPrefix(tc.name, "outside") {
				for h := range hdr {
					if strings.HasPrefix(strings.ToLower(h), "x-envoy-") {
						t.Errorf("response to the outside has %s: %q", h, hdr.Values(h))
					}
				}
			}
			if strings.Contains(a.Headers["x-forwarded-client-cert"], "URI=") != strings.HasPrefix(tc.name, "mesh") {
				t.Errorf("x-forwarded-client-cert %q: mTLS is for mesh callers only", a.Headers["x-forwarded-client-cert"])
			}
		})
	}

	// Envoy's own answers (a 403 from authz, a 404 for an unknown host)
	// carry no server header either.
	for _, tc := range []struct {
		name, url string
		c         *http.Client
		want      int
	}{
		{"edge 403", "http://" + fe.Addr(8080) + "/admin", outside, http.StatusForbidden},
		{"outbound 404", "http://nowhere:1234/", tm.client("ops-v1"), http.StatusNotFound},
	} {
		code, _, hdr, err := get(tc.c, tc.url, nil)
		if err != nil || code != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, code, err, tc.want)
		}
		if s := hdr.Values("server"); len(s) > 0 {
			t.Errorf("%s: response has server: %q", tc.name, s)
		}
	}
}
