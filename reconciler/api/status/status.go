// Package status holds the JSON types of the control plane's status
// endpoint (GET /status, served by package reconciler/xds). `weft status`
// decodes them without importing the server. Types only: no logic, no
// weft imports, so the CLI and the sidecar may use it freely.
package status

import "time"

// Status is what GET /status returns.
type Status struct {
	// Revision is the revision being served ("" before the first
	// successful publish); ServedSince is when it was swapped in.
	Revision    string    `json:"revision"`
	ServedSince time.Time `json:"servedSince,omitzero"`
	// Classes maps each proxy class of the served revision to its
	// snapshot version ("<revision>/<hash>").
	Classes map[string]string `json:"classes,omitempty"`
	// LastAttempt is the most recent revision the control plane tried
	// to serve, successful or not.
	LastAttempt *Attempt `json:"lastAttempt,omitempty"`
	// Proxies are the xDS clients, connected or recently disconnected,
	// sorted by node id.
	Proxies []Proxy `json:"proxies"`
}

// Steps of the pipeline, in order. Fetch and export are the source's
// (reading a new revision; exporting a git commit into a directory);
// accept is the compiler's acceptance checks of what was compiled.
const (
	StepFetch   = "fetch"
	StepExport  = "export"
	StepLoad    = "load"
	StepVet     = "vet"
	StepCompile = "compile"
	StepAccept  = "accept"
	StepPublish = "publish"
)

// Attempt is one run of the pipeline for a revision.
type Attempt struct {
	Revision string    `json:"revision"`
	At       time.Time `json:"at"`
	// Step is the step that failed ("" when the attempt succeeded).
	Step string `json:"step,omitempty"`
	// Error is the failure as text, one problem per line, each starting
	// with file:line:column where known ("" when it succeeded).
	Error string `json:"error,omitempty"`
	// Problems is the failure as structured problems, when the failing
	// step reported positions (schema errors, policy findings).
	Problems []Problem `json:"problems,omitempty"`
}

// Problem is one error with its position in the mesh repository.
type Problem struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	// Path is the CUE path of the offending value, when known.
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// Transports of an xDS stream.
const (
	TransportSotW  = "sotw"
	TransportDelta = "delta"
)

// Proxy is one xDS client (an Envoy, or a proxyless gRPC client).
type Proxy struct {
	NodeID string `json:"nodeID"`
	// Class is the proxy class the node asked for ("<service>-<version>").
	Class     string `json:"class"`
	Transport string `json:"transport,omitempty"` // sotw | delta
	Connected bool   `json:"connected"`
	// ConnectedSince is when its current connection (its first stream)
	// opened; DisconnectedAt when its last stream closed.
	ConnectedSince time.Time `json:"connectedSince,omitzero"`
	DisconnectedAt time.Time `json:"disconnectedAt,omitzero"`
	// Version is the snapshot version the control plane serves to this
	// node; AckedVersion the last version the node has ACKed for every
	// type it subscribes to. InSync: AckedVersion == Version.
	Version      string `json:"version,omitempty"`
	AckedVersion string `json:"ackedVersion,omitempty"`
	InSync       bool   `json:"inSync"`
	// Acked is the last ACKed version per xDS type URL.
	Acked map[string]string `json:"acked,omitempty"`
	// LastNACK is the last rejection, if any (it stays after later ACKs;
	// compare its version with AckedVersion).
	LastNACK *NACK `json:"lastNACK,omitempty"`
	// CertExpiry is when the workload certificate expires, as reported
	// by the sidecar agent (zero when unknown).
	CertExpiry time.Time `json:"certExpiry,omitzero"`
	// Error is a problem with the node itself, e.g. an unknown class.
	Error string `json:"error,omitempty"`
}

// NACK is a response that a proxy rejected.
type NACK struct {
	Version string    `json:"version"`
	TypeURL string    `json:"typeURL"`
	At      time.Time `json:"at"`
	// Message is the proxy's error_detail message, verbatim.
	Message string `json:"message"`
	// Resource is the name of the resource the rejection is attributed
	// to, and Provenance where it was defined, when they can be told.
	Resource   string      `json:"resource,omitempty"`
	Provenance *Provenance `json:"provenance,omitempty"`
}

// Provenance is where a resource was defined.
type Provenance struct {
	Service  string `json:"service,omitempty"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Revision string `json:"revision,omitempty"`
}
