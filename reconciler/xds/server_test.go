package xds

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

func quietLogger() *slog.Logger {
	if testing.Verbose() && os.Getenv("WEFT_XDS_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.DiscardHandler)
}

// compileDir loads and compiles a mesh repository.
func compileDir(tb testing.TB, dir, rev string) *compiler.Result {
	tb.Helper()
	m, err := schema.Load(dir, schema.Options{Revision: rev})
	if err != nil {
		tb.Fatal(err)
	}
	res, err := compiler.Compile(m, nil, compiler.Options{Revision: rev})
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// withClass returns res with class name replaced by what f makes of a
// copy of it (resource slices copied; resources shared unless f clones).
func withClass(res *compiler.Result, name string, f func(c *compiler.Class)) *compiler.Result {
	out := &compiler.Result{}
	for _, c := range res.Classes {
		if c.Name == name {
			cp := *c
			cp.Resources = map[resource.Type][]types.Resource{}
			for t, rs := range c.Resources {
				cp.Resources[t] = append([]types.Resource(nil), rs...)
			}
			f(&cp)
			c = &cp
		}
		out.Classes = append(out.Classes, c)
	}
	return out
}

// TestPublishServesEveryNode: two SotW and one delta client of two
// classes get their class's version, then the next revision's, and the
// status shows them ACKed and in sync.
func TestPublishServesEveryNode(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, 9080, "one", "")
	r1 := compileDir(t, dir, "r1")
	writeMesh(t, dir, 9080, "two", "")
	r2 := compileDir(t, dir, "r2")

	s, addr := startServer(t, Options{})
	if err := s.Publish("r1", r1); err != nil {
		t.Fatal(err)
	}
	fe1 := dial(t, addr, "fe-1", "frontend-v1", false)
	fe2 := dial(t, addr, "fe-2", "frontend-v1", true)
	rv := dial(t, addr, "rv-1", "reviews-v1", false)
	v1 := r1.Class("frontend-v1").SnapshotVersion
	fe1.waitVersion(t, 10*time.Second, v1, allTypes...)
	fe2.waitVersion(t, 10*time.Second, v1, allTypes...)
	rv.waitVersion(t, 10*time.Second, r1.Class("reviews-v1").SnapshotVersion, allTypes...)
	for _, id := range []string{"fe-1", "fe-2", "rv-1"} {
		waitStatus(t, s, 10*time.Second, id+" in sync with r1", inSync(id))
	}
	if n := fe1.count(resource.ClusterType); n == 0 {
		t.Fatalf("frontend got no clusters")
	}

	if err := s.Publish("r2", r2); err != nil {
		t.Fatal(err)
	}
	v2 := r2.Class("frontend-v1").SnapshotVersion
	// SotW resends every type with the new version. Delta resends what
	// changed: only the route (resources do not carry the revision).
	fe1.waitVersion(t, 10*time.Second, v2, allTypes...)
	fe2.waitVersion(t, 10*time.Second, v2, resource.RouteType)
	st := waitStatus(t, s, 10*time.Second, "all in sync with r2", func(st status.Status) bool {
		return inSync("fe-1")(st) && inSync("fe-2")(st) && inSync("rv-1")(st)
	})
	if st.Revision != "r2" || st.LastAttempt == nil || st.LastAttempt.Error != "" || st.LastAttempt.Revision != "r2" {
		t.Errorf("status: revision %q, last attempt %+v; want r2 served", st.Revision, st.LastAttempt)
	}
	if p := proxy(st, "fe-1"); p.Acked[resource.ListenerType] != v2 || p.ConnectedSince.IsZero() || p.Class != "frontend-v1" || p.Transport != status.TransportSotW {
		t.Errorf("sotw proxy: %+v", p)
	}

	// Only an endpoint changes (same revision in the resources): delta
	// sends only the load assignment; the node is in sync at r3's version.
	m, err := schema.Load(dir, schema.Options{Revision: "r2"})
	if err != nil {
		t.Fatal(err)
	}
	r3, err := compiler.Compile(m, compiler.Endpoints{
		"frontend": {"v1": {{Host: "127.0.0.1", Port: 8080}}},
		"reviews":  {"v1": {{Host: "127.0.0.9", Port: 9080}}},
	}, compiler.Options{Revision: "r2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish("r3", r3); err != nil {
		t.Fatal(err)
	}
	v3 := r3.Class("frontend-v1").SnapshotVersion
	fe2.waitVersion(t, 10*time.Second, v3, resource.EndpointType)
	st = waitStatus(t, s, 10*time.Second, "all in sync with r3", func(st status.Status) bool {
		return inSync("fe-1")(st) && inSync("fe-2")(st) && inSync("rv-1")(st)
	})
	p := proxy(st, "fe-2")
	if p.Transport != status.TransportDelta || p.Acked[resource.EndpointType] != v3 || p.Acked[resource.RouteType] != v2 || p.AckedVersion != v3 {
		t.Errorf("delta proxy: %+v; want endpoints ACKed at %s, routes still at %s, in sync at %s", p, v3, v2, v3)
	}
	if p := proxy(st, "fe-1"); p.Acked[resource.RouteType] != v3 {
		t.Errorf("sotw proxy: %+v, want every type at %s", p, v3)
	}

	// A client that goes away is shown disconnected.
	fe1.close()
	waitStatus(t, s, 10*time.Second, "fe-1 disconnected", func(st status.Status) bool {
		p := proxy(st, "fe-1")
		return p != nil && !p.Connected && !p.DisconnectedAt.IsZero()
	})
}

// TestPublishIsAtomic: a revision in which one class fails Consistent()
// changes no class, for any node; the failure is the last attempt.
func TestPublishIsAtomic(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, 9080, "one", "")
	r1 := compileDir(t, dir, "r1")
	writeMesh(t, dir, 9080, "two", "")
	// In r2 reviews-v1 is fine (and different), frontend-v1 has an EDS
	// cluster without its load assignment.
	r2 := withClass(compileDir(t, dir, "r2"), "frontend-v1", func(c *compiler.Class) {
		c.Resources[resource.EndpointType] = c.Resources[resource.EndpointType][1:]
	})

	s, addr := startServer(t, Options{})
	if err := s.Publish("r1", r1); err != nil {
		t.Fatal(err)
	}
	fe := dial(t, addr, "fe", "frontend-v1", false)
	rv := dial(t, addr, "rv", "reviews-v1", true)
	waitStatus(t, s, 10*time.Second, "both in sync", func(st status.Status) bool { return inSync("fe")(st) && inSync("rv")(st) })
	before := s.Status()

	err := s.Publish("r2", r2)
	if err == nil || !strings.Contains(err.Error(), "frontend-v1") {
		t.Fatalf("Publish(r2) = %v, want an inconsistency of frontend-v1", err)
	}
	after := s.Status()
	if after.Revision != "r1" || after.Classes["reviews-v1"] != before.Classes["reviews-v1"] || after.Classes["frontend-v1"] != before.Classes["frontend-v1"] {
		t.Errorf("after a failed publish: revision %q classes %v, want r1's %v", after.Revision, after.Classes, before.Classes)
	}
	if a := after.LastAttempt; a == nil || a.Revision != "r2" || a.Step != status.StepPublish || !strings.Contains(a.Error, "frontend-v1") {
		t.Errorf("last attempt %+v, want r2 failed at publish", a)
	}
	for _, id := range []string{"fe", "rv"} {
		p := proxy(after, id)
		if p.Version != before.Classes[p.Class] || !p.InSync {
			t.Errorf("%s: %+v, want still served and in sync with r1", id, p)
		}
	}
	// Nothing was sent: the clients still hold r1.
	time.Sleep(200 * time.Millisecond)
	fe.waitVersion(t, time.Second, r1.Class("frontend-v1").SnapshotVersion, allTypes...)
	rv.waitVersion(t, time.Second, r1.Class("reviews-v1").SnapshotVersion, resource.ListenerType)
}

// TestUnknownClass: a node naming a class the revision lacks gets nothing
// and an error in its status; it is served once a revision has the class.
func TestUnknownClass(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, 9080, "one", "")
	r1 := compileDir(t, dir, "r1")
	s, addr := startServer(t, Options{})
	if err := s.Publish("r1", r1); err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr, "ghost-1", "ratings-v1", false)
	st := waitStatus(t, s, 10*time.Second, "ghost-1 registered", func(st status.Status) bool { return proxy(st, "ghost-1") != nil })
	if p := proxy(st, "ghost-1"); !strings.Contains(p.Error, `unknown proxy class "ratings-v1"`) || p.Version != "" {
		t.Errorf("ghost: %+v, want an unknown-class error and no version", p)
	}
	time.Sleep(200 * time.Millisecond)
	if n := c.count(resource.ListenerType); n != 0 {
		t.Errorf("unknown class got %d listeners", n)
	}
	// The class by metadata: weft.class wins over node.cluster.
	r2 := withClass(r1, "reviews-v1", func(c *compiler.Class) { c.Name = "ratings-v1"; c.SnapshotVersion = "r2/x" })
	if err := s.Publish("r2", &compiler.Result{Classes: append(r2.Classes, r1.Class("reviews-v1"))}); err != nil {
		t.Fatal(err)
	}
	c.waitVersion(t, 10*time.Second, "r2/x", allTypes...)
	waitStatus(t, s, 10*time.Second, "ghost-1 in sync", inSync("ghost-1"))
}

// TestPipelineKeepsLastGood: a revision with a CUE error, one that the
// vet step denies and one that does not compile each leave the previous
// revision serving; the status shows the step and the error with
// file:line.
func TestPipelineKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, 9080, "one", "")
	s, addr := startServer(t, Options{})
	var vetErr error
	p := &Pipeline{Server: s, Vet: func(m *mesh.Model) error { return vetErr }}
	if err := p.Reconcile(dir, "good"); err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr, "fe", "frontend-v1", false)
	waitStatus(t, s, 10*time.Second, "fe in sync", inSync("fe"))
	good := s.Status()

	// A split that does not sum to 100.
	writeMesh(t, dir, 9080, "two", `versions: v2: {labels: version: "v2"}
			routes: split: {match: path: prefix: "/", to: {v1: 50, v2: 40}}`)
	err := p.Reconcile(dir, "bad-cue")
	var se *StepError
	if !errors.As(err, &se) || se.Step != status.StepLoad {
		t.Fatalf("Reconcile(bad-cue) = %v, want a load StepError", err)
	}
	st := s.Status()
	a := st.LastAttempt
	if a == nil || a.Revision != "bad-cue" || a.Step != status.StepLoad || len(a.Problems) == 0 {
		t.Fatalf("last attempt %+v, want bad-cue failed at load with problems", a)
	}
	if pr := a.Problems[0]; pr.File != "mesh.cue" || pr.Line == 0 || !strings.Contains(a.Error, "mesh.cue:") {
		t.Errorf("problem %+v / error %q, want mesh.cue:<line>", pr, a.Error)
	}
	t.Logf("status shows: %s", a.Error)
	if st.Revision != "good" || st.Classes["frontend-v1"] != good.Classes["frontend-v1"] || !inSync("fe")(st) {
		t.Errorf("after bad-cue: revision %q classes %v, want good's", st.Revision, st.Classes)
	}

	// The vet step denies.
	writeMesh(t, dir, 9080, "two", "")
	vetErr = schema.Errors{{Pos: mesh.Pos{File: "mesh.cue", Line: 16, Column: 4}, Path: "mesh.services.reviews", Msg: "policy: no-plaintext: mtls is disable"}}
	if err := p.Reconcile(dir, "denied"); err == nil {
		t.Fatal("Reconcile(denied) succeeded")
	}
	st = s.Status()
	if a := st.LastAttempt; a.Step != status.StepVet || len(a.Problems) != 1 || a.Problems[0].Line != 16 || st.Revision != "good" {
		t.Errorf("after a vet denial: %+v, revision %q", a, st.Revision)
	}

	// Vet passes: served.
	vetErr = nil
	if err := p.Reconcile(dir, "fixed"); err != nil {
		t.Fatal(err)
	}
	c.waitVersion(t, 10*time.Second, s.Status().Classes["frontend-v1"], allTypes...)
	st = waitStatus(t, s, 10*time.Second, "fe in sync with fixed", inSync("fe"))
	if st.Revision != "fixed" || st.LastAttempt.Error != "" {
		t.Errorf("status after fixed: %s", dumpStatus(st))
	}
}

// TestStatusHTTP: GET /status is the Status as JSON that the CLI's types
// decode; other methods are refused.
func TestStatusHTTP(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, 9080, "one", "")
	s, addr := startServer(t, Options{})
	if err := s.Publish("r1", compileDir(t, dir, "r1")); err != nil {
		t.Fatal(err)
	}
	dial(t, addr, "fe", "frontend-v1", false)
	waitStatus(t, s, 10*time.Second, "fe in sync", inSync("fe"))
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s.SetCertExpiry("fe", expiry)

	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var st status.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	p := proxy(st, "fe")
	if st.Revision != "r1" || p == nil || !p.InSync || !p.CertExpiry.Equal(expiry) || p.Acked[resource.ClusterType] == "" {
		t.Errorf("decoded status: %s", body)
	}
	for _, key := range []string{`"revision": "r1"`, `"nodeID": "fe"`, `"ackedVersion"`, `"certExpiry": "2030-01-02T03:04:05Z"`, `"type.googleapis.com/envoy.config.cluster.v3.Cluster"`} {
		if !strings.Contains(string(body), key) {
			t.Errorf("JSON lacks %s:\n%s", key, body)
		}
	}
	resp, err = http.Post(hs.URL+"/status", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status: %s", resp.Status)
	}
}

// TestNACKFromClient: an in-process client rejects one version; the
// status has its message and the resource, found as the only one that
// changed since the ACKed version, with its provenance; the client is
// served the previous revision again.
func TestNACKFromClient(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, 9080, "one", "")
	r1 := compileDir(t, dir, "r1")
	writeMesh(t, dir, 9080, "two", "")
	r2 := compileDir(t, dir, "r2")
	for _, delta := range []bool{false, true} {
		name := "sotw"
		if delta {
			name = "delta"
		}
		t.Run(name, func(t *testing.T) {
			s, addr := startServer(t, Options{})
			if err := s.Publish("r1", r1); err != nil {
				t.Fatal(err)
			}
			c := dial(t, addr, "fe", "frontend-v1", delta)
			v2 := r2.Class("frontend-v1").SnapshotVersion
			c.mu.Lock()
			c.nack = func(typeURL, version string) string {
				if typeURL == resource.RouteType && version == v2 {
					return "Invalid header value: rejected by test"
				}
				return ""
			}
			c.mu.Unlock()
			waitStatus(t, s, 10*time.Second, "fe in sync", inSync("fe"))
			if err := s.Publish("r2", r2); err != nil {
				t.Fatal(err)
			}
			st := waitStatus(t, s, 10*time.Second, "a NACK", func(st status.Status) bool {
				p := proxy(st, "fe")
				return p != nil && p.LastNACK != nil
			})
			p := proxy(st, "fe")
			n := p.LastNACK
			if n.Version != v2 || n.TypeURL != resource.RouteType || n.Message != "Invalid header value: rejected by test" {
				t.Errorf("NACK %+v", n)
			}
			if n.Resource != "outbound|http" || n.Provenance == nil || n.Provenance.File != "mesh.cue" || n.Provenance.Line == 0 {
				t.Errorf("NACK resource %q provenance %+v, want outbound|http from mesh.cue:<line>", n.Resource, n.Provenance)
			}
			// The revision was rolling out: the node is served r1 again.
			st = waitStatus(t, s, 10*time.Second, "r2 rolled back", rolledBack("r2", "fe"))
			if p := proxy(st, "fe"); p.AckedVersion != r1.Class("frontend-v1").SnapshotVersion || st.Revision != "r1" {
				t.Errorf("after the NACK: %+v serving %s, want in sync with r1 again", p, st.Revision)
			}
		})
	}
}
