package signals

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/weft-dev/weft/compiler/monitoring"
)

// Proxies reads edges straight from the proxies' stats endpoints, without
// a Prometheus: every call scrapes every target and returns, per edge,
// what changed since an earlier call — the previous one, or with Window
// the newest call at least Window old (the oldest one kept, until calls
// span Window) — so that rates cover about Window whatever the callers'
// pace. The first call only records a baseline and returns no edges. It
// is safe for concurrent use.
type Proxies struct {
	// Targets returns the stats endpoints ("IP:port") to scrape.
	Targets func() []string
	// Client is the HTTP client (default: one with a 5s timeout).
	Client *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Window, when set, is the span the signals are computed over
	// (0: since the previous call).
	Window time.Duration
	// Inbound adds the inbound edges (Edge.SourcePrincipal).
	Inbound bool

	mu   sync.Mutex
	hist []scrapeSample // oldest first
}

// scrapeSample is the cumulative counts of every edge at one call.
type scrapeSample struct {
	at     time.Time
	counts map[string]counts
}

// counts are the cumulative counters of one edge.
type counts struct {
	requests, errors float64
	buckets          map[float64]float64 // upper bound (ms) -> cumulative count
}

// Edges scrapes and returns the edges' signals since the baseline (see
// Proxies).
func (p *Proxies) Edges(ctx context.Context) ([]Edge, error) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	cur := map[string]counts{}
	edges := map[string]Edge{}
	for _, t := range p.Targets() {
		fams, err := p.scrape(ctx, t)
		if err != nil {
			return nil, err
		}
		add(cur, edges, fams, p.Inbound)
	}
	at := now()
	base, ok := p.record(scrapeSample{at: at, counts: cur})
	if !ok {
		return nil, nil
	}
	secs := at.Sub(base.at).Seconds()
	if secs <= 0 {
		return nil, nil
	}
	out := make([]Edge, 0, len(cur))
	for key, c := range cur {
		e := edges[key]
		old := base.counts[key] // zero for a new edge (its counters start at 0)
		req := c.requests - old.requests
		if req < 0 { // a proxy restarted: its counters started over
			req, old = c.requests, counts{}
		}
		if req == 0 {
			continue
		}
		e.RequestsPerSecond = req / secs
		e.ErrorPercent = 100 * (c.errors - old.errors) / req
		e.P99 = quantile(0.99, c.buckets, old.buckets)
		out = append(out, e)
	}
	sortEdges(out)
	return out, nil
}

// record appends a sample and returns the baseline to compare it with
// (false for the first sample), dropping the samples no later call needs.
func (p *Proxies) record(s scrapeSample) (scrapeSample, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.hist) == 0 {
		p.hist = []scrapeSample{s}
		return scrapeSample{}, false
	}
	base := p.hist[len(p.hist)-1]
	if p.Window > 0 {
		base = p.hist[0]
		for _, h := range p.hist {
			if s.at.Sub(h.at) >= p.Window {
				base = h
			}
		}
	}
	p.hist = append(p.hist, s)
	// Keep the newest sample at least Window older than s (the next
	// call's baseline or older) and everything after it.
	keep := len(p.hist) - 1
	if p.Window > 0 {
		for i, h := range p.hist {
			if s.at.Sub(h.at) >= p.Window {
				keep = i
			}
		}
		if s.at.Sub(p.hist[0].at) < p.Window {
			keep = 0
		}
	}
	p.hist = append([]scrapeSample(nil), p.hist[keep:]...)
	return base, true
}

func (p *Proxies) scrape(ctx context.Context, target string) (map[string]*dto.MetricFamily, error) {
	c := p.Client
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+target+"/stats/prometheus", nil)
	if err != nil {
		return nil, errorf("%w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, errorf("scrape %s: %w", target, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errorf("scrape %s: %s", target, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, errorf("scrape %s: %w", target, err)
	}
	return fams, nil
}

// add sums the per-request stats of one proxy into the edges' counts.
func add(cur map[string]counts, edges map[string]Edge, fams map[string]*dto.MetricFamily, inbound bool) {
	errCodes := map[string]bool{}
	for _, c := range monitoring.GRPCServerErrors {
		errCodes[c] = true
	}
	get := func(labels map[string]string) (string, counts) {
		e := edgeOf(labels)
		edges[e.Key()] = e
		c := cur[e.Key()]
		if c.buckets == nil {
			c.buckets = map[float64]float64{}
		}
		return e.Key(), c
	}
	if f := fams[monitoring.RequestsMetric]; f != nil {
		for _, m := range f.GetMetric() {
			l := labelMap(m)
			if !onEdge(l, inbound) {
				continue
			}
			key, c := get(l)
			v := m.GetCounter().GetValue()
			if m.GetCounter() == nil {
				v = m.GetUntyped().GetValue()
			}
			c.requests += v
			if l["response_code_class"] == "5xx" || errCodes[l["grpc_status"]] {
				c.errors += v
			}
			cur[key] = c
		}
	}
	if f := fams[monitoring.DurationMetric]; f != nil {
		for _, m := range f.GetMetric() {
			l := labelMap(m)
			if !onEdge(l, inbound) {
				continue
			}
			key, c := get(l)
			inf := false
			for _, b := range m.GetHistogram().GetBucket() {
				c.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				inf = inf || math.IsInf(b.GetUpperBound(), 1)
			}
			if !inf {
				c.buckets[math.Inf(1)] += float64(m.GetHistogram().GetSampleCount())
			}
			cur[key] = c
		}
	}
}

func labelMap(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// quantile is the q quantile of the observations between two cumulative
// histograms, interpolated linearly within its bucket (as PromQL's
// histogram_quantile does); 0 without observations.
func quantile(q float64, cur, old map[float64]float64) time.Duration {
	bounds := make([]float64, 0, len(cur))
	for b := range cur {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return 0
	}
	total := cur[bounds[len(bounds)-1]] - old[bounds[len(bounds)-1]]
	if total <= 0 {
		return 0
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, b := range bounds {
		n := cur[b] - old[b]
		if n >= rank {
			if math.IsInf(b, 1) {
				return ms(prevBound) // past the last finite bucket
			}
			if n == prevCount {
				return ms(b)
			}
			return ms(prevBound + (b-prevBound)*(rank-prevCount)/(n-prevCount))
		}
		prevBound, prevCount = b, n
	}
	return ms(prevBound)
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// String lists edges one per line (for logs and tests).
func String(es []Edge) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%s  %.2f req/s  %.1f%% errors  p99 %s\n", e.Key(), e.RequestsPerSecond, e.ErrorPercent, e.P99)
	}
	return b.String()
}
