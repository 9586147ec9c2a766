// Package status holds the JSON types of the control plane's status
// endpoint (GET /status, served by package reconciler/xds). `weft status`
// decodes them without importing the server. Types only: no logic, no
// weft imports, so the CLI and the sidecar may use it freely.
package status

import "time"

// Status is what GET /status returns.
//
// Revisions follow Flux's vocabulary: the last attempted revision is the
// last one the control plane tried; a revision that passed every step is
// served and rolled out to the proxies (Rollout) until every connected
// proxy has ACKed it, and is then the last applied revision. If a proxy
// rejects (NACKs) a revision while it rolls out, every proxy is served the
// last applied revision again and the attempt fails at step "rollout".
type Status struct {
	// Revision is the revision being served ("" before the first
	// successful publish, or after the first revision was rejected by a
	// proxy); ServedSince is when it was swapped in (or rolled back to).
	Revision    string    `json:"revision"`
	ServedSince time.Time `json:"servedSince,omitzero"`
	// Rollout is set while Revision is served but not yet ACKed by every
	// connected proxy: the revision is being rolled out.
	Rollout *Rollout `json:"rollout,omitempty"`
	// LastAppliedRevision is the last revision that every connected
	// proxy ACKed (Flux's lastAppliedRevision), at LastAppliedAt: the
	// revision a rejected rollout falls back to.
	LastAppliedRevision string    `json:"lastAppliedRevision,omitempty"`
	LastAppliedAt       time.Time `json:"lastAppliedAt,omitzero"`
	// LastAttemptedRevision is the last revision the control plane tried
	// to serve (Flux's lastAttemptedRevision); LastAttempt says how it
	// went.
	LastAttemptedRevision string `json:"lastAttemptedRevision,omitempty"`
	// Classes maps each proxy class of the served revision to its
	// snapshot version ("<revision>/<hash>").
	Classes map[string]string `json:"classes,omitempty"`
	// LastAttempt is the most recent revision the control plane tried
	// to serve, successful or not.
	LastAttempt *Attempt `json:"lastAttempt,omitempty"`
	// Proxies are the xDS clients, connected or recently disconnected,
	// sorted by node id.
	Proxies []Proxy `json:"proxies"`
	// RefusedStreams are the xDS streams refused because the client's
	// certificate does not own the node or class it claimed, newest
	// first (at most 32; repeats are counted).
	RefusedStreams []RefusedStream `json:"refusedStreams,omitempty"`
}

// Rollout is a served revision that not every connected proxy has ACKed
// yet.
type Rollout struct {
	Revision string    `json:"revision"`
	Since    time.Time `json:"since"`
	// Waiting are the node ids of the connected proxies that have not
	// ACKed it yet, sorted (at most 20; WaitingCount counts them all).
	Waiting      []string `json:"waiting,omitempty"`
	WaitingCount int      `json:"waitingCount"`
}

// Steps of the pipeline, in order. Fetch and export are the source's
// (reading a new revision; exporting a git commit into a directory);
// accept is the compiler's acceptance checks of what was compiled;
// rollout is the serving of a published revision to the proxies: it
// fails when a proxy NACKs it.
const (
	StepFetch   = "fetch"
	StepExport  = "export"
	StepLoad    = "load"
	StepVet     = "vet"
	StepCompile = "compile"
	StepAccept  = "accept"
	StepPublish = "publish"
	StepRollout = "rollout"
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
	// step reported positions (schema errors, policy findings, the
	// definition of a value a proxy rejected).
	Problems []Problem `json:"problems,omitempty"`
	// NACK is the rejection that failed a rollout (step "rollout"), with
	// the proxy that sent it; RolledBackTo is the revision every proxy
	// was served again ("" when no earlier revision had been applied:
	// nothing new is then served until a revision is accepted).
	NACK         *NACK  `json:"nack,omitempty"`
	RolledBackTo string `json:"rolledBackTo,omitempty"`
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
	// Identity is the SPIFFE id of the client certificate its streams
	// presented, as the TLS handshake verified it ("" without mTLS).
	Identity  string `json:"identity,omitempty"`
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
	// NodeID is the proxy that rejected it (set where the NACK is not
	// already under its proxy, e.g. Attempt.NACK).
	NodeID  string    `json:"nodeID,omitempty"`
	Version string    `json:"version"`
	TypeURL string    `json:"typeURL"`
	At      time.Time `json:"at"`
	// Reason is what is wrong, in a line or two: the innermost cause of
	// Envoy's message, without its dump of the resource. When Envoy's
	// message was cut (Envoy sends at most 4 KB, and puts the resource
	// before the reason) the reason is the control plane's own
	// validation of the rejected resource, and says so.
	Reason string `json:"reason,omitempty"`
	// Message is the proxy's error_detail message, verbatim up to 16 KiB
	// (MessageBytes is its full length when it was longer).
	Message      string `json:"message"`
	MessageBytes int    `json:"messageBytes,omitempty"`
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

// RefusedStream is an xDS stream the control plane refused because the
// client's verified identity may not be the node or class it claimed.
type RefusedStream struct {
	// At is the last refusal; Count how many streams of the same
	// identity, claim and reason were refused (since the first, First).
	At    time.Time `json:"at"`
	First time.Time `json:"first"`
	Count int       `json:"count"`
	// Identity is the SPIFFE id of the verified client certificate (""
	// when there was none); Address the client's address.
	Identity string `json:"identity,omitempty"`
	Address  string `json:"address,omitempty"`
	// NodeID and Class are what the stream claimed (node.id, and
	// node.cluster or the weft.class metadata).
	NodeID string `json:"nodeID,omitempty"`
	Class  string `json:"class,omitempty"`
	Reason string `json:"reason"`
}

// ProxyCounts counts the connected proxies, those of them in sync with
// the version they are served, and those whose last response to the
// version they are served was a NACK (and are not in sync).
func (s Status) ProxyCounts() (connected, inSync, nacking int) {
	for _, p := range s.Proxies {
		if !p.Connected {
			continue
		}
		connected++
		if p.InSync {
			inSync++
		}
		if p.LastNACK != nil && p.LastNACK.Version == p.Version && !p.InSync {
			nacking++
		}
	}
	return connected, inSync, nacking
}
