package up_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/up"
)

func TestPrintStatusNACK(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := &status.Status{
		Revision: "main@sha1:aaaa", ServedSince: now,
		LastAttempt: &status.Attempt{Revision: "main@sha1:bbbb", At: now, Step: "load", Error: "x",
			Problems: []status.Problem{{File: "mesh.cue", Line: 12, Column: 3, Message: "conflicting values"}}},
		Proxies: []status.Proxy{{
			NodeID: "reviews-v1-0", Class: "reviews-v1", Connected: true, Version: "main@sha1:aaaa/2", AckedVersion: "main@sha1:aaaa/1",
			Acked:      map[string]string{"type.googleapis.com/envoy.config.listener.v3.Listener": "main@sha1:aaaa/1"},
			CertExpiry: now.Add(time.Hour),
			LastNACK: &status.NACK{Version: "main@sha1:aaaa/2", TypeURL: "type.googleapis.com/envoy.config.listener.v3.Listener",
				Message: "duplicate listener", Resource: "inbound", Provenance: &status.Provenance{File: "reviews.cue", Line: 7}},
		}},
	}
	var b bytes.Buffer
	up.PrintStatus(&b, st, now)
	out := b.String()
	for _, want := range []string{
		"revision: main@sha1:aaaa",
		"last attempt: main@sha1:bbbb FAILED at load",
		"mesh.cue:12:3: conflicting values",
		"reviews-v1-0  reviews-v1  true",
		"(in 1h0m0s)",
		"reviews-v1-0 acked per type: Listener=main@sha1:aaaa/1",
		"reviews-v1-0 NACK of Listener main@sha1:aaaa/2 resource inbound (reviews.cue:7): duplicate listener",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A revision rolling out, a rollout that a proxy rejected (rolled back,
// with the proxy, the reason and file:line) and refused xDS streams.
func TestPrintStatusRollout(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	nack := &status.NACK{NodeID: "frontend-v1-0", Version: "r2/bb", TypeURL: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
		Reason: "invalid HeaderValue.Value: value length must be at most 16384 bytes", Message: "goo.gle/debugonly ...",
		Resource: "outbound|http", Provenance: &status.Provenance{Service: "reviews", File: "mesh.cue", Line: 21}}
	st := &status.Status{
		Revision: "r1", ServedSince: now, LastAppliedRevision: "r1", LastAppliedAt: now, LastAttemptedRevision: "r2",
		LastAttempt: &status.Attempt{Revision: "r2", At: now, Step: status.StepRollout, RolledBackTo: "r1", NACK: nack,
			Error:    "proxy frontend-v1-0 rejected RouteConfiguration \"outbound|http\" of r2/bb: ...; every proxy is served r1 again",
			Problems: []status.Problem{{File: "mesh.cue", Line: 21, Message: "proxy frontend-v1-0 rejected RouteConfiguration"}}},
		RefusedStreams: []status.RefusedStream{{At: now, First: now.Add(-time.Minute), Count: 3, Identity: "spiffe://t.example/ns/t/sa/reviews",
			Address: "127.0.0.1:5555", NodeID: "catalog-v1-0", Class: "catalog-v1", Reason: "node \"catalog-v1-0\" runs as spiffe://t.example/ns/t/sa/catalog"}},
	}
	var b bytes.Buffer
	up.PrintStatus(&b, st, now)
	out := b.String()
	for _, want := range []string{
		"revision: r1 (applied: ACKed by every connected proxy",
		"last attempted: r2",
		"last attempt: r2 FAILED at rollout (2026-01-02T03:04:05Z), every proxy rolled back to r1:",
		"  mesh.cue:21: proxy frontend-v1-0 rejected RouteConfiguration",
		`spiffe://t.example/ns/t/sa/reviews from 127.0.0.1:5555 claimed node "catalog-v1-0" class "catalog-v1": node "catalog-v1-0" runs as`,
		"(3 times since 2026-01-02T03:03:05Z)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Without a position, the rejection is spelled out.
	st.LastAttempt.Problems = nil
	b.Reset()
	up.PrintStatus(&b, st, now)
	for _, want := range []string{
		"  proxy frontend-v1-0 rejected RouteConfiguration r2/bb resource outbound|http (mesh.cue:21)",
		"  reason: invalid HeaderValue.Value: value length must be at most 16384 bytes",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}

	st = &status.Status{Revision: "r3", ServedSince: now, LastAppliedRevision: "r1", LastAppliedAt: now, LastAttemptedRevision: "r3",
		Rollout: &status.Rollout{Revision: "r3", Since: now, Waiting: []string{"reviews-v1-0"}, WaitingCount: 1}}
	b.Reset()
	up.PrintStatus(&b, st, now)
	for _, want := range []string{
		"revision: r3 (rolling out since 2026-01-02T03:04:05Z: 1 connected proxies have not ACKed it yet: reviews-v1-0)",
		"last applied: r1",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}
