package compiler

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"github.com/weft-dev/weft/schema/mesh"
)

// TestEnvoyStatsEndpoint runs two real Envoys (frontend -> reviews) from
// their compiled bootstraps and reads frontend's stats listener as
// Prometheus does: the per-request stats carry the edge's labels (an
// injected abort counts on the edge, with its code), Envoy's cluster stats
// carry the proxy's fixed tags and the destination parsed from the
// cluster's stat name, and nothing of the admin but GET /stats/prometheus
// is reachable.
func TestEnvoyStatsEndpoint(t *testing.T) {
	h := newHarness(t)
	appPort := h.app(t)
	rv := svc("reviews", appPort)
	rv.MTLS = mesh.MTLSDisable
	rv.Routes = []mesh.Route{{Name: "broken", Match: prefix("/broken"), Fault: &mesh.Fault{Abort: &mesh.FaultAbort{Percent: 100, Status: 503}}}}
	fe := calls(svc("frontend", 8080), "reviews")
	fe.MTLS = mesh.MTLSDisable
	m := newModel(fe, rv)
	rvProxy := h.proxy(t, m, "reviews-v1")
	m.Services["reviews"].Versions["v1"].Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", rvProxy.inbound)}
	feProxy := h.proxy(t, m, "frontend-v1")
	host := fmt.Sprintf("reviews:%d", appPort)
	for i := 0; i < 3; i++ {
		if code, _, body := feProxy.get(t, host, "/hello"); code != 200 {
			t.Fatalf("GET /hello: %d %q", code, body)
		}
	}
	for i := 0; i < 2; i++ {
		if code, _, _ := feProxy.get(t, host, "/broken"); code != 503 {
			t.Fatalf("GET /broken: %d, want the injected 503", code)
		}
	}

	stats := fmt.Sprintf("http://127.0.0.1:%d", feProxy.stats)
	resp, err := http.Get(stats + StatsPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", StatsPath, resp.Status)
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("Prometheus cannot parse the stats: %v", err)
	}
	find := func(name string, want map[string]string) float64 {
		t.Helper()
		var total float64
		found := false
	metrics:
		for _, m := range fams[name].GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			for k, v := range want {
				if l[k] != v {
					continue metrics
				}
			}
			found = true
			total += m.GetCounter().GetValue()
		}
		if !found {
			t.Errorf("no %s%v in the stats", name, want)
		}
		return total
	}
	edge := map[string]string{
		"reporter": "source", "mesh": "shop", "namespace": "shop",
		"source_service": "frontend", "source_version": "v1", "source_principal": "spiffe://shop.example/ns/shop/sa/frontend",
		"destination_service": "reviews", "destination_port": fmt.Sprint(appPort),
	}
	ok := map[string]string{"response_code": "200", "response_code_class": "2xx", "destination_version": "v1"}
	aborted := map[string]string{"response_code": "503", "response_code_class": "5xx"}
	for k, v := range edge {
		ok[k], aborted[k] = v, v
	}
	if n := find("envoy_weft_requests_total", ok); n != 3 {
		t.Errorf("%v answered requests on the edge, want 3", n)
	}
	if n := find("envoy_weft_requests_total", aborted); n != 2 {
		t.Errorf("%v injected aborts on the edge, want 2", n)
	}
	// What reached the wire, in Envoy's own cluster stats, with the
	// destination from the all-versions cluster's stat name.
	if n := find("envoy_cluster_upstream_rq_xx", map[string]string{
		"mesh": "shop", "source_service": "frontend", "source_version": "v1",
		"destination_service": "reviews", "destination_port": fmt.Sprint(appPort),
		"envoy_cluster_name": fmt.Sprintf("outbound_%d__reviews_shop", appPort), "envoy_response_code_class": "2",
	}); n != 3 {
		t.Errorf("%v requests reached reviews, want 3", n)
	}

	for _, r := range []struct{ method, path string }{
		{"GET", "/stats"}, {"GET", "/config_dump"}, {"POST", "/quitquitquit"}, {"POST", StatsPath}, {"GET", "/"},
	} {
		req, _ := http.NewRequest(r.method, stats+r.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s on the stats listener: %s, want 404", r.method, r.path, resp.Status)
		}
	}
}
