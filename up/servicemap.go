package up

import (
	"context"
	"strings"
	"time"

	"github.com/weft-dev/weft/reconciler/servicemap"
	"github.com/weft-dev/weft/reconciler/signals"
	"github.com/weft-dev/weft/schema/mesh"
)

// Default windows of the service map's signals: straight from the
// proxies, each read compares with the one at least this old; through
// Prometheus, the range of the rates (a few scrape intervals).
const (
	DefaultMapWindow           = 30 * time.Second
	DefaultPrometheusMapWindow = time.Minute
)

// newServiceMap is the service map of the mesh (package
// reconciler/servicemap), served on the status endpoint at /map/: the
// model of the revision served, the xDS server's status, and the signals
// of Options.Prometheus or, without one, of the running instances' stats
// listeners.
func (m *Mesh) newServiceMap() *servicemap.Map {
	o := m.opts
	window := o.MapWindow
	var reader signals.Reader
	info := servicemap.SignalsInfo{Source: "proxies"}
	if o.Prometheus != "" {
		if window <= 0 {
			window = DefaultPrometheusMapWindow
		}
		info.Source, info.URL = "prometheus", strings.TrimSuffix(o.Prometheus, "/")
		reader = promReader{m: m, url: info.URL, window: promDuration(window)}
	} else {
		if window <= 0 {
			window = DefaultMapWindow
		}
		reader = &signals.Proxies{Targets: m.statsTargets, Window: window, Inbound: true}
	}
	info.Window = window.String()
	return servicemap.New(servicemap.Options{
		Model:   m.servedModel,
		Status:  m.status,
		Signals: reader,
		Info:    info,
		Refresh: o.MapRefresh,
	})
}

// ServiceMapURL is the service map page's URL.
func (m *Mesh) ServiceMapURL() string { return "http://" + m.statusAddr + servicemap.Path + "/" }

// servedModel is the model of the last revision applied (nil before).
func (m *Mesh) servedModel() *mesh.Model {
	if a := m.pipeline.LastApplied(); a != nil {
		return a.Model
	}
	return nil
}

// promReader reads the edges of the served mesh (its name is the mesh
// label) from Prometheus.
type promReader struct {
	m           *Mesh
	url, window string
}

func (r promReader) Edges(ctx context.Context) ([]signals.Edge, error) {
	mo := r.m.servedModel()
	if mo == nil {
		return nil, nil
	}
	return (&signals.Prometheus{URL: r.url, Mesh: mo.Name, Window: r.window, Inbound: true}).Edges(ctx)
}

// statsTargets are the running instances' stats listeners.
func (m *Mesh) statsTargets() []string {
	var ts []string
	for _, in := range m.Instances() {
		ts = append(ts, in.StatsAddr)
	}
	return ts
}

// promDuration writes a duration as PromQL does ("30s", "1m", "90s").
func promDuration(d time.Duration) string {
	if d%time.Minute == 0 {
		return strings.TrimSuffix(d.String(), "0s")
	}
	return strings.TrimSuffix(d.Round(time.Second).String(), "0m")
}
