package servicemap

import (
	"time"
)

// Graph is the JSON of GET <prefix>/api/graph: everything the page draws.
// Slices are sorted and never null; numbers are rounded (rates to 0.01
// req/s, percentages to 0.01, durations to 0.1 ms) so that the same
// traffic gives the same bytes.
type Graph struct {
	Mesh        string `json:"mesh"`
	Environment string `json:"environment,omitempty"`
	// Revision is the revision being served ("" before the first one).
	Revision    string    `json:"revision"`
	ServedSince time.Time `json:"servedSince,omitzero"`
	// LastFailure is the last attempted revision when it failed.
	LastFailure *Failure `json:"lastFailure,omitempty"`
	// Signals says where the numbers come from and when they were read.
	Signals SignalsInfo `json:"signals"`
	// RefreshSeconds is how often the page fetches this again.
	RefreshSeconds float64    `json:"refreshSeconds"`
	Thresholds     Thresholds `json:"thresholds"`
	// Width and Height are the size of the drawing, in px.
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Nodes  []Node `json:"nodes"`
	// Edges are the declared edges, each with its live signals.
	Edges []Edge `json:"edges"`
	// Unwanted are the connections seen in traffic that no declaration
	// explains (see Unwanted).
	Unwanted []Unwanted `json:"unwanted"`
}

// Failure is a revision the control plane refused.
type Failure struct {
	Revision string    `json:"revision"`
	At       time.Time `json:"at"`
	Step     string    `json:"step"`
	Error    string    `json:"error"`
}

// SignalsInfo describes the numbers.
type SignalsInfo struct {
	// Source is "prometheus" or "proxies" (straight from the proxies'
	// stats listeners).
	Source string `json:"source"`
	// URL is Prometheus' base URL (source prometheus).
	URL string `json:"url,omitempty"`
	// Window is the span the rates and percentages cover ("30s").
	Window string `json:"window"`
	// At is when they were read (zero before the first read).
	At time.Time `json:"at,omitzero"`
	// Error is why the last read failed ("" when it worked); the
	// previous numbers are kept.
	Error string `json:"error,omitempty"`
}

// Thresholds are the rules of an edge's health.
type Thresholds struct {
	// DefaultErrorPercent is the error percentage over which an edge to a
	// service without an availability objective is failing (5).
	DefaultErrorPercent float64 `json:"defaultErrorPercent"`
	// DegradedShare is the share of the threshold over which an edge is
	// degraded (0.5).
	DegradedShare float64 `json:"degradedShare"`
}

// DefaultThresholds are the documented thresholds.
var DefaultThresholds = Thresholds{DefaultErrorPercent: 5, DegradedShare: 0.5}

// Health of an edge.
const (
	HealthIdle     = "idle"
	HealthHealthy  = "healthy"
	HealthDegraded = "degraded"
	HealthFailing  = "failing"
)

// Node is a service, or the outside of the mesh (Outside).
type Node struct {
	// ID is the service's name, or "outside".
	ID      string `json:"id"`
	Outside bool   `json:"outside,omitempty"`
	// X, Y (top left), W, H are the node's box in the drawing, in px;
	// Layer is its column (0 at the left).
	X     int `json:"x"`
	Y     int `json:"y"`
	W     int `json:"w"`
	H     int `json:"h"`
	Layer int `json:"layer"`
	// The rest is empty for Outside.
	Namespace string    `json:"namespace,omitempty"`
	Identity  string    `json:"identity,omitempty"`
	Edge      bool      `json:"edge,omitempty"`
	MTLS      string    `json:"mtls,omitempty"`
	Ports     []Port    `json:"ports,omitempty"`
	Versions  []Version `json:"versions,omitempty"`
	Routes    []Route   `json:"routes,omitempty"`
	Authz     *Authz    `json:"authz,omitempty"`
	SLO       *SLO      `json:"slo,omitempty"`
	Calls     []string  `json:"calls,omitempty"`
	Callers   []string  `json:"callers,omitempty"`
	Proxies   []Proxy   `json:"proxies,omitempty"`
	// NACKs are the last rejections by its proxies (and a failed
	// rollout's, when it is attributed to this service), newest first.
	NACKs []NACK `json:"nacks,omitempty"`
}

// Port is a service port.
type Port struct {
	Name     string `json:"name"`
	Port     uint32 `json:"port"`
	Protocol string `json:"protocol"`
}

// Version is a version of a service.
type Version struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels,omitempty"`
	Replicas int               `json:"replicas"`
}

// Route is a route of a service, in precedence order.
type Route struct {
	Name string `json:"name"`
	// Match is the match in words ("path prefix /, header x-canary exact 1").
	Match string `json:"match"`
	// To are the split weights (empty: every version, by load balancing).
	To      []Weight `json:"to,omitempty"`
	Timeout string   `json:"timeout,omitempty"`
	Retries *int     `json:"retries,omitempty"`
	// Fault and Mirror in words ("abort 50% with 503", "10% to orders-shadow v2").
	Fault  string `json:"fault,omitempty"`
	Mirror string `json:"mirror,omitempty"`
}

// Weight is a version's share of a route, in percent.
type Weight struct {
	Version string `json:"version"`
	Percent int    `json:"percent"`
}

// Authz is a service's authorization: Default explains who is allowed
// when Allow is not written.
type Authz struct {
	Default string      `json:"default,omitempty"`
	Allow   []AuthzRule `json:"allow,omitempty"`
	Deny    []AuthzRule `json:"deny,omitempty"`
}

// AuthzRule is one rule; empty lists match anything.
type AuthzRule struct {
	From    []string `json:"from,omitempty"`
	Methods []string `json:"methods,omitempty"`
	Paths   []string `json:"paths,omitempty"`
}

// SLO are a service's objectives.
type SLO struct {
	Availability float64 `json:"availability,omitempty"`
	LatencyP99Ms float64 `json:"latencyP99Ms,omitempty"`
}

// Proxy is one proxy of a service, from the control plane's status.
type Proxy struct {
	NodeID       string `json:"nodeID"`
	Class        string `json:"class"`
	Connected    bool   `json:"connected"`
	InSync       bool   `json:"inSync"`
	AckedVersion string `json:"ackedVersion,omitempty"`
	Error        string `json:"error,omitempty"`
}

// NACK is a configuration a proxy rejected.
type NACK struct {
	NodeID   string    `json:"nodeID"`
	Version  string    `json:"version"`
	Type     string    `json:"type"`
	At       time.Time `json:"at"`
	Reason   string    `json:"reason"`
	Resource string    `json:"resource,omitempty"`
	// Where is the definition's file:line, when known.
	Where string `json:"where,omitempty"`
}

// Signals are the live numbers of a flow over the window.
type Signals struct {
	RequestsPerSecond float64 `json:"requestsPerSecond"`
	ErrorPercent      float64 `json:"errorPercent"`
	// P99Ms is the 99th percentile duration in ms (0 without requests).
	P99Ms float64 `json:"p99Ms"`
}

// Edge is a declared edge with its traffic.
type Edge struct {
	// ID is "<from>-><to>" for calls and ingress, "<from>-><to>/mirror" for a mirror.
	ID   string `json:"id"`
	From string `json:"from"`
	To   string `json:"to"`
	// Kind is calls, mirror or ingress (package compiler/graph).
	Kind string `json:"kind"`
	// Label describes a mirror ("mirror 10% of create to v2").
	Label string `json:"label,omitempty"`
	Signals
	// Health is idle, healthy, degraded or failing; Reason says why in
	// words when it is not healthy or idle.
	Health string `json:"health"`
	Reason string `json:"reason,omitempty"`
	// ErrorThreshold is the error percentage over which the edge fails,
	// and ThresholdFrom where it comes from ("slo" or "default");
	// LatencyBoundMs the destination's p99 objective (0: none).
	ErrorThreshold float64 `json:"errorThreshold"`
	ThresholdFrom  string  `json:"thresholdFrom"`
	LatencyBoundMs float64 `json:"latencyBoundMs,omitempty"`
	// ByVersion are the signals per pair of versions.
	ByVersion []VersionSignals `json:"byVersion"`
}

// VersionSignals are the signals between two versions.
type VersionSignals struct {
	SourceVersion      string `json:"sourceVersion,omitempty"`
	DestinationVersion string `json:"destinationVersion,omitempty"`
	Signals
}

// Kinds of unwanted connections.
const (
	// UnwantedNoRoute: a caller's proxy had no route for the request (a
	// host not in its calls; Envoy answers 404). To is "".
	UnwantedNoRoute = "no-route"
	// UnwantedUndeclaredCall: a caller's proxy routed to a service not
	// in its calls (a proxy still holding an older revision).
	UnwantedUndeclaredCall = "undeclared-call"
	// UnwantedUndeclaredCaller: a service's inbound side received mesh
	// requests from the identity of services that do not call it (and
	// mirror nothing to it): a workload that reached its address
	// directly. Its authz denies them (403) unless an allow rule names
	// the caller.
	UnwantedUndeclaredCaller = "undeclared-caller"
	// UnwantedUnknownIdentity: a mesh certificate whose SPIFFE id is no
	// service of the revision.
	UnwantedUnknownIdentity = "unknown-identity"
	// UnwantedOutside: requests without a mesh certificate reached a
	// service that is not an edge service (it accepts plaintext: mtls
	// permissive or disable).
	UnwantedOutside = "outside-to-internal"
)

// Unwanted is traffic that no declaration explains.
type Unwanted struct {
	// ID is "<kind>:<from>-><to>".
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// From is the calling service(s) ("a, b" when they share the
	// identity), "outside", or "" (an unknown identity); Principal the
	// caller's SPIFFE id when the destination reported it.
	From      string `json:"from"`
	Principal string `json:"principal,omitempty"`
	// To is the destination service ("" when no route matched).
	To string `json:"to"`
	Signals
	// Explanation says what happened, in words.
	Explanation string `json:"explanation"`
}
