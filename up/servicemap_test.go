package up_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/weft-dev/weft/internal/tooltest"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/servicemap"
)

var mapScreenshot = flag.String("map-screenshot", "", "TestServiceMapPage also writes its screenshot of the page here (e.g. ../docs/service-map.png)")

// mapMesh is a small shop: frontend (edge) calls catalog, orders and
// reviews (split 80/20 over two versions); orders calls payments, whose
// SLO is 99% available. faultMesh is the same with half of payments'
// requests aborted with a 503 by its callers' proxies.
const mapMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["catalog", "orders", "reviews"]
		}
		catalog: {
			ports: http: port: 8081
			versions: v1: labels: version: "v1"
		}
		orders: {
			ports: http: port: 8083
			versions: v1: labels: version: "v1"
			calls: ["payments"]
		}
		payments: {
			ports: http: port: 8084
			versions: v1: labels: version: "v1"
			slo: availability: 99
			routes: charge: {
				match: path: prefix: "/"
				FAULT
			}
		}
		reviews: {
			ports: http: port: 9080
			versions: {
				v1: labels: version: "v1"
				v2: labels: version: "v2"
			}
			routes: split: {
				match: path: prefix: "/"
				to: {v1: 80, v2: 20}
			}
		}
`

var (
	healthyMesh = strings.Replace(mapMesh, "FAULT", "", 1)
	faultMesh   = strings.Replace(mapMesh, "FAULT", "fault: abort: {percent: 50, status: 503}", 1)
)

// mapState is what the page shows, read from its DOM.
type mapState struct {
	Revision string             `json:"revision"`
	Nodes    []string           `json:"nodes"`
	Edges    map[string]domEdge `json:"edges"`
	Unwanted []domRow           `json:"unwanted"`
	Details  string             `json:"details"`
}

type domEdge struct {
	Health string `json:"health"`
	Class  string `json:"class"`
	Label  string `json:"label"`
	Aria   string `json:"aria"`
}

type domRow struct {
	Kind string `json:"kind"`
	From string `json:"from"`
	To   string `json:"to"`
	Text string `json:"text"`
}

// readMapJS reads mapState from the page.
const readMapJS = `(() => {
  const out = {revision: document.getElementById("revision").textContent, nodes: [], edges: {}, unwanted: [],
    details: document.getElementById("details").innerText};
  for (const n of document.querySelectorAll("#map g.node")) out.nodes.push(n.dataset.id);
  for (const e of document.querySelectorAll("#map g.edge")) {
    const label = document.querySelector('#map g.edge-label[data-for="' + CSS.escape(e.id) + '"]');
    out.edges[e.id] = {health: e.dataset.health, class: e.getAttribute("class"), label: label ? label.textContent : "", aria: e.getAttribute("aria-label")};
  }
  for (const r of document.querySelectorAll("#unwanted tbody tr[data-kind]")) {
    out.unwanted.push({kind: r.dataset.kind, from: r.dataset.from, to: r.dataset.to, text: r.innerText});
  }
  return out;
})()`

// TestServiceMapPage runs a mesh with traffic under weft up and drives
// the service map in headless Chromium: the page shows every service and
// every declared edge with its live traffic; an abort fault of 50% on
// orders -> payments, written into the definition, turns that edge red
// within 30 s with its error percentage in its label; a host that is not
// in frontend's calls and catalog's certificate used directly on
// payments' inbound (RBAC answers 403) show as unwanted connections;
// selecting a service with the mouse or the keyboard shows its versions,
// routes and split weights, authz and the served revision.
func TestServiceMapPage(t *testing.T) {
	chromium := tooltest.Chromium(t)
	dir := t.TempDir()
	writeMesh(t, dir, healthyMesh)
	tm := startMesh(t, dir, nil)
	if !strings.Contains(tm.out.String(), "weft up: service map at "+tm.ServiceMapURL()) {
		t.Errorf("weft up did not print the service map's URL:\n%s", tm.out)
	}

	// Traffic until the test ends: the shop's pages from outside (10/s),
	// frontend's app calling a host it does not declare, and catalog's
	// certificate on payments' inbound address (2/s each).
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	fe, pay := tm.instance("frontend-v1"), tm.instance("payments-v1")
	client := &http.Client{Timeout: 10 * time.Second}
	var pages, undeclared, denied, deniedOther atomic.Int64
	loop := func(every time.Duration, f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					f()
				}
			}
		}()
	}
	page := "http://" + fe.Addr(8080) + "/?call=catalog&call=" + "orders%2F%3Fcall%3Dpayments" + "&call=reviews"
	loop(100*time.Millisecond, func() {
		if resp, err := client.Get(page); err == nil {
			resp.Body.Close()
			pages.Add(1)
		}
	})
	loop(500*time.Millisecond, func() {
		if resp, err := client.Get("http://" + fe.Addr(8080) + "/?call=inventory"); err == nil {
			resp.Body.Close()
			undeclared.Add(1)
		}
	})
	cert, err := tm.CA().ServingCertificate(cav1.Identity{TrustDomain: "t.example", Namespace: "t", ServiceAccount: "catalog"}, nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	direct := rawTarget{addr: pay.Addr(8084), host: "payments", tls: meshClientTLS(cert, tm.CA().TrustPool())}
	loop(500*time.Millisecond, func() {
		resp, _, err := direct.send("/")
		switch {
		case err != nil:
		case resp.StatusCode == http.StatusForbidden:
			denied.Add(1)
		default:
			deniedOther.Add(1)
		}
	})

	// Chromium, as the brief of the machines says it works here.
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1440, 900),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 4*time.Minute)
	defer cancelTimeout()
	started := time.Now()
	if err := chromedp.Do(bctx, chromedp.Navigate(tm.ServiceMapURL()), chromedp.WaitVisible(chromedp.CSS("#map g.node"))); err != nil {
		t.Fatalf("open %s: %v", tm.ServiceMapURL(), err)
	}
	read := func() mapState {
		t.Helper()
		st, err := chromedp.Run(bctx, chromedp.Evaluate[mapState](readMapJS))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		return st
	}
	var st mapState
	waitPage := func(timeout time.Duration, what string, cond func(mapState) (bool, string)) time.Duration {
		t.Helper()
		from := time.Now()
		waitFor(t, timeout, what, func() (bool, string) {
			st = read()
			return cond(st)
		})
		return time.Since(from)
	}

	// Every service and every declared edge, each with traffic.
	services := []string{"outside", "catalog", "frontend", "orders", "payments", "reviews"}
	declared := []string{"outside->frontend", "frontend->catalog", "frontend->orders", "frontend->reviews", "orders->payments"}
	waitPage(60*time.Second, "every service and declared edge with traffic", func(st mapState) (bool, string) {
		if strings.Join(st.Nodes, " ") != strings.Join(services, " ") {
			return false, fmt.Sprintf("nodes %v", st.Nodes)
		}
		for _, id := range declared {
			e, ok := st.Edges["edge-"+id]
			if !ok || e.Health != servicemap.HealthHealthy || !strings.Contains(e.Label, "req/s") || !strings.Contains(e.Label, "0.0% errors") {
				return false, fmt.Sprintf("edge %s: %+v", id, e)
			}
		}
		return true, ""
	})
	t.Logf("page shows every edge healthy with traffic %s after opening it", time.Since(started).Round(time.Second))
	if !strings.HasPrefix(st.Revision, "Served revision ") {
		t.Errorf("revision line %q", st.Revision)
	}

	// The unwanted connections, apart: in the table, and catalog ->
	// payments drawn as such.
	waitPage(30*time.Second, "unwanted connections", func(st mapState) (bool, string) {
		var noRoute, caller bool
		for _, u := range st.Unwanted {
			noRoute = noRoute || u.Kind == servicemap.UnwantedNoRoute && u.From == "frontend" && strings.Contains(u.Text, "not in its calls")
			caller = caller || u.Kind == servicemap.UnwantedUndeclaredCaller && u.From == "catalog" && u.To == "payments" &&
				strings.Contains(u.Text, "catalog does not call payments")
		}
		e := st.Edges["unwanted-undeclared-caller:catalog->payments"]
		drawn := strings.Contains(e.Class, "unwanted") && strings.Contains(e.Label, "unwanted: undeclared-caller")
		return noRoute && caller && drawn, fmt.Sprintf("rows %+v, drawn %+v", st.Unwanted, e)
	})
	if denied.Load() == 0 || deniedOther.Load() != 0 {
		t.Errorf("catalog's direct calls to payments: %d answered 403, %d otherwise; want only 403s", denied.Load(), deniedOther.Load())
	}

	// Half of orders -> payments aborted: red within 30 s of the edit.
	edited := time.Now()
	writeMesh(t, dir, faultMesh)
	errPct := regexp.MustCompile(`([0-9.]+)% errors`)
	shown := func(e domEdge) float64 {
		m := errPct.FindStringSubmatch(e.Label)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	took := waitPage(30*time.Second, "orders -> payments red", func(st mapState) (bool, string) {
		e := st.Edges["edge-orders->payments"]
		return e.Health == servicemap.HealthFailing && strings.Contains(e.Class, "health-failing") && shown(e) > 1 &&
			strings.Contains(e.Aria, "failing"), fmt.Sprintf("%+v", e)
	})
	t.Logf("orders -> payments turned red %s after the edit (%s of waiting on the page): %q", time.Since(edited).Round(100*time.Millisecond),
		took.Round(100*time.Millisecond), st.Edges["edge-orders->payments"].Label)
	// Once the window holds only faulted traffic, the label shows about
	// half; the other edges stay healthy.
	waitPage(60*time.Second, "orders -> payments at about 50% errors", func(st mapState) (bool, string) {
		e := st.Edges["edge-orders->payments"]
		return shown(e) >= 35 && shown(e) <= 65 && e.Health == servicemap.HealthFailing, fmt.Sprintf("%+v", e)
	})
	for _, id := range []string{"frontend->catalog", "frontend->reviews"} {
		if e := st.Edges["edge-"+id]; e.Health != servicemap.HealthHealthy {
			t.Errorf("%s: %+v, want healthy", id, e)
		}
	}
	// The page and the JSON API agree.
	resp, err := http.Get("http://" + tm.StatusAddr() + servicemap.APIPath)
	if err != nil {
		t.Fatal(err)
	}
	var g servicemap.Graph
	err = json.NewDecoder(resp.Body).Decode(&g)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range g.Edges {
		if e.ID == "orders->payments" && (e.Health != servicemap.HealthFailing || e.ErrorThreshold != 1 || e.ThresholdFrom != "slo") {
			t.Errorf("API: %+v", e)
		}
	}

	// Selecting reviews by clicking shows its split; selecting payments
	// from the keyboard shows its fault and the served revision.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#map g.node[data-id="reviews"]`))); err != nil {
		t.Fatal(err)
	}
	waitPage(10*time.Second, "reviews' details", func(st mapState) (bool, string) {
		return strings.Contains(st.Details, "reviews") && strings.Contains(st.Details, "v1 80% · v2 20%") && strings.Contains(st.Details, "version=v2"), st.Details
	})
	if err := chromedp.Do(bctx, chromedp.Focus(chromedp.CSS(`#map g.node[data-id="payments"]`)), chromedp.KeyEvent(kb.Enter)); err != nil {
		t.Fatal(err)
	}
	waitPage(10*time.Second, "payments' details", func(st mapState) (bool, string) {
		return strings.Contains(st.Details, "abort 50% with 503") && strings.Contains(st.Details, "Served revision") &&
			strings.Contains(st.Details, "allows the services that call it"), st.Details
	})

	// The screenshot: payments selected, the fault red.
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "service-map.png")
	if *mapScreenshot != "" {
		shot = *mapScreenshot
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot (%d bytes): %s; %d pages, %d undeclared calls, %d direct calls denied; Chromium part %s",
		len(png), shot, pages.Load(), undeclared.Load(), denied.Load(), time.Since(started).Round(time.Second))
}
