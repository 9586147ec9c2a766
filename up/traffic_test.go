package up_test

import (
	"net/http"
	"sync"
	"testing"
)

const splitMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["reviews"]
		}
		reviews: {
			ports: http: port: 9080
			versions: {
				v1: labels: version: "v1"
				v2: labels: version: "v2"
			}
			routes: {
				canary: {
					match: headers: "x-canary": exact: "1"
					to: v2: 100
				}
				split: {
					match: path: prefix: "/"
					to: {v1: 90, v2: 10}
				}
			}
		}
`

// 90/10 over 2,000 requests through frontend's Envoy -> reviews' Envoys
// (mTLS) -> the apps; a header match sends everything to v2.
func TestSplit(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, splitMesh)
	tm := startMesh(t, dir, nil)
	c := tm.client("frontend-v1")

	const n = 2000
	var mu sync.Mutex
	counts := map[string]int{}
	parallel(n, 16, func(int) {
		code, a, _, err := get(c, "http://reviews:9080/", nil)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			counts["error: "+err.Error()]++
		case code != http.StatusOK || a == nil:
			counts["status "+http.StatusText(code)]++
		default:
			counts[a.Version]++
		}
	})
	v2 := 100 * float64(counts["v2"]) / n
	t.Logf("split over %d requests: %v (v2 %.1f%%)", n, counts, v2)
	if counts["v1"]+counts["v2"] != n {
		t.Fatalf("failed requests: %v", counts)
	}
	if v2 < 7 || v2 > 13 {
		t.Errorf("v2 got %.1f%% of requests, want 10 +- 3", v2)
	}

	for i := 0; i < 200; i++ {
		code, a, _, err := get(c, "http://reviews/", map[string]string{"x-canary": "1"})
		if err != nil || code != 200 || a == nil || a.Version != "v2" {
			t.Fatalf("x-canary request %d: %d %+v %v", i, code, a, err)
		}
	}
}
