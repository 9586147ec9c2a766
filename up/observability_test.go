package up_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-dev/weft/compiler/monitoring"
	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/reconciler/servicemap"
	"github.com/weft-dev/weft/reconciler/signals"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/up/demoapp"
)

// chainMesh is frontend (edge) -> orders -> payments (two versions);
// orders' proxy answers 20% of its calls to payments with an injected
// 503, and payments' SLO (99% available) pages on that.
const chainMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["orders"]
		}
		orders: {
			ports: http: port: 8083
			versions: v1: labels: version: "v1"
			calls: ["payments"]
			slo: {availability: 99.9, latency: p99: "2500ms"}
		}
		payments: {
			ports: http: port: 8084
			versions: {
				v1: labels: version: "v1"
				v2: labels: version: "v2"
			}
			routes: charge: {
				match: path: prefix: "/"
				fault: abort: {percent: 20, status: 503}
			}
			slo: availability: 99
		}
`

// chainPath is the request the load generator sends to frontend: it calls
// orders, which calls payments.
const chainPath = "/?call=" + "orders%2F%3Fcall%3Dpayments"

// prom is a real Prometheus running the configuration weft up wrote.
type prom struct {
	t    *testing.T
	addr string
}

// startPrometheus runs prometheus --config.file=<the generated one> on a
// free loopback port until the test ends.
func startPrometheus(t *testing.T, config string) *prom {
	t.Helper()
	bin := tooltest.Prometheus(t)
	addr := fmt.Sprintf("127.0.0.1:%d", tooltest.FreePorts(t, 1)[0])
	data := t.TempDir()
	logf, err := os.Create(filepath.Join(data, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+config, "--web.listen-address="+addr,
		"--storage.tsdb.path="+filepath.Join(data, "tsdb"), "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus.log:\n%s", b)
		}
	})
	p := &prom{t: t, addr: addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus on %s not ready: %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sample is one series of an instant query result.
type sample struct {
	Metric map[string]string
	Value  float64
}

// query runs an instant query (at now) through the HTTP API.
func (p *prom) query(q string) ([]sample, error) {
	resp, err := http.Get("http://" + p.addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	var out []sample
	for _, s := range r.Data.Result {
		v, _ := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		out = append(out, sample{Metric: s.Metric, Value: v})
	}
	return out, nil
}

// sum is the sum of a query's values (0 when it has none).
func (p *prom) sum(q string) float64 {
	p.t.Helper()
	ss, err := p.query(q)
	if err != nil {
		p.t.Fatal(err)
	}
	var v float64
	for _, s := range ss {
		v += s.Value
	}
	return v
}

// waitFor polls cond every 500ms until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s after %s", what, state, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestPrometheusGoldenSignals runs the chain with a real Prometheus that
// uses the scrape configuration weft up wrote, sends a known load through
// it, and checks what Prometheus answers: every edge's request count and
// rate match what the load generator sent, the error share of the
// faulted edge matches the 503s the generator saw, the destination
// version of each request is the version that served it, every dashboard
// panel's query returns data, the control plane's metrics are scraped,
// and payments' SLO alert fires.
func TestPrometheusGoldenSignals(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, chainMesh)
	model, err := schema.Load(dir, schema.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tm := startMesh(t, dir, nil)
	cfg := tm.PrometheusConfigPath()
	if !strings.Contains(tm.out.String(), "Prometheus scrape configuration: "+cfg) {
		t.Errorf("weft up did not print the scrape configuration's path:\n%s", tm.out)
	}
	p := startPrometheus(t, cfg)

	// Prometheus finds the three proxies through proxies.json.
	waitFor(t, 30*time.Second, "proxies scraped", func() (bool, string) {
		n := p.sum(`count(up{job="weft-proxies"} == 1)`)
		return n == 4, fmt.Sprintf("%v proxies up", n)
	})

	// The service map's reader that needs no Prometheus takes its
	// baseline from the proxies now.
	direct := &signals.Proxies{Targets: func() []string {
		var ts []string
		for _, in := range tm.Instances() {
			ts = append(ts, in.StatsAddr)
		}
		return ts
	}}
	if _, err := direct.Edges(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The load: 20 requests a second for 30 seconds, from outside into
	// frontend; the generator counts the 503s payments' edge answered.
	const pace, seconds = 20, 30
	in := tm.instance("frontend-v1")
	client := &http.Client{Timeout: 10 * time.Second}
	var sent, faults, failed atomic.Int64
	sentAt := make([]time.Time, 0, pace*seconds)
	tick := time.NewTicker(time.Second / pace)
	start := time.Now()
	for i := 0; i < pace*seconds; i++ {
		<-tick.C
		sentAt = append(sentAt, time.Now())
		go func() {
			resp, err := client.Get("http://" + in.Addr(8080) + chainPath)
			sent.Add(1)
			if err != nil {
				failed.Add(1)
				return
			}
			defer resp.Body.Close()
			var a demoapp.Answer
			if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || len(a.Calls) != 1 || a.Calls[0].Answer == nil || len(a.Calls[0].Answer.Calls) != 1 {
				failed.Add(1)
				return
			}
			switch a.Calls[0].Answer.Calls[0].Status {
			case http.StatusOK:
			case http.StatusServiceUnavailable:
				faults.Add(1)
			default:
				failed.Add(1)
			}
		}()
	}
	tick.Stop()
	loadTime := time.Since(start)
	waitFor(t, 15*time.Second, "load finished", func() (bool, string) {
		return sent.Load() == pace*seconds, fmt.Sprintf("%d sent", sent.Load())
	})
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed outside the injected fault", failed.Load(), sent.Load())
	}
	n := float64(sent.Load())
	share := float64(faults.Load()) / n
	t.Logf("sent %v requests in %s; payments answered %d with the injected 503 (%.1f%%)", n, loadTime.Round(time.Millisecond), faults.Load(), share*100)
	if share < 0.1 || share > 0.3 {
		t.Fatalf("injected fault share %.2f, configured 0.20", share)
	}

	edges := []struct {
		name   string
		sel    string
		errors float64 // expected error share
	}{
		{"outside -> frontend", `reporter="destination", source_service="outside", destination_service="frontend"`, 0},
		{"frontend -> orders", `reporter="source", source_service="frontend", destination_service="orders"`, 0},
		{"orders -> payments", `reporter="source", source_service="orders", destination_service="payments"`, share},
	}
	for _, e := range edges {
		q := fmt.Sprintf(`sum(%s{mesh="t", %s})`, monitoring.RequestsMetric, e.sel)
		waitFor(t, 30*time.Second, e.name+" requests in Prometheus", func() (bool, string) {
			v := p.sum(q)
			if v == n {
				return true, ""
			}
			all, _ := p.query(monitoring.RequestsMetric)
			resp, err := http.Get("http://" + in.StatsAddr + "/stats/prometheus")
			var body []byte
			if err == nil {
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			var weft []string
			for _, l := range strings.Split(string(body), "\n") {
				if strings.Contains(l, "weft") {
					weft = append(weft, l)
				}
			}
			return false, fmt.Sprintf("%v of %v; every series: %v; frontend's stats (%v): %s", v, n, all, err, strings.Join(weft, "\n"))
		})
		errs := p.sum(fmt.Sprintf(`sum(%s{mesh="t", %s, response_code_class="5xx"})`, monitoring.RequestsMetric, e.sel))
		if e.errors == 0 && errs != 0 {
			t.Errorf("%s: %v errors, want none", e.name, errs)
		}
		if e.errors > 0 && math.Abs(errs/n-e.errors) > 0.1*e.errors {
			t.Errorf("%s: error share %.3f in Prometheus, the generator saw %.3f", e.name, errs/n, e.errors)
		}
	}

	// The rate over the load's last 20 seconds, as the dashboards compute
	// it, is the generator's own rate over those seconds (its pace unless
	// the machine is too busy to keep it).
	end := start.Add(loadTime - 2*time.Second)
	sentIn := 0
	for _, at := range sentAt {
		if at.After(end.Add(-20*time.Second)) && !at.After(end) {
			sentIn++
		}
	}
	wantRate := float64(sentIn) / 20
	queries := map[string]string{}
	for _, e := range edges {
		queries[e.name] = fmt.Sprintf(`sum(rate(%s{mesh="t", %s}[20s]))`, monitoring.RequestsMetric, e.sel)
	}
	queries["orders -> payments (dashboard query)"] = monitoring.Edge(model, "orders", "payments").Rate("20s")
	for name, q := range queries {
		got := p.sumAt(q, end)
		if math.Abs(got-wantRate) > 0.1*wantRate {
			t.Errorf("%s: rate %.2f/s at the end of the load, the generator sent %.2f/s", name, got, wantRate)
		}
	}

	// The service map's readers agree with the generator: from
	// Prometheus at the end of the load, and straight from the proxies
	// since the baseline (Envoy flushes histograms every 5s: wait).
	time.Sleep(6 * time.Second)
	// Rates over the load's last 20 seconds; error shares over all of it.
	fromProm, err := (&signals.Prometheus{URL: "http://" + p.addr, Mesh: "t", Window: "20s", At: end}).Edges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	promShares, err := (&signals.Prometheus{URL: "http://" + p.addr, Mesh: "t", Window: "40s", At: start.Add(loadTime + 5*time.Second)}).Edges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// With Inbound, the destinations' records of mesh callers come too
	// (what the service map needs to see undeclared callers), and the
	// service map built from Prometheus' numbers shows orders -> payments
	// failing (20% aborted, payments' budget 1%) and no unwanted traffic.
	withInbound, err := (&signals.Prometheus{URL: "http://" + p.addr, Mesh: "t", Window: "40s", At: start.Add(loadTime + 5*time.Second), Inbound: true}).Edges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	inbound := map[string]float64{}
	for _, e := range withInbound {
		if e.Inbound() {
			inbound[e.SourcePrincipal+" -> "+e.Destination] += e.RequestsPerSecond
		}
	}
	if len(inbound) != 2 || inbound["spiffe://t.example/ns/t/sa/frontend -> orders"] == 0 || inbound["spiffe://t.example/ns/t/sa/orders -> payments"] == 0 {
		t.Errorf("inbound edges from Prometheus: %v, want frontend's at orders and orders' at payments", inbound)
	}
	sm := servicemap.Build(servicemap.Input{Model: model, Edges: withInbound, Signals: servicemap.SignalsInfo{Source: "prometheus", Window: "40s"}})
	for _, e := range sm.Edges {
		want := servicemap.HealthHealthy
		if e.ID == "orders->payments" {
			want = servicemap.HealthFailing
		}
		if e.Health != want {
			t.Errorf("service map from Prometheus: %s is %s (%s), want %s", e.ID, e.Health, e.Reason, want)
		}
	}
	if len(sm.Unwanted) != 0 {
		t.Errorf("service map from Prometheus: unwanted %+v", sm.Unwanted)
	}
	fromProxies, err := direct.Edges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edges from Prometheus (20s at the end of the load):\n%sfrom Prometheus (the whole load):\n%sfrom the proxies:\n%s",
		signals.String(fromProm), signals.String(promShares), signals.String(fromProxies))
	for _, reader := range []struct {
		name   string
		edges  []signals.Edge
		rps    float64 // expected requests per second on every edge (0: not checked)
		shares bool    // check error shares
	}{
		{"prometheus (20s)", fromProm, wantRate, false},
		{"prometheus (whole load)", promShares, 0, true},
		{"proxies", fromProxies, 0, true},
	} {
		perEdge := map[string]signals.Edge{}
		for _, e := range reader.edges {
			k := e.Source + "->" + e.Destination
			agg := perEdge[k]
			agg.RequestsPerSecond += e.RequestsPerSecond
			agg.ErrorPercent += e.ErrorPercent * e.RequestsPerSecond
			if e.P99 > agg.P99 {
				agg.P99 = e.P99
			}
			perEdge[k] = agg
		}
		for _, want := range []struct {
			edge  string
			share float64
		}{{"outside->frontend", 0}, {"frontend->orders", 0}, {"orders->payments", share}} {
			e, ok := perEdge[want.edge]
			if !ok {
				t.Errorf("%s: no edge %s in %v", reader.name, want.edge, perEdge)
				continue
			}
			errPct := e.ErrorPercent / e.RequestsPerSecond
			if reader.shares && math.Abs(errPct-100*want.share) > 10*want.share+0.01 {
				t.Errorf("%s: %s errors %.2f%%, the generator saw %.2f%%", reader.name, want.edge, errPct, 100*want.share)
			}
			if e.P99 <= 0 {
				t.Errorf("%s: %s has no p99", reader.name, want.edge)
			}
			if reader.rps > 0 && math.Abs(e.RequestsPerSecond-reader.rps) > 0.1*reader.rps {
				t.Errorf("%s: %s %.2f req/s, the generator sent %.2f/s", reader.name, want.edge, e.RequestsPerSecond, reader.rps)
			}
		}
	}

	// Each request is labelled with the version that served it: payments
	// v1 and v2 share the all-versions cluster's traffic.
	byVersion, err := p.query(fmt.Sprintf(`sum by (source_version, destination_version) (%s{mesh="t", reporter="source", source_service="orders", destination_service="payments", response_code_class="2xx"})`, monitoring.RequestsMetric))
	if err != nil {
		t.Fatal(err)
	}
	versions := map[string]float64{}
	for _, s := range byVersion {
		if s.Metric["source_version"] != "v1" {
			t.Errorf("orders -> payments series with source_version %q, want v1", s.Metric["source_version"])
		}
		versions[s.Metric["destination_version"]] += s.Value
	}
	if versions["v1"] == 0 || versions["v2"] == 0 || versions["v1"]+versions["v2"] != n-float64(faults.Load()) {
		t.Errorf("payments' answered requests by version %v, want v1 and v2 summing to %v", versions, n-float64(faults.Load()))
	}

	// Every query behind every panel of every dashboard returns data.
	for _, name := range model.ServiceNames() {
		for _, r := range monitoring.Rows(model, model.Services[name]) {
			for _, panel := range r.Panels {
				for _, q := range panel.Queries {
					expr := strings.ReplaceAll(q.Expr, monitoring.RateInterval, "1m")
					waitFor(t, 20*time.Second, fmt.Sprintf("%s / %s / %s", name, r.Title, panel.Title), func() (bool, string) {
						ss, err := p.query(expr)
						if err != nil {
							t.Fatal(err)
						}
						return len(ss) > 0, "no data for " + expr
					})
				}
			}
		}
	}

	// The control plane's metrics are scraped too.
	waitFor(t, 20*time.Second, "control-plane metrics", func() (bool, string) {
		inSync := p.sum(`sum(weft_xds_proxies{job="weft-control-plane", state="in_sync"})`)
		rev := p.sum(`count(weft_served_revision_info{job="weft-control-plane"})`)
		pushes := p.sum(`sum(weft_xds_pushes_total{job="weft-control-plane"})`)
		signed := p.sum(`sum(weft_ca_certificates_signed_total{job="weft-control-plane"})`)
		exp := p.sum(`max(weft_certificate_earliest_expiry_timestamp_seconds{job="weft-control-plane"})`)
		state := fmt.Sprintf("in_sync=%v revision series=%v pushes=%v signed=%v expiry=%v", inSync, rev, pushes, signed, exp)
		return inSync == 4 && rev == 1 && pushes > 0 && signed >= 4 && exp > float64(time.Now().Unix()), state
	})

	// The injected fault burns payments' error budget: the page alert
	// fires in Prometheus (the rules weft up wrote for the served
	// revision), and orders' does not.
	waitFor(t, 60*time.Second, "payments' SLO page", func() (bool, string) {
		alerts := p.alerts()
		return alerts["payments/page/availability"] == "firing" && alerts["orders/page/availability"] == "", fmt.Sprint(alerts)
	})
}

// sumAt is sum() of an instant query evaluated at a past time.
func (p *prom) sumAt(q string, at time.Time) float64 {
	p.t.Helper()
	u := fmt.Sprintf("http://%s/api/v1/query?query=%s&time=%d.%03d", p.addr, url.QueryEscape(q), at.Unix(), at.Nanosecond()/1e6)
	resp, err := http.Get(u)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		p.t.Fatalf("%s: %v", b, err)
	}
	var v float64
	for _, s := range r.Data.Result {
		f, _ := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		v += f
	}
	return v
}

// alerts are the active alerts: "<service>/<severity>/<slo>" -> state.
func (p *prom) alerts() map[string]string {
	p.t.Helper()
	resp, err := http.Get("http://" + p.addr + "/api/v1/alerts")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		p.t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range r.Data.Alerts {
		if a.Labels["alertname"] == monitoring.AlertName {
			out[a.Labels["service"]+"/"+a.Labels["severity"]+"/"+a.Labels["slo"]] = a.State
		}
	}
	return out
}
