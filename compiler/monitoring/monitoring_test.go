package monitoring

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/schema/mesh"
)

var update = flag.Bool("update", false, "rewrite testdata/ from the current output")

// shop is frontend (edge) -> orders -> payments; orders has an SLO.
func shop() *mesh.Model {
	svc := func(name string, calls ...string) *mesh.Service {
		return &mesh.Service{Name: name, Namespace: "shop", Calls: calls,
			Versions: map[string]*mesh.Version{"v1": {Name: "v1"}}}
	}
	orders := svc("orders", "payments")
	orders.SLO = &mesh.SLO{Availability: 99.9, Latency: &mesh.LatencySLO{P99: &mesh.Duration{Duration: 300 * time.Millisecond}}}
	fe := svc("frontend", "orders")
	fe.Edge = true
	fe.SLO = &mesh.SLO{Availability: 99.5}
	return &mesh.Model{Name: "shop", Services: map[string]*mesh.Service{
		"frontend": fe, "orders": orders, "payments": svc("payments"),
	}}
}

// TestGolden: the dashboards and rules of the shop, byte for byte (run
// with -update after an intended change and review the diff).
func TestGolden(t *testing.T) {
	files, err := Files(shop())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"dashboards/frontend.json", "dashboards/orders.json", "dashboards/payments.json", "rules/frontend.yaml", "rules/orders.yaml"}
	if len(files) != len(want) {
		t.Errorf("got %d files, want %v", len(files), want)
	}
	for _, name := range want {
		got, ok := files[name]
		if !ok {
			t.Errorf("no %s", name)
			continue
		}
		p := filepath.Join("testdata", name)
		if *update {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (run go test ./compiler/monitoring -update)", err)
		}
		if !bytes.Equal(b, got) {
			t.Errorf("%s differs from the golden file (run -update and review the diff)", name)
		}
	}
}

// TestDeterministic: the same model gives the same bytes.
func TestDeterministic(t *testing.T) {
	a, err := Files(shop())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		b, err := Files(shop())
		if err != nil {
			t.Fatal(err)
		}
		for name := range a {
			if !bytes.Equal(a[name], b[name]) {
				t.Fatalf("%s differs between two runs", name)
			}
		}
	}
}

// TestDashboardPanels: a service's dashboard has its inbound row, its
// callers' row and a row per dependency, each with the four signals.
func TestDashboardPanels(t *testing.T) {
	m := shop()
	rows := Rows(m, m.Services["orders"])
	var titles []string
	for _, r := range rows {
		titles = append(titles, r.Title)
		if len(r.Panels) != 4 {
			t.Errorf("row %q has %d panels, want 4", r.Title, len(r.Panels))
		}
	}
	want := []string{
		"orders: inbound (all callers, as its proxies saw them)",
		"callers -> orders (as each caller's proxy saw them)",
		"orders -> payments",
	}
	if strings.Join(titles, "|") != strings.Join(want, "|") {
		t.Errorf("rows %q, want %q", titles, want)
	}
	d, err := Dashboard(m, m.Services["orders"])
	if err != nil {
		t.Fatal(err)
	}
	if got := len(d.Panels); got != 3+12 {
		t.Errorf("dashboard has %d panels and rows, want 15", got)
	}
}

// writeRules writes the rule files of m into dir and returns their paths.
func writeRules(t *testing.T, m *mesh.Model, dir string) []string {
	t.Helper()
	files, err := Files(m)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for name, b := range files {
		if !strings.HasPrefix(name, "rules/") {
			continue
		}
		p := filepath.Join(dir, filepath.Base(name))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// TestPromtoolCheckRules: promtool accepts every generated rule file.
func TestPromtoolCheckRules(t *testing.T) {
	promtool := tooltest.Promtool(t)
	paths := writeRules(t, shop(), t.TempDir())
	out, err := exec.Command(promtool, append([]string{"check", "rules"}, paths...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if got := strings.Count(string(out), "SUCCESS"); got != len(paths) {
		t.Errorf("promtool reported %d SUCCESS for %d files:\n%s", got, len(paths), out)
	}
}

// burnTest is a promtool unit test of the SLO alerts of orders
// (availability 99.9%: budget 0.1%; p99 within 300ms: budget 1%) fed
// with synthetic series: frontend calls orders 600 times a minute.
const burnTest = `rule_files: [%RULES%]
evaluation_interval: 1m
tests:
  # 2% errors: 20x the budget: both page windows (1h and 5m over 14.4x)
  # agree; the ticket windows (1d/2h over 3x) too.
  - interval: 1m
    input_series:
      - series: 'envoy_weft_requests_total{mesh="shop", reporter="source", source_service="frontend", destination_service="orders", response_code="200", response_code_class="2xx"}'
        values: '0+588x180'
      - series: 'envoy_weft_requests_total{mesh="shop", reporter="source", source_service="frontend", destination_service="orders", response_code="503", response_code_class="5xx"}'
        values: '0+12x180'
    alert_rule_test:
      - eval_time: 70m
        alertname: WeftErrorBudgetBurn
        exp_alerts:
          - exp_labels: {severity: page, slo: availability, service: orders, mesh: shop, destination_service: orders}
            exp_annotations:
              summary: "orders is burning its availability error budget (99.9% of requests answered without a server error)"
              description: "The share of bad requests to orders over the alert's windows is above 14.4 (over 1h and 5m) or 6 (over 6h and 30m) times the budget of 0.001 (99.9% of requests answered without a server error)."
          - exp_labels: {severity: ticket, slo: availability, service: orders, mesh: shop, destination_service: orders}
            exp_annotations:
              summary: "orders is burning its availability error budget (99.9% of requests answered without a server error)"
              description: "The share of bad requests to orders over the alert's windows is above 3 (over 1d and 2h) or 1 (over 3d and 6h) times the budget of 0.001 (99.9% of requests answered without a server error)."
  # 0.05% errors: half the budget, no alert.
  - interval: 1m
    input_series:
      - series: 'envoy_weft_requests_total{mesh="shop", reporter="source", source_service="frontend", destination_service="orders", response_code="200", response_code_class="2xx"}'
        values: '0+1999x180'
      - series: 'envoy_weft_requests_total{mesh="shop", reporter="source", source_service="frontend", destination_service="orders", response_code="503", response_code_class="5xx"}'
        values: '0+1x180'
    alert_rule_test:
      - eval_time: 150m
        alertname: WeftErrorBudgetBurn
        exp_alerts: []
  # 0.5% errors (5x): a ticket, never a page.
  - interval: 1m
    input_series:
      - series: 'envoy_weft_requests_total{mesh="shop", reporter="source", source_service="frontend", destination_service="orders", response_code="200", response_code_class="2xx"}'
        values: '0+597x180'
      - series: 'envoy_weft_requests_total{mesh="shop", reporter="source", source_service="frontend", destination_service="orders", response_code="200", response_code_class="2xx", grpc_status="14"}'
        values: '0+3x180'
    alert_rule_test:
      - eval_time: 150m
        alertname: WeftErrorBudgetBurn
        exp_alerts:
          - exp_labels: {severity: ticket, slo: availability, service: orders, mesh: shop, destination_service: orders}
            exp_annotations:
              summary: "orders is burning its availability error budget (99.9% of requests answered without a server error)"
              description: "The share of bad requests to orders over the alert's windows is above 3 (over 1d and 2h) or 1 (over 3d and 6h) times the budget of 0.001 (99.9% of requests answered without a server error)."
  # Outside traffic counts at orders' own proxies; a burst that ended
  # stops paging once the short windows (5m, 30m) are past it, and
  # leaves a ticket: errors only in the first 10 minutes.
  - interval: 1m
    input_series:
      - series: 'envoy_weft_requests_total{mesh="shop", reporter="destination", source_service="outside", destination_service="orders", response_code="200", response_code_class="2xx"}'
        values: '0+500x120'
      - series: 'envoy_weft_requests_total{mesh="shop", reporter="destination", source_service="outside", destination_service="orders", response_code="500", response_code_class="5xx"}'
        values: '0+100x10 1000+0x110'
      # Mesh callers' requests as orders' proxies saw them are not counted
      # twice: these would halve the error share.
      - series: 'envoy_weft_requests_total{mesh="shop", reporter="destination", source_principal="spiffe://shop/ns/shop/sa/frontend", destination_service="orders", response_code="200", response_code_class="2xx"}'
        values: '0+600x120'
    alert_rule_test:
      - eval_time: 8m
        alertname: WeftErrorBudgetBurn
        exp_alerts:
          - exp_labels: {severity: page, slo: availability, service: orders, mesh: shop, destination_service: orders}
            exp_annotations:
              summary: "orders is burning its availability error budget (99.9% of requests answered without a server error)"
              description: "The share of bad requests to orders over the alert's windows is above 14.4 (over 1h and 5m) or 6 (over 6h and 30m) times the budget of 0.001 (99.9% of requests answered without a server error)."
          - exp_labels: {severity: ticket, slo: availability, service: orders, mesh: shop, destination_service: orders}
            exp_annotations:
              summary: "orders is burning its availability error budget (99.9% of requests answered without a server error)"
              description: "The share of bad requests to orders over the alert's windows is above 3 (over 1d and 2h) or 1 (over 3d and 6h) times the budget of 0.001 (99.9% of requests answered without a server error)."
      - eval_time: 45m
        alertname: WeftErrorBudgetBurn
        exp_alerts:
          - exp_labels: {severity: ticket, slo: availability, service: orders, mesh: shop, destination_service: orders}
            exp_annotations:
              summary: "orders is burning its availability error budget (99.9% of requests answered without a server error)"
              description: "The share of bad requests to orders over the alert's windows is above 3 (over 1d and 2h) or 1 (over 3d and 6h) times the budget of 0.001 (99.9% of requests answered without a server error)."
  # Latency: 20% of the requests take more than 300ms (budget 1%).
  - interval: 1m
    input_series:
      - series: 'envoy_weft_request_duration_milliseconds_bucket{mesh="shop", reporter="source", source_service="frontend", destination_service="orders", response_code_class="2xx", le="300"}'
        values: '0+480x90'
      - series: 'envoy_weft_request_duration_milliseconds_count{mesh="shop", reporter="source", source_service="frontend", destination_service="orders", response_code_class="2xx"}'
        values: '0+600x90'
      - series: 'envoy_weft_requests_total{mesh="shop", reporter="source", source_service="frontend", destination_service="orders", response_code="200", response_code_class="2xx"}'
        values: '0+600x90'
    alert_rule_test:
      - eval_time: 65m
        alertname: WeftErrorBudgetBurn
        exp_alerts:
          - exp_labels: {severity: page, slo: latency-p99, service: orders, mesh: shop, destination_service: orders}
            exp_annotations:
              summary: "orders is burning its latency-p99 error budget (99% of requests answered within 300ms)"
              description: "The share of bad requests to orders over the alert's windows is above 14.4 (over 1h and 5m) or 6 (over 6h and 30m) times the budget of 0.01 (99% of requests answered within 300ms)."
          - exp_labels: {severity: ticket, slo: latency-p99, service: orders, mesh: shop, destination_service: orders}
            exp_annotations:
              summary: "orders is burning its latency-p99 error budget (99% of requests answered within 300ms)"
              description: "The share of bad requests to orders over the alert's windows is above 3 (over 1d and 2h) or 1 (over 3d and 6h) times the budget of 0.01 (99% of requests answered within 300ms)."
`

// TestPromtoolBurnRateAlerts runs promtool test rules on synthetic
// series: fast burns page, slow burns open a ticket, a finished burst
// stops paging, and outside traffic counts where it enters.
func TestPromtoolBurnRateAlerts(t *testing.T) {
	promtool := tooltest.Promtool(t)
	dir := t.TempDir()
	m := shop()
	delete(m.Services, "frontend") // one rule file: orders'
	paths := writeRules(t, m, dir)
	if len(paths) != 1 {
		t.Fatalf("rule files %v, want orders'", paths)
	}
	test := filepath.Join(dir, "orders_test.yaml")
	if err := os.WriteFile(test, []byte(strings.ReplaceAll(burnTest, "%RULES%", filepath.Base(paths[0]))), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "test", "rules", test)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "SUCCESS") {
		t.Errorf("promtool test rules did not report SUCCESS:\n%s", out)
	}
}
