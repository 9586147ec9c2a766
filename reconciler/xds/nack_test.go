package xds

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/reconciler/api/status"
)

// TestNACKIsNotResent: a proxy that NACKs a version is never sent it
// again. go-control-plane's SotW cache answers a request whose
// version_info (the version Envoy kept) differs from the snapshot's at
// once, so a NACKed version used to come back ~2,000 times a second. In
// the 10 s after the NACK the server sends that proxy at most 3 responses
// (the rollback of the types it had accepted, or responses of other types
// that were already queued when the NACK arrived) and never a type again
// in a version it rejected, and logs one NACK warning about it — also
// when the proxy rejects everything it is sent, the rollback included (it
// is then held: sent nothing new).
func TestNACKIsNotResent(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, 9080, "one", "")
	r1 := compileDir(t, dir, "r1")
	writeMesh(t, dir, 9080, "two", "")
	r2 := compileDir(t, dir, "r2")
	v1, v2 := r1.Class("frontend-v1").SnapshotVersion, r2.Class("frontend-v1").SnapshotVersion
	type scenario struct {
		name  string
		delta bool
		all   bool // the proxy rejects everything once armed
		// held: the proxy ends held (it rejected the rollback too: the
		// delta server resends the route it had NACKed); otherwise it
		// ends in sync with r1 (a SotW proxy that rejected all of r2
		// kept r1 everywhere: the rollback sends it nothing).
		held bool
		s    *Server
		logs *tooltest.Output
	}
	scenarios := []*scenario{
		{name: "sotw rejects the route"},
		{name: "delta rejects the route", delta: true},
		{name: "sotw rejects everything", all: true},
		{name: "delta rejects everything", delta: true, all: true, held: true},
	}
	// Every scenario is set up, then one 10 s window is watched for all.
	for _, tc := range scenarios {
		tc.logs = &tooltest.Output{}
		s, addr := startServer(t, Options{Logger: slog.New(slog.NewTextHandler(tc.logs, nil))})
		tc.s = s
		if err := s.Publish("r1", r1); err != nil {
			t.Fatal(err)
		}
		fe := dial(t, addr, "fe", "frontend-v1", tc.delta)
		dial(t, addr, "rv", "reviews-v1", tc.delta)
		waitStatus(t, s, 10*time.Second, tc.name+": both in sync with r1", func(st status.Status) bool { return inSync("fe")(st) && inSync("rv")(st) })
		all := tc.all
		fe.mu.Lock()
		fe.nack = func(typeURL, version string) string {
			if all || (typeURL == resource.RouteType && version == v2) {
				return "rejected by test"
			}
			return ""
		}
		fe.mu.Unlock()
		if err := s.Publish("r2", r2); err != nil {
			t.Fatal(err)
		}
		// The NACK of r2 fails its rollout (fe may NACK more after it).
		waitStatus(t, s, 10*time.Second, tc.name+": fe NACKs r2", func(st status.Status) bool {
			a := st.LastAttempt
			return a.Revision == "r2" && a.Step == status.StepRollout && a.NACK.NodeID == "fe" && a.NACK.Version == v2
		})
	}
	time.Sleep(10 * time.Second)

	for _, tc := range scenarios {
		s := tc.s
		s.mu.Lock()
		n := s.nodes["fe"]
		after, resent, nacks := n.pushes-n.pushesAtNACK, n.resentRejected, n.nacks
		s.mu.Unlock()
		t.Logf("%s: %d responses to fe in the 10 s after its first NACK, %d NACKs in all", tc.name, after, nacks)
		if after > 3 || resent != 0 {
			t.Errorf("%s: after the NACK the server sent fe %d responses, %d of them a type again in a version it rejected; want at most 3 and none", tc.name, after, resent)
		}
		warnings := 0
		for _, l := range strings.Split(tc.logs.String(), "\n") {
			if strings.Contains(l, "proxy rejected a response (NACK)") && strings.Contains(l, "node=fe") {
				warnings++
			}
		}
		if warnings != 1 {
			t.Errorf("%s: %d NACK warnings about fe in the log, want 1 (the first; the rest summarized):\n%s", tc.name, warnings, tc.logs)
		}
		st := s.Status()
		if st.Revision != "r1" || st.LastAttempt.Step != status.StepRollout || !inSync("rv")(st) {
			t.Errorf("%s: status %s, want r2 rolled back, rv in sync with r1", tc.name, dumpStatus(st))
		}
		p := proxy(st, "fe")
		if tc.held {
			if !strings.Contains(p.Error, "nothing new is sent") {
				t.Errorf("%s: fe %+v, want held with an error", tc.name, p)
			}
		} else if !inSync("fe")(st) || p.AckedVersion != v1 {
			t.Errorf("%s: fe %+v, want in sync with r1 again", tc.name, p)
		}
	}
}
