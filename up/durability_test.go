package up_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-dev/weft/up"
)

// traffic sends requests from frontend to reviews on w workers until
// stop is called; it returns the number of requests and of failures.
func traffic(tm *testMesh, w int) (stop func() (total, failed int64, firstErr string)) {
	c := tm.client("frontend-v1")
	var total, failed atomic.Int64
	var mu sync.Mutex
	first := ""
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < w; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				code, a, _, err := get(c, "http://reviews:9080/", nil)
				total.Add(1)
				if err != nil || code != 200 || a == nil {
					failed.Add(1)
					mu.Lock()
					if first == "" {
						if err != nil {
							first = err.Error()
						} else {
							first = "status " + strconv.Itoa(code)
						}
					}
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return func() (int64, int64, string) {
		close(done)
		wg.Wait()
		return total.Load(), failed.Load(), first
	}
}

// Workload certificates of 30s are renewed at about half life while
// traffic flows: no request fails.
func TestCertRotationUnderTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 25s")
	}
	dir := t.TempDir()
	writeMesh(t, dir, splitMesh)
	tm := startMesh(t, dir, func(o *up.Options) { o.CertTTL = 30 * time.Second; o.CAMinTTL = 10 * time.Second })
	initial := map[string]string{}
	for _, in := range tm.Instances() {
		st, _ := tm.AgentStatus(in.NodeID)
		initial[in.NodeID] = st.Serial
	}
	stop := traffic(tm, 4)
	deadline := time.Now().Add(25 * time.Second)
	for time.Now().Before(deadline) {
		rotated := 0
		for _, in := range tm.Instances() {
			if st, _ := tm.AgentStatus(in.NodeID); st.Renewals >= 1 && st.Serial != initial[in.NodeID] {
				rotated++
			}
		}
		if rotated == len(initial) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // traffic on the new certificates
	total, failed, first := stop()
	for _, in := range tm.Instances() {
		st, _ := tm.AgentStatus(in.NodeID)
		t.Logf("%s: %d renewals, certificate expires %s", in.NodeID, st.Renewals, st.NotAfter.Format(time.TimeOnly))
		if st.Renewals < 1 {
			t.Errorf("%s: certificate not renewed", in.NodeID)
		}
	}
	t.Logf("30s certificates rotated under traffic: %d requests, %d failed", total, failed)
	if failed > 0 || total < 100 {
		t.Errorf("%d of %d requests failed (first: %s)", failed, total, first)
	}
}

// The xDS server is stopped for a second and started again while traffic
// flows: Envoys keep their configuration (no failed request), reconnect
// and ACK the same version.
func TestControlPlaneRestartUnderTraffic(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, splitMesh)
	tm := startMesh(t, dir, nil)
	before := tm.Server().Status()
	stop := traffic(tm, 4)
	time.Sleep(500 * time.Millisecond)
	if err := tm.RestartControlPlane(time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	tm.waitReady(ctx)
	reconnect := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	total, failed, first := stop()
	after := tm.Server().Status()
	t.Logf("control plane down 1s: %d requests, %d failed; all proxies re-ACKed %s after the restart", total, failed, reconnect.Round(time.Millisecond))
	if failed > 0 {
		t.Errorf("%d of %d requests failed (first: %s)", failed, total, first)
	}
	if after.Revision != before.Revision {
		t.Errorf("revision %s after the restart, want %s", after.Revision, before.Revision)
	}
	acked := map[string]string{}
	for _, p := range before.Proxies {
		acked[p.NodeID] = p.AckedVersion
	}
	for _, p := range after.Proxies {
		if !p.Connected || !p.InSync || p.AckedVersion != acked[p.NodeID] {
			t.Errorf("%s after the restart: connected %v in sync %v acked %s, want %s", p.NodeID, p.Connected, p.InSync, p.AckedVersion, acked[p.NodeID])
		}
	}
	if len(after.Proxies) != len(before.Proxies) {
		t.Errorf("%d proxies after the restart, %d before", len(after.Proxies), len(before.Proxies))
	}
}
