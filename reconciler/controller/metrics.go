package controller

import (
	"net/http"

	fluxmetrics "github.com/fluxcd/pkg/runtime/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/weft-dev/weft/reconciler/api/status"
	cpmetrics "github.com/weft-dev/weft/reconciler/metrics"
)

// Metrics of `weft controller`, served at /metrics with
// controller-runtime's own (controller_runtime_reconcile_*, workqueue_*):
//
//	gotk_reconcile_duration_seconds{kind,name,namespace}   histogram: one Mesh reconcile (Flux's own recorder and name)
//	gotk_reconcile_condition{kind,name,namespace,type,status}  the Mesh's Ready/Reconciling/Stalled (Flux's)
//	gotk_suspend_status{kind,name,namespace}                1 while spec.suspend (Flux's)
//	weft_mesh_reconciles_total{result}                      reconciles by outcome: applied, progressing, stalled, retrying, skipped, not_served
//
// and the control plane's own, the same as `weft up`'s (package
// reconciler/metrics): weft_pipeline_step_duration_seconds{step},
// weft_revisions_applied_total, weft_revisions_failed_total{step} (fetch
// counted here, the pipeline's steps by the pipeline),
// weft_served_revision_info{revision}, weft_xds_proxies{state},
// weft_xds_pushes_total{type}, weft_ca_certificates_signed_total and
// weft_certificate_earliest_expiry_timestamp_seconds.
type metrics struct {
	flux       *fluxmetrics.Recorder
	reconciles *prometheus.CounterVec
	shared     *cpmetrics.Metrics
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
	shared, err := cpmetrics.New(reg, st)
	if err != nil {
		return nil, err
	}
	m := &metrics{
		flux: fluxmetrics.NewRecorder(),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_mesh_reconciles_total",
			Help: "Mesh reconciles by outcome: applied, progressing (rolling out), stalled, retrying, skipped (suspended), not_served (another Mesh is served).",
		}, []string{"result"}),
		shared: shared,
	}
	for _, c := range append(m.flux.Collectors(), m.reconciles) {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{resultApplied, resultProgressing, resultStalled, resultRetrying, resultSkipped, resultNotServed} {
		m.reconciles.WithLabelValues(r)
	}
	return m, nil
}

// metricsHandler serves controller-runtime's registry and reg together.
func metricsHandler(reg prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{ctrlmetrics.Registry, reg}, promhttp.HandlerOpts{})
}

// serverOptions count the xDS responses sent on ADS streams and the
// certificates the CA signs on the same gRPC server.
func (m *metrics) serverOptions() []grpc.ServerOption { return m.shared.ServerOptions() }
