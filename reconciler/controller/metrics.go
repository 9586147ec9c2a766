package controller

import (
	"net/http"
	"strings"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	fluxmetrics "github.com/fluxcd/pkg/runtime/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/weft-dev/weft/reconciler/api/status"
)

// Metrics of `weft controller`, served at /metrics with
// controller-runtime's own (controller_runtime_reconcile_*, workqueue_*):
//
//	gotk_reconcile_duration_seconds{kind,name,namespace}   histogram: one Mesh reconcile (Flux's own recorder and name)
//	gotk_reconcile_condition{kind,name,namespace,type,status}  the Mesh's Ready/Reconciling/Stalled (Flux's)
//	gotk_suspend_status{kind,name,namespace}                1 while spec.suspend (Flux's)
//	weft_mesh_reconciles_total{result}                      reconciles by outcome: applied, progressing, stalled, retrying, skipped, not_served
//	weft_revisions_applied_total                            revisions that passed every step and were published
//	weft_revisions_failed_total{step}                       revisions refused, by the step that failed (fetch, load, vet, compile, accept, publish, rollout)
//	weft_served_revision_info{revision}                     1 for the revision being served
//	weft_xds_proxies{state}                                 connected, in_sync, nacking
//	weft_xds_pushes_total{type}                             xDS responses sent, by type URL
//
// Reserved for the CA component (registered by it on Runtime.Metrics):
// weft_ca_certificates_signed_total, weft_certificate_earliest_expiry_timestamp_seconds.
//
// The names of the weft_* series that the local control plane of
// `weft up` also exports are the same.
type metrics struct {
	flux       *fluxmetrics.Recorder
	reconciles *prometheus.CounterVec
	applied    prometheus.Counter
	failed     *prometheus.CounterVec
	pushes     *prometheus.CounterVec
}

// Results of weft_mesh_reconciles_total.
const (
	resultApplied     = "applied"
	resultProgressing = "progressing"
	resultStalled     = "stalled"
	resultRetrying    = "retrying"
	resultSkipped     = "skipped"
	resultNotServed   = "not_served"
)

// newMetrics registers the metrics on reg; st is read at every scrape.
func newMetrics(reg prometheus.Registerer, st func() status.Status) (*metrics, error) {
	m := &metrics{
		flux: fluxmetrics.NewRecorder(),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_mesh_reconciles_total",
			Help: "Mesh reconciles by outcome: applied, progressing (rolling out), stalled, retrying, skipped (suspended), not_served (another Mesh is served).",
		}, []string{"result"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_revisions_applied_total",
			Help: "Revisions that passed every step and were published.",
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_revisions_failed_total",
			Help: "Revisions refused, by the step that failed; the last good revision kept serving.",
		}, []string{"step"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_pushes_total",
			Help: "xDS responses sent to proxies (state of the world and delta), by resource type URL.",
		}, []string{"type"}),
	}
	cs := append(m.flux.Collectors(), m.reconciles, m.applied, m.failed, m.pushes, &statusCollector{status: st})
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{resultApplied, resultProgressing, resultStalled, resultRetrying, resultSkipped, resultNotServed} {
		m.reconciles.WithLabelValues(r)
	}
	return m, nil
}

// handler serves controller-runtime's registry and reg together.
func metricsHandler(reg prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{ctrlmetrics.Registry, reg}, promhttp.HandlerOpts{})
}

// serverOptions count the xDS responses sent on ADS streams.
func (m *metrics) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainStreamInterceptor(m.stream)}
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if !strings.HasPrefix(info.FullMethod, "/envoy.service.discovery.v3.AggregatedDiscoveryService/") {
		return h(srv, ss)
	}
	return h(srv, &countingStream{ServerStream: ss, m: m})
}

// countingStream counts the discovery responses sent on a stream.
type countingStream struct {
	grpc.ServerStream
	m *metrics
}

func (s *countingStream) SendMsg(msg any) error {
	if err := s.ServerStream.SendMsg(msg); err != nil {
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

// statusCollector turns the xDS server's status into gauges at scrape
// time.
type statusCollector struct{ status func() status.Status }

var (
	revisionDesc = prometheus.NewDesc("weft_served_revision_info",
		"The revision being served (value 1; no series before the first).", []string{"revision"}, nil)
	proxiesDesc = prometheus.NewDesc("weft_xds_proxies",
		"Proxies by state: connected; in_sync (connected and ACKed the version served to them); nacking (connected, and their last NACK is of the version served to them).",
		[]string{"state"}, nil)
)

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- revisionDesc
	ch <- proxiesDesc
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	if st.Revision != "" {
		ch <- prometheus.MustNewConstMetric(revisionDesc, prometheus.GaugeValue, 1, st.Revision)
	}
	connected, inSync, nacking := proxyCounts(st)
	ch <- prometheus.MustNewConstMetric(proxiesDesc, prometheus.GaugeValue, float64(connected), "connected")
	ch <- prometheus.MustNewConstMetric(proxiesDesc, prometheus.GaugeValue, float64(inSync), "in_sync")
	ch <- prometheus.MustNewConstMetric(proxiesDesc, prometheus.GaugeValue, float64(nacking), "nacking")
}

// proxyCounts counts the connected proxies, those in sync with what they
// are served, and those whose last NACK is of what they are served.
func proxyCounts(st status.Status) (connected, inSync, nacking int) {
	for _, p := range st.Proxies {
		if !p.Connected {
			continue
		}
		connected++
		if p.InSync {
			inSync++
		}
		if p.LastNACK != nil && p.LastNACK.Version == p.Version {
			nacking++
		}
	}
	return connected, inSync, nacking
}
