package signals

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/compiler/monitoring"
)

// Prometheus reads edges from a Prometheus server's HTTP API
// (GET /api/v1/query).
type Prometheus struct {
	// URL is the server's base URL ("http://127.0.0.1:9090").
	URL string
	// Mesh is the mesh's name (the mesh label).
	Mesh string
	// Window is the range of the rates (default 1m).
	Window string
	// At evaluates the queries at a past time (zero: now).
	At time.Time
	// Client is the HTTP client (default http.DefaultClient).
	Client *http.Client
	// Inbound adds the inbound edges (Edge.SourcePrincipal).
	Inbound bool
}

// Edges runs three queries — rate, error ratio and p99 by edge — and
// joins them (three more for the inbound edges when Inbound is set).
func (p *Prometheus) Edges(ctx context.Context) ([]Edge, error) {
	w := p.Window
	if w == "" {
		w = "1m"
	}
	byKey := map[string]*Edge{}
	if err := p.collect(ctx, byKey, monitoring.MeshEdges(p.Mesh), w, edgeLabels); err != nil {
		return nil, err
	}
	if p.Inbound {
		fl := monitoring.Flow{monitoring.Selector{fmt.Sprintf("%s=%q", compiler.LabelMesh, p.Mesh)}.
			Eq(compiler.LabelReporter, compiler.ReporterDestination).Eq(compiler.LabelSourceService, "")}
		if err := p.collect(ctx, byKey, fl, w, inboundLabels); err != nil {
			return nil, err
		}
	}
	out := make([]Edge, 0, len(byKey))
	for _, e := range byKey {
		out = append(out, *e)
	}
	sortEdges(out)
	return out, nil
}

// collect adds the rate, error percentage and p99 of a flow by labels.
func (p *Prometheus) collect(ctx context.Context, byKey map[string]*Edge, fl monitoring.Flow, w string, labels []string) error {
	get := func(labels map[string]string) *Edge {
		e := edgeOf(labels)
		if byKey[e.Key()] == nil {
			byKey[e.Key()] = &e
		}
		return byKey[e.Key()]
	}
	rates, err := p.query(ctx, fl.Rate(w, labels...))
	if err != nil {
		return err
	}
	for _, s := range rates {
		get(s.labels).RequestsPerSecond = s.value
	}
	ratios, err := p.query(ctx, fl.ErrorRatio(w, labels...))
	if err != nil {
		return err
	}
	for _, s := range ratios {
		if !math.IsNaN(s.value) {
			get(s.labels).ErrorPercent = 100 * s.value
		}
	}
	p99s, err := p.query(ctx, fl.Quantile(0.99, w, labels...))
	if err != nil {
		return err
	}
	for _, s := range p99s {
		if !math.IsNaN(s.value) && !math.IsInf(s.value, 0) {
			get(s.labels).P99 = time.Duration(s.value * float64(time.Millisecond))
		}
	}
	return nil
}

type promSample struct {
	labels map[string]string
	value  float64
}

func (p *Prometheus) query(ctx context.Context, q string) ([]promSample, error) {
	v := url.Values{"query": {q}}
	if !p.At.IsZero() {
		v.Set("time", strconv.FormatFloat(float64(p.At.UnixNano())/1e9, 'f', 3, 64))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/api/v1/query?"+v.Encode(), nil)
	if err != nil {
		return nil, errorf("%w", err)
	}
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, errorf("prometheus: %w", err)
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
		return nil, errorf("prometheus: %s: %w", resp.Status, err)
	}
	if r.Status != "success" {
		return nil, errorf("prometheus: query %s: %s", q, r.Error)
	}
	out := make([]promSample, 0, len(r.Data.Result))
	for _, s := range r.Data.Result {
		f, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		if err != nil {
			return nil, errorf("prometheus: value %v: %w", s.Value[1], err)
		}
		out = append(out, promSample{labels: s.Metric, value: f})
	}
	return out, nil
}
