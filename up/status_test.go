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
