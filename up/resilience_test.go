package up_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const resilienceMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["api"]
		}
		shadow: {
			ports: http: port: 9090
			versions: v1: labels: version: "v1"
		}
		api: {
			ports: http: port: 9080
			versions: v1: labels: version: "v1"
			circuitBreaker: maxRetries: 1000
			routes: {
				retry: {
					match: path: prefix: "/retry"
					retries: {attempts: 9, on: ["5xx"]}
				}
				timeout: {
					match: path: prefix: "/timeout"
					timeout: "300ms"
					retries: attempts: 0
				}
				abort: {
					match: path: prefix: "/abort"
					fault: abort: {percent: 30, status: 503}
					retries: attempts: 0
				}
				delay: {
					match: path: prefix: "/delay"
					fault: delay: {percent: 100, duration: "300ms"}
				}
				mirror: {
					match: path: prefix: "/mirror"
					mirror: {to: "shadow", percent: 50}
				}
			}
		}
`

// Retries, timeout, fault abort and delay, mirroring — all enforced by
// the caller's Envoy.
func TestResilience(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, resilienceMesh)
	tm := startMesh(t, dir, nil)
	c := tm.client("frontend-v1")

	t.Run("retries", func(t *testing.T) {
		const n = 500
		var ok atomic.Int64
		parallel(n, 4, func(int) {
			if code, _, _, err := get(c, "http://api:9080/retry?fail=0.5", nil); err == nil && code == 200 {
				ok.Add(1)
			}
		})
		rate := 100 * float64(ok.Load()) / n
		t.Logf("upstream failing 50%%, 9 retries on 5xx: %.1f%% of %d requests succeeded", rate, n)
		if rate < 99 {
			t.Errorf("success %.1f%%, want >= 99%%", rate)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		code, _, _, err := get(c, "http://api:9080/timeout?delay=2s", nil)
		took := time.Since(start)
		t.Logf("timeout 300ms, upstream 2s: %d after %s", code, took.Round(time.Millisecond))
		if err != nil || code != http.StatusGatewayTimeout {
			t.Errorf("got %d %v, want 504", code, err)
		}
		if took < 250*time.Millisecond || took > time.Second {
			t.Errorf("answered after %s, want about 300ms", took)
		}
	})

	t.Run("abort", func(t *testing.T) {
		const n = 1000
		var aborted atomic.Int64
		parallel(n, 8, func(int) {
			if code, _, _, err := get(c, "http://api:9080/abort", nil); err == nil && code == 503 {
				aborted.Add(1)
			}
		})
		pct := 100 * float64(aborted.Load()) / n
		t.Logf("fault abort 30%%: %.1f%% of %d requests aborted", pct, n)
		if pct < 25 || pct > 35 {
			t.Errorf("aborted %.1f%%, want 30 +- 5", pct)
		}
	})

	t.Run("delay", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			start := time.Now()
			code, _, _, err := get(c, "http://api:9080/delay", nil)
			took := time.Since(start)
			if err != nil || code != 200 || took < 290*time.Millisecond || took > 2*time.Second {
				t.Errorf("delayed request: %d %v after %s, want 200 after >= 300ms", code, err, took)
			}
		}
	})

	t.Run("mirror", func(t *testing.T) {
		shadow := tm.instance("shadow-v1")
		count := func() int64 {
			resp, err := http.Get("http://" + shadow.AppAddr() + "/_demo/count")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var v struct{ Count int64 }
			_ = json.NewDecoder(resp.Body).Decode(&v)
			return v.Count
		}
		before := count()
		const n = 400
		var mu sync.Mutex
		notPrimary := 0
		parallel(n, 8, func(int) {
			code, a, _, err := get(c, "http://api:9080/mirror", nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || code != 200 || a == nil || a.Service != "api" {
				notPrimary++
			}
		})
		time.Sleep(300 * time.Millisecond) // mirrored requests are fire and forget
		got := count() - before
		share := 100 * float64(got) / n
		t.Logf("mirror 50%%: shadow received %d of %d (%.1f%%); caller saw a non-primary answer %d times", got, n, share, notPrimary)
		if share < 42 || share > 58 {
			t.Errorf("shadow share %.1f%%, want 50 +- 8", share)
		}
		if notPrimary > 0 {
			t.Errorf("%d answers did not come from the primary", notPrimary)
		}
	})
}

const outlierMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["pool"]
		}
		pool: {
			ports: http: port: 9080
			versions: v1: {labels: version: "v1", replicas: 2}
			outlierDetection: {consecutive5xx: 3, interval: "1s", baseEjectionTime: "30s", maxEjectionPercent: 50}
			routes: all: {match: path: prefix: "/", retries: attempts: 0}
		}
`

// Outlier detection: the replica that fails every request is ejected;
// then every request reaches the healthy one.
func TestOutlierEjection(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, outlierMesh)
	tm := startMesh(t, dir, nil)
	c := tm.client("frontend-v1")
	failures := 0
	for i := 0; i < 40; i++ {
		if code, _, _, _ := get(c, "http://pool/?fail-instance=pool-v1-1", nil); code != 200 {
			failures++
		}
	}
	okAfter := 0
	for i := 0; i < 100; i++ {
		if code, a, _, _ := get(c, "http://pool/?fail-instance=pool-v1-1", nil); code == 200 && a != nil && a.Instance == "pool-v1-0" {
			okAfter++
		}
	}
	t.Logf("outlier ejection: %d failures in the first 40 requests, then %d of 100 served by the healthy replica", failures, okAfter)
	if failures > 6 || okAfter != 100 {
		t.Errorf("the failing replica was not ejected: %d early failures, %d/100 healthy after", failures, okAfter)
	}
}
