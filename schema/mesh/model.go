package mesh

import (
	"fmt"
	"time"
)

// Model is one fully validated mesh: a base definition unified with at most
// one environment.
type Model struct {
	Name        string              `json:"name"`
	TrustDomain string              `json:"trustDomain"`
	Defaults    Defaults            `json:"defaults"`
	Services    map[string]*Service `json:"services"`
	// Observability is the mesh-wide metrics, access log and tracing
	// configuration (nil: metrics only).
	Observability *Observability `json:"observability,omitempty"`

	// Environment is the overlay that was unified with the base ("" for
	// the base alone). Revision is the source revision it was loaded from.
	Environment string `json:"-"`
	Revision    string `json:"-"`
	// Positions maps CUE field paths to their source positions.
	Positions Positions `json:"-"`
}

// Defaults are mesh-wide values for fields a service leaves unset.
type Defaults struct {
	Namespace        string            `json:"namespace"`
	MTLS             MTLSMode          `json:"mtls"`
	Timeout          Duration          `json:"timeout"`
	Retries          Retries           `json:"retries"`
	CircuitBreaker   *CircuitBreaker   `json:"circuitBreaker,omitempty"`
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
}

// MTLSMode says what an inbound listener accepts.
type MTLSMode string

// mTLS modes.
const (
	MTLSStrict     MTLSMode = "strict"
	MTLSPermissive MTLSMode = "permissive"
	MTLSDisable    MTLSMode = "disable"
)

// Service is one service of the mesh. After loading, Namespace,
// ServiceAccount and every field with a mesh default are resolved, so
// consumers never look at Defaults themselves.
type Service struct {
	Name             string              `json:"-"`
	Namespace        string              `json:"namespace"`
	ServiceAccount   string              `json:"serviceAccount"`
	Ports            map[string]Port     `json:"ports"`
	Versions         map[string]*Version `json:"versions"`
	Calls            []string            `json:"calls"`
	Edge             bool                `json:"edge"`
	Routes           Routes              `json:"routes"`
	Timeout          *Duration           `json:"timeout,omitempty"`
	Retries          *Retries            `json:"retries,omitempty"`
	RateLimit        *RateLimit          `json:"rateLimit,omitempty"`
	Headers          *Headers            `json:"headers,omitempty"`
	CircuitBreaker   *CircuitBreaker     `json:"circuitBreaker,omitempty"`
	OutlierDetection *OutlierDetection   `json:"outlierDetection,omitempty"`
	MTLS             MTLSMode            `json:"mtls,omitempty"`
	Authz            *Authz              `json:"authz,omitempty"`
	Local            *Local              `json:"local,omitempty"`
	// Observability overrides the mesh's for this service (see
	// Model.ObservabilityOf); SLO are its objectives.
	Observability *ServiceObservability `json:"observability,omitempty"`
	SLO           *SLO                  `json:"slo,omitempty"`
}

// Protocol is a port's application protocol.
type Protocol string

// Protocols.
const (
	HTTP Protocol = "http"
	GRPC Protocol = "grpc"
	TCP  Protocol = "tcp"
)

// Port is a named service port.
type Port struct {
	Name     string   `json:"-"`
	Port     uint32   `json:"port"`
	Protocol Protocol `json:"protocol"`
}

// Version is a subset of a service's workloads.
type Version struct {
	Name      string            `json:"-"`
	Labels    map[string]string `json:"labels"`
	Endpoints []string          `json:"endpoints"`
	Replicas  int               `json:"replicas"`
}

// Route is one route of a service. In CUE, routes is a struct keyed by
// route name; Name is that key.
type Route struct {
	Name string `json:"-"`
	// Priority (default 0) puts the route before every route of lower
	// priority, whatever the precedence of their matches.
	Priority  int            `json:"priority,omitempty"`
	Match     Match          `json:"match"`
	To        map[string]int `json:"to,omitempty"`
	Timeout   *Duration      `json:"timeout,omitempty"`
	Retries   *Retries       `json:"retries,omitempty"`
	Fault     *Fault         `json:"fault,omitempty"`
	Mirror    *Mirror        `json:"mirror,omitempty"`
	Headers   *Headers       `json:"headers,omitempty"`
	RateLimit *RateLimit     `json:"rateLimit,omitempty"`
	Rewrite   *Rewrite       `json:"rewrite,omitempty"`
}

// Rewrite changes a request on its way to the upstream, after routing.
type Rewrite struct {
	// Host replaces Host/:authority ("api.example.com[:port]").
	Host string `json:"host,omitempty"`
}

// Match selects requests. All given conditions must hold.
type Match struct {
	Path    *StringMatch           `json:"path,omitempty"`
	Headers map[string]StringMatch `json:"headers,omitempty"`
	Methods []string               `json:"methods,omitempty"`
}

// StringMatch has exactly one of its fields set.
type StringMatch struct {
	Exact   *string `json:"exact,omitempty"`
	Prefix  *string `json:"prefix,omitempty"`
	Regex   *string `json:"regex,omitempty"`
	Present *bool   `json:"present,omitempty"`
}

// IsCatchAll reports whether m matches every request.
func (m Match) IsCatchAll() bool {
	return len(m.Headers) == 0 && len(m.Methods) == 0 &&
		(m.Path == nil || (m.Path.Prefix != nil && *m.Path.Prefix == "/"))
}

// Retries is a retry policy.
type Retries struct {
	Attempts      int       `json:"attempts"`
	On            []string  `json:"on"`
	PerTryTimeout *Duration `json:"perTryTimeout,omitempty"`
}

// RateLimit is a local (per proxy) token bucket, written either as
// RequestsPerSecond or as Requests per Per (the loader accepts exactly one
// form). The bucket starts full with BurstOrDefault tokens; each request
// takes one; tokens come back continuously at Refill's rate.
type RateLimit struct {
	RequestsPerSecond int       `json:"requestsPerSecond,omitempty"`
	Requests          int       `json:"requests,omitempty"`
	Per               *Duration `json:"per,omitempty"`
	Burst             int       `json:"burst,omitempty"`
}

// MinRateLimitPer is the shortest refill period: Envoy's local rate limit
// refuses a fill interval below 50ms.
const MinRateLimitPer = 50 * time.Millisecond

// Refill is the bucket's refill rate: tokens every interval (Requests per
// Per, else RequestsPerSecond per second).
func (r RateLimit) Refill() (tokens int, interval time.Duration) {
	if r.Requests > 0 && r.Per != nil {
		return r.Requests, r.Per.Duration
	}
	return r.RequestsPerSecond, time.Second
}

// BurstOrDefault is the bucket size: Burst, or one refill's worth of
// requests.
func (r RateLimit) BurstOrDefault() int {
	if r.Burst > 0 {
		return r.Burst
	}
	tokens, _ := r.Refill()
	return tokens
}

// Headers manipulates request and response headers.
type Headers struct {
	Request  *HeaderOps `json:"request,omitempty"`
	Response *HeaderOps `json:"response,omitempty"`
}

// HeaderOps are header edits; Preset is only valid on responses.
type HeaderOps struct {
	Set    map[string]string `json:"set,omitempty"`
	Add    map[string]string `json:"add,omitempty"`
	Remove []string          `json:"remove,omitempty"`
	Preset string            `json:"preset,omitempty"`
}

// Fault injects delays and aborts.
type Fault struct {
	Delay *FaultDelay `json:"delay,omitempty"`
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay delays Percent of requests by Duration.
type FaultDelay struct {
	Percent  float64  `json:"percent"`
	Duration Duration `json:"duration"`
}

// FaultAbort answers Percent of requests with Status.
type FaultAbort struct {
	Percent float64 `json:"percent"`
	Status  int     `json:"status"`
}

// Mirror copies Percent of requests to another service, or to Version of
// a service (which may be the route's own service), fire and forget.
type Mirror struct {
	To      string  `json:"to"`
	Version string  `json:"version,omitempty"`
	Percent float64 `json:"percent"`
}

// CircuitBreaker holds Envoy's per-cluster thresholds; nil means Envoy's default.
type CircuitBreaker struct {
	MaxConnections     *uint32 `json:"maxConnections,omitempty"`
	MaxPendingRequests *uint32 `json:"maxPendingRequests,omitempty"`
	MaxRequests        *uint32 `json:"maxRequests,omitempty"`
	MaxRetries         *uint32 `json:"maxRetries,omitempty"`
	// MaxRequestsPerConnection closes an upstream connection after that
	// many requests (Envoy's HttpProtocolOptions on the cluster).
	MaxRequestsPerConnection *uint32 `json:"maxRequestsPerConnection,omitempty"`
}

// DefaultMaxEjectionPercent is the schema's default maxEjectionPercent:
// the most endpoints of a cluster that Envoy may eject at once without
// falling into panic routing (its healthy_panic_threshold is 50%), and
// enough to eject one of two.
const DefaultMaxEjectionPercent = 50.0

// OutlierDetection ejects failing endpoints.
type OutlierDetection struct {
	Consecutive5xx           *uint32   `json:"consecutive5xx,omitempty"`
	ConsecutiveGatewayErrors *uint32   `json:"consecutiveGatewayErrors,omitempty"`
	Interval                 *Duration `json:"interval,omitempty"`
	BaseEjectionTime         *Duration `json:"baseEjectionTime,omitempty"`
	MaxEjectionPercent       *float64  `json:"maxEjectionPercent,omitempty"`
}

// MaxEjectionPercentOrDefault is MaxEjectionPercent, or
// DefaultMaxEjectionPercent when unset (a model built by hand).
func (o OutlierDetection) MaxEjectionPercentOrDefault() float64 {
	if o.MaxEjectionPercent != nil {
		return *o.MaxEjectionPercent
	}
	return DefaultMaxEjectionPercent
}

// Authz is a service's authorization policy.
type Authz struct {
	Allow []AuthzRule `json:"allow,omitempty"`
	Deny  []AuthzRule `json:"deny,omitempty"`
	// AllowSet reports whether Allow was written (an empty list denies all).
	AllowSet bool `json:"-"`
}

// AuthzRule matches requests; empty fields match anything.
type AuthzRule struct {
	From    []string `json:"from,omitempty"`
	Methods []string `json:"methods,omitempty"`
	Paths   []string `json:"paths,omitempty"`
}

// Local says how `weft up` runs a workload.
type Local struct {
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
}

// Duration is a time.Duration written as a string ("250ms").
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration in Go's notation.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
