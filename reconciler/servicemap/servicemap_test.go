package servicemap

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/signals"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

var update = flag.Bool("update", false, "rewrite testdata/ from the current output")

func loadShop(t *testing.T, env string) *mesh.Model {
	t.Helper()
	m, err := schema.Load("../../environments", schema.Options{Env: env, Revision: "abc123"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const (
	frontendID = "spiffe://shop.example/ns/shop/sa/frontend"
	catalogID  = "spiffe://shop.example/ns/shop/sa/catalog"
	ordersID   = "spiffe://shop.example/ns/shop/sa/orders"
)

// shopEdges is what a signals reader (with Inbound) returns for the shop
// under load: every kind of declared edge, and every kind of unwanted
// connection.
func shopEdges() []signals.Edge {
	ms := time.Millisecond
	return []signals.Edge{
		// outside -> frontend (declared ingress).
		{Source: "outside", Destination: "frontend", DestinationVersion: "v1", RequestsPerSecond: 20, P99: 40 * ms},
		// frontend -> reviews, split over two versions; v2 errs a little.
		{Source: "frontend", SourceVersion: "v1", Destination: "reviews", DestinationVersion: "v1", RequestsPerSecond: 8, P99: 12 * ms},
		{Source: "frontend", SourceVersion: "v1", Destination: "reviews", DestinationVersion: "v2", RequestsPerSecond: 2, ErrorPercent: 5, P99: 30 * ms},
		// frontend -> orders; orders' SLO is 99.5%: 1% errors fail it.
		{Source: "frontend", SourceVersion: "v1", Destination: "orders", DestinationVersion: "v1", RequestsPerSecond: 4, ErrorPercent: 1, P99: 80 * ms},
		// orders -> payments: 50% injected aborts (no version chosen).
		{Source: "orders", SourceVersion: "v1", Destination: "payments", DestinationVersion: "v1", RequestsPerSecond: 2, P99: 9 * ms},
		{Source: "orders", SourceVersion: "v1", Destination: "payments", RequestsPerSecond: 2, ErrorPercent: 100, P99: 1 * ms},
		// orders -> shipping: 3% errors, over half the default 5%.
		{Source: "orders", SourceVersion: "v1", Destination: "shipping", DestinationVersion: "v1", RequestsPerSecond: 1, ErrorPercent: 3, P99: 20 * ms},
		// The destinations' own records of mesh callers: frontend at
		// orders (declared: its own record counts), frontend at
		// orders-shadow (the mirror of orders' create route), catalog at
		// payments (undeclared: RBAC's 403s), a stranger at cart.
		{SourcePrincipal: frontendID, Destination: "orders", DestinationVersion: "v1", RequestsPerSecond: 4, P99: 70 * ms},
		{SourcePrincipal: frontendID, Destination: "orders-shadow", DestinationVersion: "v2", RequestsPerSecond: 0.4, P99: 3 * ms},
		{SourcePrincipal: catalogID, Destination: "payments", DestinationVersion: "v1", RequestsPerSecond: 0.5, P99: 1 * ms},
		{SourcePrincipal: "spiffe://shop.example/ns/shop/sa/stranger", Destination: "cart", DestinationVersion: "v1", RequestsPerSecond: 0.2, P99: 1 * ms},
		// frontend's app asked for a host not in its calls.
		{Source: "frontend", SourceVersion: "v1", RequestsPerSecond: 1, P99: 1 * ms},
		// Plaintext from outside to catalog (permissive in dev).
		{Source: "outside", Destination: "catalog", DestinationVersion: "v1", RequestsPerSecond: 0.3, P99: 2 * ms},
	}
}

func shopStatus() *status.Status {
	at := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	return &status.Status{
		Revision: "abc123", ServedSince: at,
		LastAttempt: &status.Attempt{Revision: "def456", At: at.Add(time.Minute), Step: status.StepRollout, Error: "payments-v1-0 rejected Listener inbound",
			NACK: &status.NACK{NodeID: "payments-v1-0", Version: "def456/x", TypeURL: "type.googleapis.com/envoy.config.listener.v3.Listener", At: at.Add(time.Minute),
				Reason: "bad regex", Resource: "inbound", Provenance: &status.Provenance{Service: "payments", File: "payments.cue", Line: 12}}},
		Proxies: []status.Proxy{
			{NodeID: "orders-v1-0", Class: "orders-v1", Connected: true, InSync: true, AckedVersion: "abc123/h1"},
			{NodeID: "payments-v1-0", Class: "payments-v1", Connected: true, InSync: true, AckedVersion: "abc123/h2"},
		},
	}
}

func shopInput(t *testing.T) Input {
	return Input{Model: loadShop(t, "dev"), Status: shopStatus(), Edges: shopEdges(),
		Signals: SignalsInfo{Source: "proxies", Window: "30s", At: time.Date(2026, 11, 2, 10, 5, 0, 0, time.UTC)}, Refresh: 5 * time.Second}
}

// TestGraphGolden: the JSON of the dev shop with traffic, byte for byte
// (go test ./reconciler/servicemap -update rewrites it: review the
// diff), and the same bytes every time.
func TestGraphGolden(t *testing.T) {
	b, err := json.MarshalIndent(Build(shopInput(t)), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		again, _ := json.MarshalIndent(Build(shopInput(t)), "", "  ")
		if string(again) != string(b) {
			t.Fatal("the same input gave different JSON")
		}
	}
	p := filepath.Join("testdata", "shop-dev.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./reconciler/servicemap -update)", err)
	}
	if string(want) != string(b)+"\n" {
		t.Errorf("%s differs (run -update and review the diff)", p)
	}
}

// TestEdgesAndHealth: each declared edge sums its version pairs and gets
// the health the documented thresholds give it.
func TestEdgesAndHealth(t *testing.T) {
	g := Build(shopInput(t))
	byID := map[string]Edge{}
	for _, e := range g.Edges {
		byID[e.ID] = e
	}
	for _, tc := range []struct {
		id, health string
		rps, errs  float64
		threshold  float64
		from       string
		reason     string
	}{
		{"outside->frontend", HealthHealthy, 20, 0, 0.1, "slo", ""},
		{"frontend->reviews", HealthHealthy, 10, 1, 5, "default", ""},
		{"frontend->orders", HealthFailing, 4, 1, 0.5, "slo", "1.00% errors, over the error budget of the SLO of orders (0.5%)"},
		{"orders->payments", HealthFailing, 4, 50, 5, "default", "50.00% errors, over the default threshold (5%)"},
		{"orders->shipping", HealthDegraded, 1, 3, 5, "default", "3.00% errors, over 50% of the default threshold (5%)"},
		{"orders->orders-shadow/mirror/create", HealthHealthy, 0.4, 0, 5, "default", ""},
		{"frontend->cart", HealthIdle, 0, 0, 5, "default", ""},
	} {
		e, ok := byID[tc.id]
		if !ok {
			t.Errorf("no edge %s", tc.id)
			continue
		}
		if e.Health != tc.health || e.RequestsPerSecond != tc.rps || e.ErrorPercent != tc.errs || e.ErrorThreshold != tc.threshold ||
			e.ThresholdFrom != tc.from || e.Reason != tc.reason {
			t.Errorf("%s: %s %q, %v req/s, %v%% errors, threshold %v (%s); want %s %q, %v, %v%%, %v (%s)", tc.id, e.Health, e.Reason,
				e.RequestsPerSecond, e.ErrorPercent, e.ErrorThreshold, e.ThresholdFrom, tc.health, tc.reason, tc.rps, tc.errs, tc.threshold, tc.from)
		}
	}
	if got := byID["frontend->reviews"]; len(got.ByVersion) != 2 || got.P99Ms != 30 {
		t.Errorf("frontend->reviews by version %+v, p99 %v: want two pairs, the larger p99 (30)", got.ByVersion, got.P99Ms)
	}
	// The frontend's p99 objective (500ms) fails the ingress edge when
	// its p99 is over it.
	in := shopInput(t)
	in.Edges = []signals.Edge{{Source: "outside", Destination: "frontend", DestinationVersion: "v1", RequestsPerSecond: 1, P99: 600 * time.Millisecond}}
	for _, e := range Build(in).Edges {
		if e.ID == "outside->frontend" && (e.Health != HealthFailing || e.Reason != "p99 600.0 ms, over the p99 objective of frontend (500 ms)") {
			t.Errorf("slow ingress: %s %q", e.Health, e.Reason)
		}
	}
}

// TestUnwanted: every kind of traffic no declaration explains is listed
// apart, with what happened; declared callers' own inbound records are
// not.
func TestUnwanted(t *testing.T) {
	g := Build(shopInput(t))
	got := map[string]Unwanted{}
	for _, u := range g.Unwanted {
		got[u.ID] = u
	}
	want := map[string]string{
		"no-route:frontend->": "the app of frontend asked its proxy for a host that is not in its calls; no route matched (Envoy answers 404)",
		"undeclared-caller:catalog->payments": "requests with the certificate of catalog reached the inbound side of payments directly: catalog does not call payments; " +
			"its authz.allow decides",
		"unknown-identity:spiffe://shop.example/ns/shop/sa/stranger->cart": "requests with a mesh certificate of spiffe://shop.example/ns/shop/sa/stranger, which is no service of this revision, reached cart",
		"outside-to-internal:outside->catalog":                             "requests without a mesh certificate reached catalog, which is not an edge service (it accepts plaintext: mtls permissive)",
	}
	if len(got) != len(want) {
		t.Errorf("unwanted: %v, want %d", g.Unwanted, len(want))
	}
	for id, text := range want {
		if u, ok := got[id]; !ok || u.Explanation != text {
			t.Errorf("%s: %q, want %q", id, u.Explanation, text)
		}
	}
	if u := got["undeclared-caller:catalog->payments"]; u.Principal != catalogID || u.RequestsPerSecond != 0.5 {
		t.Errorf("catalog -> payments: %+v", u)
	}
	// An undeclared call between services (a proxy on an old revision).
	in := shopInput(t)
	in.Edges = []signals.Edge{{Source: "payments", SourceVersion: "v1", Destination: "orders", DestinationVersion: "v1", RequestsPerSecond: 1}}
	if us := Build(in).Unwanted; len(us) != 1 || us[0].ID != "undeclared-call:payments->orders" {
		t.Errorf("payments -> orders: %+v", us)
	}
}

// TestNodes: a service's node has its versions, routes with split
// weights, authz, proxies and NACKs (a failed rollout's NACK attributed
// to the service included), and the outside node exists.
func TestNodes(t *testing.T) {
	g := Build(shopInput(t))
	nodes := map[string]Node{}
	for _, n := range g.Nodes {
		nodes[n.ID] = n
	}
	if !nodes[Outside].Outside || g.Nodes[0].ID != Outside {
		t.Errorf("first node %+v, want outside", g.Nodes[0])
	}
	rv := nodes["reviews"]
	var split *Route
	for i := range rv.Routes {
		if rv.Routes[i].Name == "split" {
			split = &rv.Routes[i]
		}
	}
	if split == nil || len(split.To) != 2 || split.To[0] != (Weight{"v1", 50}) || split.To[1] != (Weight{"v2", 50}) || split.Fault != "delay 20% by 750ms" {
		t.Errorf("reviews' split route: %+v", split)
	}
	if o := nodes["orders"]; o.Authz == nil || len(o.Authz.Allow) != 1 || o.Authz.Allow[0].From[0] != "frontend" || len(o.Authz.Deny) != 1 || o.Authz.Default != "" {
		t.Errorf("orders' authz: %+v", o.Authz)
	}
	if c := nodes["cart"]; c.Authz == nil || !strings.HasPrefix(c.Authz.Default, "allows the services that call it") {
		t.Errorf("cart's default authz: %+v", c.Authz)
	}
	p := nodes["payments"]
	if len(p.Proxies) != 1 || p.Proxies[0].NodeID != "payments-v1-0" || len(p.NACKs) != 1 || p.NACKs[0].Where != "payments.cue:12" || p.NACKs[0].Type != "Listener" {
		t.Errorf("payments: proxies %+v, NACKs %+v", p.Proxies, p.NACKs)
	}
	if g.Revision != "abc123" || g.LastFailure == nil || g.LastFailure.Step != "rollout" {
		t.Errorf("revision %q, last failure %+v", g.Revision, g.LastFailure)
	}
}

// TestLayout: boxes inside the drawing, none overlapping, the outside in
// the first column, and every call of the (acyclic) shop going left to
// right.
func TestLayout(t *testing.T) {
	g := Build(shopInput(t))
	nodes := map[string]Node{}
	for i, a := range g.Nodes {
		nodes[a.ID] = a
		if a.X < 0 || a.Y < 0 || a.X+a.W > g.Width || a.Y+a.H > g.Height {
			t.Errorf("%s at %d,%d %dx%d outside %dx%d", a.ID, a.X, a.Y, a.W, a.H, g.Width, g.Height)
		}
		for _, b := range g.Nodes[i+1:] {
			if a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H {
				t.Errorf("%s and %s overlap", a.ID, b.ID)
			}
		}
	}
	if nodes[Outside].Layer != 0 {
		t.Errorf("outside in column %d", nodes[Outside].Layer)
	}
	for _, e := range g.Edges {
		if nodes[e.From].Layer >= nodes[e.To].Layer {
			t.Errorf("%s: column %d -> %d", e.ID, nodes[e.From].Layer, nodes[e.To].Layer)
		}
	}
	// A cycle still lays out.
	cyc := []Node{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	w, h := layout(cyc, []Edge{{From: "a", To: "b"}, {From: "b", To: "c"}, {From: "c", To: "a"}})
	if cyc[0].Layer != 0 || cyc[1].Layer != 1 || cyc[2].Layer != 2 || w <= 0 || h <= 0 {
		t.Errorf("cycle: %+v", cyc)
	}
}

// failingReader fails after its first read.
type failingReader struct{ n int }

func (f *failingReader) Edges(context.Context) ([]signals.Edge, error) {
	f.n++
	if f.n > 1 {
		return nil, errors.New("scrape 127.0.0.1:15090: connection refused")
	}
	return []signals.Edge{{Source: "frontend", SourceVersion: "v1", Destination: "cart", DestinationVersion: "v1", RequestsPerSecond: 3}}, nil
}

// TestHandler serves the page, its assets and the JSON over HTTP; a
// failed read keeps the last edges and says why.
func TestHandler(t *testing.T) {
	model := loadShop(t, "")
	m := New(Options{Model: func() *mesh.Model { return model }, Status: func() status.Status { return *shopStatus() },
		Signals: &failingReader{}, Info: SignalsInfo{Source: "proxies", Window: "30s"}})
	m.Read(context.Background())
	m.Read(context.Background())
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := noRedirect.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, _ := get("/map"); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/map/" {
		t.Errorf("GET /map: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	resp, body := get("/map/")
	if resp.StatusCode != 200 || !strings.Contains(body, "<title>weft service map</title>") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("GET /map/: %s %s", resp.Status, resp.Header)
	}
	for path, ctype := range map[string]string{"/map/app.js": "text/javascript", "/map/style.css": "text/css"} {
		if resp, _ := get(path); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %s %s", path, resp.Status, resp.Header.Get("Content-Type"))
		}
	}
	if resp, _ := get("/map/api/other"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /map/api/other: %s", resp.Status)
	}
	resp, body = get(APIPath)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET %s: %s %s", APIPath, resp.Status, resp.Header)
	}
	var g Graph
	if err := json.Unmarshal([]byte(body), &g); err != nil {
		t.Fatal(err)
	}
	if g.Mesh != "shop" || g.Revision != "abc123" || g.RefreshSeconds != 5 || g.Signals.Error != "scrape 127.0.0.1:15090: connection refused" || g.Signals.At.IsZero() {
		t.Errorf("graph: mesh %q revision %q refresh %v signals %+v", g.Mesh, g.Revision, g.RefreshSeconds, g.Signals)
	}
	found := false
	for _, e := range g.Edges {
		found = found || e.ID == "frontend->cart" && e.RequestsPerSecond == 3
	}
	if !found {
		t.Errorf("the first read's edge frontend->cart is gone after a failed read: %+v", g.Edges)
	}
	if r, err := http.Post(srv.URL+APIPath, "text/plain", nil); err != nil || r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: %v %v", APIPath, r.Status, err)
	}
	// Before any revision: an empty map, not an error.
	empty := New(Options{Model: func() *mesh.Model { return nil }})
	if g := empty.Graph(); g.Mesh != "" || len(g.Nodes) != 0 || g.Nodes == nil || g.Unwanted == nil {
		t.Errorf("no revision: %+v", g)
	}
}
