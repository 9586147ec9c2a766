package mesh

import "time"

// Observability is the mesh's observability block.
type Observability struct {
	// Metrics: the per-request golden-signal metrics on every proxy
	// (default true; a nil *bool is true).
	Metrics   *bool      `json:"metrics,omitempty"`
	AccessLog *AccessLog `json:"accessLog,omitempty"`
	Tracing   *Tracing   `json:"tracing,omitempty"`
}

// ServiceObservability overrides the mesh's observability for one service.
type ServiceObservability struct {
	Metrics   *bool      `json:"metrics,omitempty"`
	AccessLog *AccessLog `json:"accessLog,omitempty"`
	Tracing   *struct {
		SamplingPercent float64 `json:"samplingPercent"`
	} `json:"tracing,omitempty"`
}

// AccessLog writes one JSON line per request.
type AccessLog struct {
	Enabled bool `json:"enabled"`
	// Output is "stdout", "stderr" or an absolute file path.
	Output string `json:"output"`
	// Fields are the keys of each line (empty: AccessLogFields).
	Fields []string `json:"fields,omitempty"`
}

// AccessLogFields are the fields an access log line may hold, in the
// order they are documented (docs/observability.md).
var AccessLogFields = []string{
	"start_time", "method", "path", "authority", "protocol",
	"response_code", "response_flags", "grpc_status", "duration_ms",
	"bytes_received", "bytes_sent", "upstream_cluster", "upstream_host",
	"request_id", "trace_id", "user_agent", "direction",
	"source_identity", "destination_identity", "source_service", "destination_service",
}

// Tracing sends spans to an OpenTelemetry collector over OTLP/gRPC.
type Tracing struct {
	// Collector is "host:port".
	Collector       string  `json:"collector"`
	SamplingPercent float64 `json:"samplingPercent"`
}

// SLO are a service's objectives.
type SLO struct {
	// Availability is the target share of successful requests, in
	// percent (0: none).
	Availability float64     `json:"availability,omitempty"`
	Latency      *LatencySLO `json:"latency,omitempty"`
}

// LatencySLO bounds quantiles of the request duration.
type LatencySLO struct {
	P50 *Duration `json:"p50,omitempty"`
	P90 *Duration `json:"p90,omitempty"`
	P95 *Duration `json:"p95,omitempty"`
	P99 *Duration `json:"p99,omitempty"`
}

// LatencyObjective is one latency bound: Quantile (0.99) of the requests
// take at most Bound.
type LatencyObjective struct {
	Name     string // "p99"
	Quantile float64
	Bound    time.Duration
}

// Objectives lists the bounds that are set, fastest quantile first.
func (l *LatencySLO) Objectives() []LatencyObjective {
	if l == nil {
		return nil
	}
	var out []LatencyObjective
	for _, o := range []struct {
		name string
		q    float64
		d    *Duration
	}{{"p50", 0.5, l.P50}, {"p90", 0.9, l.P90}, {"p95", 0.95, l.P95}, {"p99", 0.99, l.P99}} {
		if o.d != nil {
			out = append(out, LatencyObjective{Name: o.name, Quantile: o.q, Bound: o.d.Duration})
		}
	}
	return out
}

// Telemetry is the effective observability of one service: the mesh's
// block with the service's overrides applied.
type Telemetry struct {
	Metrics   bool
	AccessLog *AccessLog // nil: no access log
	Tracing   *Tracing   // nil: no tracing
}

// TelemetryOf resolves the observability of service s: the service's
// metrics, accessLog (replacing the mesh's) and tracing.samplingPercent
// override the mesh's. A disabled access log, and tracing without a mesh
// collector or at 0%, are nil.
func (m *Model) TelemetryOf(s *Service) Telemetry {
	t := Telemetry{Metrics: true}
	if o := m.Observability; o != nil {
		if o.Metrics != nil {
			t.Metrics = *o.Metrics
		}
		t.AccessLog = o.AccessLog
		if o.Tracing != nil {
			tr := *o.Tracing
			t.Tracing = &tr
		}
	}
	if o := s.Observability; o != nil {
		if o.Metrics != nil {
			t.Metrics = *o.Metrics
		}
		if o.AccessLog != nil {
			t.AccessLog = o.AccessLog
		}
		if o.Tracing != nil && t.Tracing != nil {
			t.Tracing.SamplingPercent = o.Tracing.SamplingPercent
		}
	}
	if t.AccessLog != nil && !t.AccessLog.Enabled {
		t.AccessLog = nil
	}
	if t.AccessLog != nil && t.AccessLog.Output == "" {
		al := *t.AccessLog
		al.Output = "stdout"
		t.AccessLog = &al
	}
	if t.Tracing != nil && (t.Tracing.Collector == "" || t.Tracing.SamplingPercent <= 0) {
		t.Tracing = nil
	}
	return t
}

// LatencyBucketsMs are the upper bounds, in milliseconds, of the buckets
// of the request duration histogram (envoy_weft_request_duration_milliseconds,
// the bootstrap's histogram_bucket_settings). A latency objective's bound
// must be one of them, so that the share of requests within it is exact
// (a bucket count), not interpolated.
var LatencyBucketsMs = []float64{
	1, 2, 5, 10, 20, 25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750,
	1000, 1500, 2000, 2500, 3000, 5000, 10000, 15000, 30000, 60000, 300000,
}

// IsLatencyBucket reports whether d is a bucket bound of LatencyBucketsMs.
func IsLatencyBucket(d time.Duration) bool {
	for _, b := range LatencyBucketsMs {
		if time.Duration(b*float64(time.Millisecond)) == d {
			return true
		}
	}
	return false
}
