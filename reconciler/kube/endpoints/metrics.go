package endpoints

import "github.com/prometheus/client_golang/prometheus"

// Metric names of the Feed (Prometheus, client_golang).
const (
	MetricUpdates   = "weft_endpoints_updates_total"
	MetricLatency   = "weft_endpoints_update_seconds"
	MetricEndpoints = "weft_endpoints"
	MetricExcluded  = "weft_endpoints_excluded"
)

type metrics struct {
	updates   prometheus.Counter
	latency   prometheus.Histogram
	endpoints prometheus.Gauge
	excluded  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		updates: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricUpdates,
			Help: "Endpoint changes published without compiling again (load assignments rebuilt)."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricLatency,
			Help:    "Time from the first EndpointSlice or pod event of a burst to the new load assignments being published.",
			Buckets: []float64{.05, .1, .15, .2, .3, .5, 1, 2, 5}}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricEndpoints,
			Help: "Endpoints served, all services and versions."}),
		excluded: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricExcluded,
			Help: "Endpoints of the mesh's Services left out (no pod, no or several versions, another service account, FQDN)."}),
	}
	for _, c := range []prometheus.Collector{m.updates, m.latency, m.endpoints, m.excluded} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
