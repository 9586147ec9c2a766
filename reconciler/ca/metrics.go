package ca

import (
	"crypto/x509"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

// Observer is told the outcome of every CSR that a Server handles. It
// must be safe for concurrent use and return quickly.
type Observer interface {
	// Signed: a certificate was issued to id.
	Signed(id cav1.Identity, cert *x509.Certificate)
	// Refused: a CSR was refused with the gRPC code (Unauthenticated,
	// PermissionDenied, InvalidArgument, Unavailable or Internal).
	Refused(code codes.Code)
}

// Metric names of Metrics (Prometheus, client_golang).
const (
	MetricSigned        = "weft_ca_certificates_signed_total"
	MetricRefused       = "weft_ca_csr_refused_total"
	MetricNearestExpiry = "weft_ca_certificate_nearest_expiry_timestamp_seconds"
	MetricRootExpiry    = "weft_ca_root_expiry_timestamp_seconds"
)

// Metrics is an Observer that exports the CA's work to Prometheus:
//
//   - weft_ca_certificates_signed_total: certificates issued;
//   - weft_ca_csr_refused_total{code}: CSRs refused, by gRPC code
//     ("Unauthenticated", "PermissionDenied", ...);
//   - weft_ca_certificate_nearest_expiry_timestamp_seconds: the soonest
//     expiry (Unix seconds) among the latest certificates issued to each
//     identity that have not expired yet — a workload that stops renewing
//     pulls it towards now (alert on it minus time() below a margin); no
//     sample before the first certificate;
//   - weft_ca_root_expiry_timestamp_seconds: when the root expires.
//
// Each replica of the controller counts what it signed itself; sum or
// take the minimum across replicas.
type Metrics struct {
	signed  prometheus.Counter
	refused *prometheus.CounterVec
	root    prometheus.Gauge
	nearest *prometheus.Desc
	now     func() time.Time

	mu     sync.Mutex
	latest map[cav1.Identity]time.Time // newest NotAfter issued per identity
}

// NewMetrics registers the CA's metrics with reg (e.g. controller-runtime's
// metrics.Registry) and sets the root's expiry from c (nil: none).
func NewMetrics(reg prometheus.Registerer, c *CA) (*Metrics, error) {
	m := &Metrics{
		signed: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricSigned,
			Help: "Workload certificates signed by the mesh CA."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRefused,
			Help: "CSRs the mesh CA refused, by gRPC status code."}, []string{"code"}),
		root: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricRootExpiry,
			Help: "When the mesh CA's root certificate expires (Unix seconds)."}),
		nearest: prometheus.NewDesc(MetricNearestExpiry,
			"The soonest expiry (Unix seconds) among the latest certificates signed for each identity that have not expired.", nil, nil),
		now:    time.Now,
		latest: map[cav1.Identity]time.Time{},
	}
	m.SetRoot(c)
	if err := reg.Register(m.signed); err != nil {
		// The control plane's metrics (package reconciler/metrics) define
		// the same counter on a registry they share with the CA (`weft
		// controller`): count into that one.
		are, ok := err.(prometheus.AlreadyRegisteredError)
		if !ok {
			return nil, err
		}
		if m.signed, ok = are.ExistingCollector.(prometheus.Counter); !ok {
			return nil, err
		}
	}
	for _, col := range []prometheus.Collector{m.refused, m.root, m} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// SetRoot sets the root's expiry from c (nil: nothing), e.g. once the
// controller has loaded the root.
func (m *Metrics) SetRoot(c *CA) {
	if c != nil {
		m.root.Set(float64(c.Root().NotAfter.Unix()))
	}
}

// Signed implements Observer.
func (m *Metrics) Signed(id cav1.Identity, cert *x509.Certificate) {
	m.signed.Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	if cert.NotAfter.After(m.latest[id]) {
		m.latest[id] = cert.NotAfter
	}
}

// Refused implements Observer.
func (m *Metrics) Refused(code codes.Code) { m.refused.WithLabelValues(code.String()).Inc() }

// Nearest is the soonest expiry among the latest certificates of each
// identity that have not expired, false when there is none. Expired
// entries are forgotten.
func (m *Metrics) Nearest() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var nearest time.Time
	for id, t := range m.latest {
		if !t.After(now) {
			delete(m.latest, id)
			continue
		}
		if nearest.IsZero() || t.Before(nearest) {
			nearest = t
		}
	}
	return nearest, !nearest.IsZero()
}

// Describe implements prometheus.Collector (the nearest-expiry gauge).
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.nearest }

// Collect implements prometheus.Collector (the nearest-expiry gauge).
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if t, ok := m.Nearest(); ok {
		ch <- prometheus.MustNewConstMetric(m.nearest, prometheus.GaugeValue, float64(t.Unix()))
	}
}
