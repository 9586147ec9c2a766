// Package metrics owns the control plane's Prometheus metrics
// (client_golang): what it serves, how its pipeline fares, its xDS
// streams and its CA. It registers them on any prometheus.Registerer —
// its own registry for `weft up`, controller-runtime's
// (sigs.k8s.io/controller-runtime/pkg/metrics.Registry) for the
// Kubernetes controller — and feeds them from hooks that need no change
// to the servers: a status function read at scrape time, gRPC
// interceptors and a pipeline observer.
//
// It imports only reconciler/api/status of weft, and never the xDS
// server, the CA or the pipeline it observes.
//
// Metrics (docs/observability.md):
//
//	weft_served_revision_info{revision}                   1 for the revision being served
//	weft_pipeline_step_duration_seconds{step}              histogram: load, vet, compile, publish
//	weft_revisions_applied_total                           revisions served
//	weft_revisions_failed_total{step}                      revisions refused, by the step that failed
//	weft_xds_proxies{state}                                connected, in_sync, nacking (gauges)
//	weft_xds_pushes_total{type}                            xDS responses sent, by type URL
//	weft_ca_certificates_signed_total                      workload certificates signed
//	weft_certificate_earliest_expiry_timestamp_seconds     the nearest expiry of a connected proxy's certificate
package metrics

import (
	"context"
	"net/http"
	"strings"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/weft-dev/weft/reconciler/api/status"
)

// Path is where Handler is served.
const Path = "/metrics"

// CASignMethod is the gRPC method whose successful calls count as signed
// certificates.
const CASignMethod = "/weft.ca.v1.CertificateService/Sign"

// StatusFunc returns the control plane's current status (the xDS server's
// Status method).
type StatusFunc func() status.Status

// Metrics are the control plane's metrics. The zero value is not usable:
// use New.
type Metrics struct {
	stepDuration *prometheus.HistogramVec
	applied      prometheus.Counter
	failed       *prometheus.CounterVec
	pushes       *prometheus.CounterVec
	signed       prometheus.Counter
	gatherer     prometheus.Gatherer
}

// New registers the metrics on reg. status is read at every scrape for
// the served revision, the proxies and the certificate expiry (nil: those
// metrics are absent). With reg nil, New uses a new registry of its own
// (which also holds the Go and process collectors) and Handler serves it.
func New(reg prometheus.Registerer, st StatusFunc) (*Metrics, error) {
	m := &Metrics{
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "weft_pipeline_step_duration_seconds",
			Help:    "Duration of each step of the pipeline (load, vet, compile, publish), per revision attempt.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"step"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_revisions_applied_total",
			Help: "Revisions that passed every step and are (or were) served.",
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_revisions_failed_total",
			Help: "Revisions refused, by the step that failed; the last good revision kept serving.",
		}, []string{"step"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_pushes_total",
			Help: "xDS responses sent to proxies (state of the world and delta), by resource type URL.",
		}, []string{"type"}),
		signed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_ca_certificates_signed_total",
			Help: "Workload certificates signed by the mesh CA.",
		}),
	}
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
		reg, m.gatherer = r, r
	}
	cs := []prometheus.Collector{m.stepDuration, m.applied, m.failed, m.pushes, m.signed}
	if st != nil {
		cs = append(cs, &statusCollector{status: st})
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// The steps and the failure label values exist from the start, so
	// that rate() and absent() see zeros rather than nothing.
	for _, s := range []string{status.StepLoad, status.StepVet, status.StepCompile, status.StepPublish} {
		m.failed.WithLabelValues(s)
		m.stepDuration.WithLabelValues(s)
	}
	return m, nil
}

// Handler serves the registry New created (nil when New was given a
// registerer: serve that one instead).
func (m *Metrics) Handler() http.Handler {
	if m.gatherer == nil {
		return nil
	}
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}

// ObserveStep records one step of one revision attempt: its duration and,
// when it failed, the failure. A successful publish counts the revision
// as applied.
func (m *Metrics) ObserveStep(step string, took time.Duration, err error) {
	m.stepDuration.WithLabelValues(step).Observe(took.Seconds())
	switch {
	case err != nil:
		m.failed.WithLabelValues(step).Inc()
	case step == status.StepPublish:
		m.applied.Inc()
	}
}

// RevisionFailed counts a revision refused at a step that ran outside the
// pipeline (e.g. the policy gate could not be built).
func (m *Metrics) RevisionFailed(step string) { m.failed.WithLabelValues(step).Inc() }

// ServerOptions are the gRPC server options that feed the metrics: xDS
// responses sent on ADS streams (weft_xds_pushes_total) and successful
// CSR signings (weft_ca_certificates_signed_total). Give them to the gRPC
// server that carries ADS and the CA.
func (m *Metrics) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.unary),
		grpc.ChainStreamInterceptor(m.stream),
	}
}

func (m *Metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err == nil && info.FullMethod == CASignMethod {
		m.signed.Inc()
	}
	return resp, err
}

func (m *Metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if !strings.HasPrefix(info.FullMethod, "/envoy.service.discovery.v3.AggregatedDiscoveryService/") {
		return h(srv, ss)
	}
	return h(srv, &countingStream{ServerStream: ss, m: m})
}

// countingStream counts the discovery responses sent on a stream.
type countingStream struct {
	grpc.ServerStream
	m *Metrics
}

func (s *countingStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if err != nil {
		return err
	}
	switch r := msg.(type) {
	case *discoveryv3.DiscoveryResponse:
		s.m.pushes.WithLabelValues(r.GetTypeUrl()).Inc()
	case *discoveryv3.DeltaDiscoveryResponse:
		s.m.pushes.WithLabelValues(r.GetTypeUrl()).Inc()
	}
	return nil
}

// statusCollector turns the status into gauges at scrape time.
type statusCollector struct{ status StatusFunc }

var (
	revisionDesc = prometheus.NewDesc("weft_served_revision_info",
		"The revision being served (value 1; no series before the first).", []string{"revision"}, nil)
	proxiesDesc = prometheus.NewDesc("weft_xds_proxies",
		"Proxies by state: connected; in_sync (connected and ACKed the version served to them); nacking (connected and their last response for the served version was a NACK).",
		[]string{"state"}, nil)
	expiryDesc = prometheus.NewDesc("weft_certificate_earliest_expiry_timestamp_seconds",
		"When the first workload certificate of a connected proxy expires (unix seconds; absent when none is known).", nil, nil)
)

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- revisionDesc
	ch <- proxiesDesc
	ch <- expiryDesc
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	if st.Revision != "" {
		ch <- prometheus.MustNewConstMetric(revisionDesc, prometheus.GaugeValue, 1, st.Revision)
	}
	connected, inSync, nacking := st.ProxyCounts()
	var earliest time.Time
	for _, p := range st.Proxies {
		if p.Connected && !p.CertExpiry.IsZero() && (earliest.IsZero() || p.CertExpiry.Before(earliest)) {
			earliest = p.CertExpiry
		}
	}
	ch <- prometheus.MustNewConstMetric(proxiesDesc, prometheus.GaugeValue, float64(connected), "connected")
	ch <- prometheus.MustNewConstMetric(proxiesDesc, prometheus.GaugeValue, float64(inSync), "in_sync")
	ch <- prometheus.MustNewConstMetric(proxiesDesc, prometheus.GaugeValue, float64(nacking), "nacking")
	if !earliest.IsZero() {
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(earliest.Unix()))
	}
}
