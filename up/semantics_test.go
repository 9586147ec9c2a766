package up_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/up"
	"github.com/weft-dev/weft/up/demoapp"
)

// The traffic semantics of issue 7, each as Istio's task (or the bug
// report) has it, through real Envoys started by weft up.
const semanticsMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["reviews", "httpbin", "quota"]
		}
		reviews: {
			ports: http: port: 9080
			versions: {
				v1: labels: version: "v1"
				v2: labels: version: "v2"
			}
			routes: {
				legacy: {
					match: path: prefix: "/legacy"
					to: v1: 100
					rewrite: host: "reviews.internal:9080"
					mirror: {to: "reviews", version: "v2"}
				}
				// Istio's mirroring task: v1 serves, v2 gets a copy of everything.
				mirrored: {
					match: path: prefix: "/"
					to: {v1: 100, v2: 0}
					mirror: {to: "reviews", version: "v2", percent: 100}
				}
			}
		}
		// Istio's circuit-breaking task.
		httpbin: {
			ports: http: port: 8000
			versions: v1: labels: version: "v1"
			circuitBreaker: {maxConnections: 1, maxPendingRequests: 1, maxRequestsPerConnection: 1}
			routes: all: {match: path: prefix: "/", retries: attempts: 0}
		}
		// Istio's local rate-limit task: 4 requests, refilled 4 per minute.
		quota: {
			ports: http: port: 7000
			versions: v1: labels: version: "v1"
			rateLimit: {requests: 4, per: "60s"}
		}
`

func TestTrafficSemantics(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, semanticsMesh)
	tm := startMesh(t, dir, nil)
	c := tm.client("frontend-v1")

	// First, while quota's bucket is full: 4 pass, then 429 for the rest
	// of the minute (one token comes back every 15s).
	t.Run("rate limit per minute", func(t *testing.T) {
		var codes []int
		for i := 0; i < 10; i++ {
			code, _, _, err := get(c, "http://quota:7000/", nil)
			if err != nil {
				t.Fatal(err)
			}
			codes = append(codes, code)
		}
		t.Logf("rateLimit {requests: 4, per: 60s}, 10 requests: %v", codes)
		if fmt.Sprint(codes) != "[200 200 200 200 429 429 429 429 429 429]" {
			t.Errorf("codes %v, want 4 x 200 then 429", codes)
		}
	})

	t.Run("mirror to another version", func(t *testing.T) {
		v2 := tm.instance("reviews-v2")
		before := demoCount(t, v2)
		const n = 300
		var mu sync.Mutex
		seen := map[string]int{}
		parallel(n, 8, func(int) {
			code, a, _, err := get(c, "http://reviews:9080/mirror", nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil || code != 200 || a == nil:
				seen[fmt.Sprintf("failed %d %v", code, err)]++
			case a.Headers[mirrorHeader] != "":
				seen["primary saw "+mirrorHeader]++
			default:
				seen[a.Version]++
			}
		})
		// The copies are fire and forget: wait for them to land.
		got := demoCount(t, v2) - before
		for deadline := time.Now().Add(5 * time.Second); got < n && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			got = demoCount(t, v2) - before
		}
		last := demoLast(t, v2)
		t.Logf("mirror v1 -> v2 at 100%%: the caller saw %v; v2 received %d copies of %d; the last with Host %q, %s: %q",
			seen, got, n, last.Host, mirrorHeader, last.Headers[mirrorHeader])
		if seen["v1"] != n {
			t.Errorf("the caller saw %v, want %d answers from v1 only", seen, n)
		}
		if got < n*97/100 || got > n {
			t.Errorf("v2 received %d copies, want %d (at least 97%%)", got, n)
		}
		if last.Host != "reviews:9080" || last.Headers[mirrorHeader] != "true" || last.Path != "/mirror" {
			t.Errorf("the copy v2 saw: Host %q, %s %q, path %q; want Host reviews:9080 (no -shadow), %s: true, /mirror",
				last.Host, mirrorHeader, last.Headers[mirrorHeader], last.Path, mirrorHeader)
		}
	})

	t.Run("host rewrite", func(t *testing.T) {
		code, a, _, err := get(c, "http://reviews:9080/legacy/x", nil)
		if err != nil || code != 200 || a == nil {
			t.Fatalf("GET /legacy/x: %d %v", code, err)
		}
		t.Logf("rewrite.host: the app saw Host %q", a.Host)
		if a.Host != "reviews.internal:9080" {
			t.Errorf("Host %q, want the rewritten reviews.internal:9080", a.Host)
		}
		// The route's mirror copy has the primary's Host: the rewritten one.
		v2 := tm.instance("reviews-v2")
		var last demoapp.Answer
		for deadline := time.Now().Add(5 * time.Second); last.Path != "/legacy/x" && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			last = demoLast(t, v2)
		}
		t.Logf("its mirror copy: %s with Host %q", last.Path, last.Host)
		if last.Path != "/legacy/x" || last.Host != "reviews.internal:9080" {
			t.Errorf("mirror copy: %s with Host %q, want /legacy/x with the rewritten Host", last.Path, last.Host)
		}
		// (Its copy goes to v2, after the mirror test counted them.)
		if _, a, _, _ := get(c, "http://reviews:9080/other", nil); a == nil || a.Host != "reviews:9080" {
			t.Errorf("a route without rewrite: Host %+v, want reviews:9080", a)
		}
	})

	t.Run("circuit breaker", func(t *testing.T) {
		fe := tm.instance("frontend-v1")
		if n := envoyConcurrency(t, fe); n != 2 {
			t.Errorf("frontend's Envoy runs %d workers, want weft up's default 2", n)
		}
		stat := "cluster." + compiler.ClusterStatName("outbound|8000||httpbin.t") + ".upstream_rq_pending_overflow"
		for _, clients := range []int{1, 3} {
			before := envoyStat(t, fe, stat)
			res := hammer(t, tm, "http://httpbin:8000/", clients, 100)
			overflow := envoyStat(t, fe, stat) - before
			t.Logf("maxConnections 1, maxPendingRequests 1, maxRequestsPerConnection 1; %d client(s) x 100 requests: %v; %s +%d",
				clients, res, stat, overflow)
			if res["200"]+res["503 overflow"] != clients*100 {
				t.Errorf("answers other than 200 and the circuit breaker's 503: %v", res)
			}
			if clients == 1 && res["503 overflow"] != 0 {
				t.Errorf("one client at a time overflowed %d times, want none", res["503 overflow"])
			}
			if clients == 3 && res["503 overflow"] == 0 {
				t.Errorf("3 concurrent clients never overflowed: %v", res)
			}
			if overflow != int64(res["503 overflow"]) {
				t.Errorf("Envoy counted %d pending overflows, the clients saw %d", overflow, res["503 overflow"])
			}
		}
	})
}

const mirrorHeader = "x-weft-mirrored"

// hammer sends requests to u through frontend-v1's Envoy from clients
// concurrent clients, each on its own connection and one request at a
// time, and counts the answers ("200", "503 overflow" for the circuit
// breaker's, else the status or error).
func hammer(t *testing.T, tm *testMesh, u string, clients, each int) map[string]int {
	t.Helper()
	var mu sync.Mutex
	res := map[string]int{}
	var wg sync.WaitGroup
	for range clients {
		c := tm.client("frontend-v1") // its own transport: its own connection
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				code, _, hdr, err := get(c, u, nil)
				k := fmt.Sprint(code)
				switch {
				case err != nil:
					k = err.Error()
				case code == http.StatusServiceUnavailable && hdr.Get("x-envoy-overloaded") == "true":
					k = "503 overflow"
				}
				mu.Lock()
				res[k]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return res
}

// demoCount is the number of requests an instance's demo app served.
func demoCount(t *testing.T, in *up.Instance) int {
	t.Helper()
	var v struct{ Count int }
	getJSON(t, "http://"+in.AppAddr()+"/_demo/count", &v)
	return v.Count
}

// demoLast is the last request an instance's demo app served.
func demoLast(t *testing.T, in *up.Instance) demoapp.Answer {
	t.Helper()
	var a demoapp.Answer
	getJSON(t, "http://"+in.AppAddr()+"/_demo/last", &a)
	return a
}

// adminJSON decodes a JSON page of an instance's Envoy admin (on its
// unix socket).
func adminJSON(t *testing.T, in *up.Instance, path string, v any) {
	t.Helper()
	code, body := tooltest.AdminGet(t, in.AdminSocket, path)
	if code != http.StatusOK {
		t.Fatalf("%s admin %s: %d %s", in.NodeID, path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%s admin %s: %v", in.NodeID, path, err)
	}
}

// envoyConcurrency is the number of worker threads an instance's Envoy
// runs (its --concurrency, from /server_info).
func envoyConcurrency(t *testing.T, in *up.Instance) int {
	t.Helper()
	var info struct {
		Options struct {
			Concurrency int `json:"concurrency"`
		} `json:"command_line_options"`
	}
	adminJSON(t, in, "/server_info", &info)
	return info.Options.Concurrency
}

// envoyStat reads one counter of an instance's Envoy.
func envoyStat(t *testing.T, in *up.Instance, name string) int64 {
	t.Helper()
	var st struct {
		Stats []struct {
			Name  string `json:"name"`
			Value int64  `json:"value"`
		} `json:"stats"`
	}
	adminJSON(t, in, "/stats?format=json&filter="+url.QueryEscape("^"+regexp.QuoteMeta(name)+"$"), &st)
	for _, s := range st.Stats {
		if s.Name == name {
			return s.Value
		}
	}
	t.Fatalf("%s has no stat %s", in.NodeID, name)
	return 0
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %s: %v", u, resp.Status, err)
	}
}

// A split giving weight to a version without replicas would answer that
// share with 503 "no healthy upstream": the policy gate refuses the
// commit with the route, the version and the file:line of the weight,
// and the previous revision keeps answering every request.
func TestSplitOnIdleVersionDenied(t *testing.T) {
	idle := strings.Replace(gatedMesh, `v2: labels: version: "v2"`, `v2: {labels: version: "v2", replicas: 0}`, 1)
	repo := t.TempDir()
	git(t, repo, "init", "-q", "-b", "main")
	writeMesh(t, repo, idle)
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "initial")
	tm := startMesh(t, repo, func(o *up.Options) { o.Gate = &pipeline.Gate{} })
	good := tm.Server().Revision()

	bad := commit(t, repo, strings.Replace(idle, "to: {v1: 100, v2: 0}", "to: {v1: 90, v2: 10}", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tm.waitAttempted(ctx, bad, "the split on an idle version")
	st := tm.Server().Status()
	if st.Revision != good || st.LastAttempt == nil || st.LastAttempt.Step != "vet" || len(st.LastAttempt.Problems) != 1 {
		t.Fatalf("served %s, last attempt %+v; want %s still served and one vet problem", st.Revision, st.LastAttempt, good)
	}
	p := st.LastAttempt.Problems[0]
	t.Logf("refused: %s:%d:%d: %s: %s (fix: %s)", p.File, p.Line, p.Column, p.Path, p.Message, p.Fix)
	if p.File != "mesh.cue" || p.Line == 0 || !strings.HasPrefix(p.Path, "mesh.services.reviews.routes") || !strings.HasSuffix(p.Path, ".to.v2") ||
		!strings.Contains(p.Message, `callee_endpoints: route "split" of service reviews (called by frontend) sends 10% to version v2, which has no endpoints or replicas`) {
		t.Errorf("problem %+v, want callee_endpoints at mesh.cue:line of the route's to.v2", p)
	}
	c := tm.client("frontend-v1")
	for i := 0; i < 50; i++ {
		if code, a, _, err := get(c, "http://reviews/", nil); err != nil || code != 200 || a == nil || a.Version != "v1" {
			t.Fatalf("the previous revision (100%% v1) is not serving: %d %v %v", code, a, err)
		}
	}
}
