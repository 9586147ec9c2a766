package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
)

// A proxy that reconnected to another replica counts once, as its latest
// connection or disconnection says, whichever replica reports it.
func TestDedupeProxies(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	on := func(id string, since int) status.Proxy {
		return status.Proxy{NodeID: id, Connected: true, InSync: true, ConnectedSince: at(since)}
	}
	off := func(id string, since, until int) status.Proxy {
		return status.Proxy{NodeID: id, ConnectedSince: at(since), DisconnectedAt: at(until)}
	}
	tests := []struct {
		name      string
		in        []status.Proxy
		connected int
	}{
		{"distinct proxies", []status.Proxy{on("a", 1), on("b", 1)}, 2},
		{"moved: old connection still reported elsewhere", []status.Proxy{on("a", 1), on("a", 5)}, 1},
		{"moved here after leaving", []status.Proxy{off("a", 1, 4), on("a", 5)}, 1},
		{"left here after the other report's connection", []status.Proxy{on("a", 1), off("a", 2, 6)}, 0},
		{"reconnected here, an older disconnection kept", []status.Proxy{status.Proxy{NodeID: "a", Connected: true, ConnectedSince: at(7), DisconnectedAt: at(6)}, on("a", 3)}, 1},
		{"tie: connected wins", []status.Proxy{off("a", 1, 5), on("a", 5)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := dedupeProxies(tt.in)
			if len(got) != 1 && tt.name != "distinct proxies" {
				t.Fatalf("%d entries, want 1: %+v", len(got), got)
			}
			n, _, _ := status.Status{Proxies: got}.ProxyCounts()
			if n != tt.connected {
				t.Errorf("connected %d, want %d: %+v", n, tt.connected, got)
			}
		})
	}
}

// A report holds the connected proxies only, with their NACK messages
// cut; the leader reads it back unless it is stale.
func TestProxiesReport(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	nack := &status.NACK{Version: "r1/x", Reason: "bad route", Message: strings.Repeat("m", 5000)}
	in := []status.Proxy{
		{NodeID: "a", Class: "web-v1", Connected: true, Version: "r1/x", AckedVersion: "r0/y", LastNACK: nack, Acked: map[string]string{"t": "r0/y"}},
		{NodeID: "b", Class: "web-v1"},
	}
	cm, err := proxiesReport("weft-system", "weft-controller-0", in, now)
	if err != nil {
		t.Fatal(err)
	}
	if cm.Name != "weft-proxies-weft-controller-0" || cm.Labels[ProxiesLabel] != "true" {
		t.Errorf("report %s labels %v", cm.Name, cm.Labels)
	}
	for _, tt := range []struct {
		age     time.Duration
		wantErr string
	}{
		{0, ""},
		{staleAfter(time.Second), ""},
		{staleAfter(time.Second) + time.Second, "stale: written 34s ago, more than 33s"},
	} {
		ps, err := liveReport(cm, now.Add(tt.age), staleAfter(time.Second))
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("age %s: error %v, want %q", tt.age, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("age %s: %v", tt.age, err)
		}
		if len(ps) != 1 || ps[0].NodeID != "a" || ps[0].LastNACK == nil || ps[0].LastNACK.Reason != "bad route" || ps[0].Acked != nil {
			t.Fatalf("read back %+v", ps)
		}
		if n := len(ps[0].LastNACK.Message); n > 1024+len("…") {
			t.Errorf("NACK message of %d bytes kept", n)
		}
		c, _, nacking := status.Status{Proxies: ps}.ProxyCounts()
		if c != 1 || nacking != 1 {
			t.Errorf("counts connected %d nacking %d, want 1 and 1", c, nacking)
		}
	}
	cm.Data[ProxiesUpdatedKey] = "yesterday"
	if _, err := liveReport(cm, now, time.Minute); err == nil || !strings.Contains(err.Error(), ProxiesUpdatedKey) {
		t.Errorf("unreadable time: error %v", err)
	}
}
