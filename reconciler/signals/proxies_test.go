package signals

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// statsServer serves a text exposition like a proxy's stats listener:
// edge requests counted by reporter source, and one caller's requests as
// the destination saw them (reporter destination, mTLS chain).
type statsServer struct {
	mu                    sync.Mutex
	ok, errs, inbound403s int
}

func (s *statsServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	b.WriteString("# TYPE envoy_weft_requests_total counter\n")
	fmt.Fprintf(&b, "envoy_weft_requests_total{reporter=\"source\",mesh=\"t\",source_service=\"a\",source_version=\"v1\",source_principal=\"spiffe://t/ns/t/sa/a\",destination_service=\"b\",destination_version=\"v1\",response_code=\"200\",response_code_class=\"2xx\",grpc_status=\"\"} %d\n", s.ok)
	fmt.Fprintf(&b, "envoy_weft_requests_total{reporter=\"source\",mesh=\"t\",source_service=\"a\",source_version=\"v1\",source_principal=\"spiffe://t/ns/t/sa/a\",destination_service=\"b\",destination_version=\"v1\",response_code=\"503\",response_code_class=\"5xx\",grpc_status=\"\"} %d\n", s.errs)
	fmt.Fprintf(&b, "envoy_weft_requests_total{reporter=\"destination\",mesh=\"t\",source_principal=\"spiffe://t/ns/t/sa/c\",destination_service=\"b\",destination_version=\"v1\",response_code=\"403\",response_code_class=\"4xx\",grpc_status=\"\"} %d\n", s.inbound403s)
	_, _ = w.Write([]byte(b.String()))
}

func (s *statsServer) add(ok, errs, inbound int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ok += ok
	s.errs += errs
	s.inbound403s += inbound
}

// TestProxiesWindow: with a Window, each call's signals cover the newest
// baseline at least Window old, however often it is called; without
// Inbound, the destination's record of a mesh caller is left out.
func TestProxiesWindow(t *testing.T) {
	st := &statsServer{}
	srv := httptest.NewServer(st)
	defer srv.Close()
	clock := time.Unix(1000, 0)
	target := strings.TrimPrefix(srv.URL, "http://")
	p := &Proxies{Targets: func() []string { return []string{target} }, Now: func() time.Time { return clock },
		Window: 20 * time.Second, Inbound: true}
	ctx := context.Background()
	step := func(secs int, ok, errs, inbound int) []Edge {
		t.Helper()
		st.add(ok, errs, inbound)
		clock = clock.Add(time.Duration(secs) * time.Second)
		es, err := p.Edges(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	if es := step(0, 0, 0, 0); es != nil {
		t.Fatalf("first call: %v, want a baseline only", es)
	}
	// 10s: 100 ok. 20s: 100 ok + 100 errors. The baseline stays at 0s
	// until a sample is 20s old.
	step(10, 100, 0, 0)
	es := step(10, 100, 100, 10)
	want := "a/v1 -> b/v1  15.00 req/s  33.3% errors  p99 0s\n" +
		"principal spiffe://t/ns/t/sa/c -> b/v1  0.50 req/s  0.0% errors  p99 0s\n"
	if got := String(es); got != want {
		t.Errorf("over 0s..20s:\n%swant:\n%s", got, want)
	}
	// 30s: 100 errors. Window 20s: since the 10s sample.
	es = step(10, 0, 100, 0)
	want = "a/v1 -> b/v1  15.00 req/s  66.7% errors  p99 0s\n" +
		"principal spiffe://t/ns/t/sa/c -> b/v1  0.50 req/s  0.0% errors  p99 0s\n"
	if got := String(es); got != want {
		t.Errorf("over 10s..30s:\n%swant:\n%s", got, want)
	}
	if len(p.hist) > 3 {
		t.Errorf("%d samples kept, want at most 3", len(p.hist))
	}
	if !es[1].Inbound() || es[1].Source != "" {
		t.Errorf("inbound edge %+v", es[1])
	}

	// Without Inbound and Window: since the previous call, callers' edges only.
	q := &Proxies{Targets: p.Targets, Now: p.Now}
	if _, err := q.Edges(ctx); err != nil {
		t.Fatal(err)
	}
	st.add(10, 0, 10)
	clock = clock.Add(time.Second)
	es, err := q.Edges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := String(es), "a/v1 -> b/v1  10.00 req/s  0.0% errors  p99 0s\n"; got != want {
		t.Errorf("since the previous call:\n%swant:\n%s", got, want)
	}
}
