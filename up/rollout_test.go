package up_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/up"
)

func rollbackMesh(route, reviewsExtra string) string {
	return fmt.Sprintf(`
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["reviews"]
		}
		reviews: {
			ports: http: port: 9080
			versions: v1: labels: version: "v1"
			%s
			routes: {
				all: {
					match: path: prefix: "/"
					headers: request: set: {"x-mesh-route": %q}
				}
			}
		}
`, reviewsExtra, route)
}

// poisonRoute is a TestOnlyBeforePublish hook: in every revision whose
// frontend route to reviews sets x-mesh-route "two", that route also gets
// a header value longer than the 16384 bytes Envoy allows — a value that
// Envoy rejects and that the compiler's acceptance gate would refuse
// before it reached a proxy, so it is added after the compiler.
func poisonRoute(_ string, res *compiler.Result) *compiler.Result {
	out := &compiler.Result{}
	for _, c := range res.Classes {
		if c.Name == "frontend-v1" {
			cp := *c
			cp.Resources = map[resource.Type][]types.Resource{}
			for t, rs := range c.Resources {
				cp.Resources[t] = rs
			}
			var routes []types.Resource
			for _, r := range c.Resources[resource.RouteType] {
				rc := r.(*routev3.RouteConfiguration)
				if setsHeader(rc, "two") {
					rc = proto.Clone(rc).(*routev3.RouteConfiguration)
					for _, vh := range rc.VirtualHosts {
						for _, rt := range vh.Routes {
							rt.RequestHeadersToAdd = append(rt.RequestHeadersToAdd, &corev3.HeaderValueOption{
								Header: &corev3.HeaderValue{Key: "x-big", Value: strings.Repeat("a", 17000)},
							})
						}
					}
					cp.SnapshotVersion += "-poisoned"
				}
				routes = append(routes, rc)
			}
			cp.Resources[resource.RouteType] = routes
			c = &cp
		}
		out.Classes = append(out.Classes, c)
	}
	return out
}

// setsHeader reports whether a route of rc adds a request header of value
// v.
func setsHeader(rc *routev3.RouteConfiguration, v string) bool {
	for _, vh := range rc.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			for _, h := range rt.GetRequestHeadersToAdd() {
				if h.GetHeader().GetValue() == v {
					return true
				}
			}
		}
	}
	return false
}

// TestRejectedRevisionRollsBack: through weft up and real Envoys, a commit
// whose frontend route Envoy rejects (a header value over 16384 bytes,
// injected after the compiler by a test-only hook) while reviews' part of
// it (a rate limit) is accepted: both proxies are served the previous
// revision again — frontend keeps routing with it, reviews' Envoy drops
// the rate limit — and `weft status` shows the rollout failed, with the
// proxy, the reason and the route's file:line. The next good commit
// reaches both.
func TestRejectedRevisionRollsBack(t *testing.T) {
	repo := t.TempDir()
	git(t, repo, "init", "-q", "-b", "main")
	writeMesh(t, repo, rollbackMesh("one", ""))
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "initial")
	tm := startMesh(t, repo, func(o *up.Options) { o.TestOnlyBeforePublish = poisonRoute })
	good := tm.Server().Revision()
	fe := tm.client("frontend-v1")
	route := func() string {
		t.Helper()
		code, a, _, err := get(fe, "http://reviews/", nil)
		if err != nil || code != 200 || a == nil {
			t.Fatalf("frontend -> reviews: %d %v %v", code, a, err)
		}
		return a.Headers["x-mesh-route"]
	}
	if r := route(); r != "one" {
		t.Fatalf("x-mesh-route %q, want one", r)
	}
	reviewsAdmin := tm.instance("reviews-v1").AdminSocket
	const limited = "local_ratelimit"

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bad := commit(t, repo, rollbackMesh("two", "rateLimit: {requestsPerSecond: 1000, burst: 1000}"))
	tm.waitAttempted(ctx, bad, "the commit Envoy rejects")
	for {
		if a := tm.Server().Status().LastAttempt; a.Step == status.StepRollout {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the rollout of %s never failed: %+v", bad, tm.Server().Status().LastAttempt)
		case <-tm.Server().Changed():
		}
	}
	tm.waitReady(ctx)
	st, err := up.FetchStatus(ctx, tm.StatusAddr())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	up.PrintStatus(&out, st, time.Now())
	t.Logf("weft status after the rejected commit:\n%s", out.String())

	a := st.LastAttempt
	if st.Revision != good || st.LastAppliedRevision != good || st.LastAttemptedRevision != bad || a.RolledBackTo != good {
		t.Errorf("revision %q applied %q attempted %q rolled back to %q; want %s served and applied, %s attempted", st.Revision, st.LastAppliedRevision, st.LastAttemptedRevision, a.RolledBackTo, good, bad)
	}
	if a.NACK == nil || a.NACK.NodeID != "frontend-v1-0" || a.NACK.Resource == "" || len(a.Problems) != 1 {
		t.Fatalf("attempt %+v, want frontend-v1-0's NACK of a route and its position", a)
	}
	p := a.Problems[0]
	mesh, _ := os.ReadFile(filepath.Join(repo, "mesh.cue"))
	lines := strings.Split(string(mesh), "\n")
	if p.File != "mesh.cue" || p.Line < 1 || p.Line > len(lines) || !strings.Contains(strings.Join(lines[p.Line-1:min(p.Line+2, len(lines))], "\n"), "match") {
		t.Errorf("problem at %s:%d, want the rejected route's line in mesh.cue", p.File, p.Line)
	}
	for !strings.Contains(tm.out.String(), "weft up: revision "+bad+" rejected while rolling out: proxy frontend-v1-0 rejected") {
		select {
		case <-ctx.Done():
			t.Fatalf("weft up did not print the rollback")
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, want := range []string{
		"revision: " + good + " (applied",
		"last attempt: " + bad + " FAILED at rollout",
		"every proxy rolled back to " + good,
		fmt.Sprintf("mesh.cue:%d: proxy frontend-v1-0 rejected RouteConfiguration", p.Line),
		"value length must be at most 16384 bytes",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("weft status lacks %q", want)
		}
	}
	for _, px := range st.Proxies {
		if !px.InSync || px.AckedVersion != st.Classes[px.Class] || !strings.HasPrefix(px.AckedVersion, good+"/") {
			t.Errorf("proxy %s: %+v, want in sync with %s", px.NodeID, px, good)
		}
	}
	if r := route(); r != "one" {
		t.Errorf("after the rollback x-mesh-route %q, want the previous revision's one", r)
	}
	if _, dump := tooltest.AdminGet(t, reviewsAdmin, "/config_dump?resource=dynamic_listeners"); strings.Contains(dump, limited) {
		t.Errorf("reviews' Envoy still has the rejected revision's rate limit")
	}

	fixed := commit(t, repo, rollbackMesh("three", "rateLimit: {requestsPerSecond: 1000, burst: 1000}"))
	if err := waitServedAndAcked(ctx, tm.Mesh, fixed, 2); err != nil {
		t.Fatal(err)
	}
	tm.waitReady(ctx)
	if r := route(); r != "three" {
		t.Errorf("after the good commit x-mesh-route %q, want three", r)
	}
	if _, dump := tooltest.AdminGet(t, reviewsAdmin, "/config_dump?resource=dynamic_listeners"); !strings.Contains(dump, limited) {
		t.Errorf("reviews' Envoy lacks the good commit's rate limit")
	}
	if st := tm.Server().Status(); st.LastAppliedRevision != fixed || st.LastAttempt.Error != "" {
		t.Errorf("after the good commit: applied %q, last attempt %+v; want %s applied", st.LastAppliedRevision, st.LastAttempt, fixed)
	}
}
