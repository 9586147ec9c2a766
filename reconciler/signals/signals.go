// Package signals reads the live golden signals of every edge of a mesh —
// requests per second, error percentage and p99 latency from one
// (service, version) to another — for the service map and `weft graph`.
// Two readers give the same Edge values: Prometheus, through its HTTP API
// with the PromQL of package compiler/monitoring, when one is configured;
// Proxies, straight from the proxies' stats endpoints
// (GET /stats/prometheus), when none is. With Inbound, both also return
// the destinations' records of mesh callers by SPIFFE id (Edge.Inbound),
// which the service map needs to see undeclared callers; Proxies.Window
// fixes the span its numbers cover whatever the pace of its callers.
//
// It imports compiler (label names) and compiler/monitoring (queries) of
// weft, never the xDS server or the sidecar.
package signals

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/weft-dev/weft/compiler"
)

// Edge is the traffic of one edge over the reader's window. Edge traffic
// from outside the mesh has Source "outside" and no SourceVersion.
//
// Readers with Inbound set also return the mesh requests as their
// destinations saw them (reporter destination, the mTLS filter chain):
// those edges have no Source nor SourceVersion, and SourcePrincipal is the
// caller's SPIFFE id from its certificate (the inbound side knows no
// more). They duplicate what the callers reported for the requests their
// proxies sent, and are the only record of requests that reached a
// service's inbound without going through the caller's outbound listener
// (a workload calling another's address directly with a mesh certificate,
// the copies a mirror sends).
type Edge struct {
	Source, SourceVersion           string
	SourcePrincipal                 string
	Destination, DestinationVersion string
	// RequestsPerSecond over the window.
	RequestsPerSecond float64
	// ErrorPercent is the share of 5xx answers and gRPC server errors,
	// 0 to 100 (0 without requests).
	ErrorPercent float64
	// P99 is the 99th percentile of the request duration (0 when there
	// were no requests), interpolated within its histogram bucket like
	// PromQL's histogram_quantile.
	P99 time.Duration
}

// Key identifies an edge: "source/version -> destination/version", the
// source written "principal <SPIFFE id>" on an inbound edge.
func (e Edge) Key() string {
	src := e.Source + "/" + e.SourceVersion
	if e.SourcePrincipal != "" {
		src = "principal " + e.SourcePrincipal
	}
	return src + " -> " + e.Destination + "/" + e.DestinationVersion
}

// Inbound reports whether the destination reported the edge for a mesh
// caller (SourcePrincipal set).
func (e Edge) Inbound() bool { return e.SourcePrincipal != "" }

// Reader returns the edges of a mesh.
type Reader interface {
	Edges(ctx context.Context) ([]Edge, error)
}

// edgeLabels are the labels that make an edge.
var edgeLabels = []string{compiler.LabelSourceService, compiler.LabelSourceVersion, compiler.LabelDestService, compiler.LabelDestVersion}

// inboundLabels are the labels of an inbound edge.
var inboundLabels = []string{compiler.LabelReporter, compiler.LabelSourcePrincipal, compiler.LabelDestService, compiler.LabelDestVersion}

func edgeOf(labels map[string]string) Edge {
	e := Edge{
		Source: labels[compiler.LabelSourceService], SourceVersion: labels[compiler.LabelSourceVersion],
		Destination: labels[compiler.LabelDestService], DestinationVersion: labels[compiler.LabelDestVersion],
	}
	if inboundMesh(labels) {
		e.SourcePrincipal = labels[compiler.LabelSourcePrincipal]
		if e.SourcePrincipal == "" {
			e.SourcePrincipal = UnknownPrincipal
		}
	}
	return e
}

// UnknownPrincipal is the SourcePrincipal of an inbound edge whose peer
// certificate carried no URI SAN.
const UnknownPrincipal = "unknown"

// inboundMesh reports whether a series counts requests a destination
// received from a mesh caller (reporter destination, no source_service:
// the mTLS chain).
func inboundMesh(labels map[string]string) bool {
	return labels[compiler.LabelReporter] == compiler.ReporterDestination && labels[compiler.LabelSourceService] == ""
}

func sortEdges(es []Edge) {
	sort.Slice(es, func(i, j int) bool { return es[i].Key() < es[j].Key() })
}

// onEdge reports whether a series of the per-request stats counts for an
// edge: as its caller saw it (reporter source), or as the destination saw
// a request from outside the mesh; with inbound, also as the destination
// saw a mesh caller's request.
func onEdge(labels map[string]string, inbound bool) bool {
	switch labels[compiler.LabelReporter] {
	case compiler.ReporterSource:
		return true
	case compiler.ReporterDestination:
		return labels[compiler.LabelSourceService] == compiler.SourceOutside || inbound && inboundMesh(labels)
	}
	return false
}

func errorf(format string, args ...any) error { return fmt.Errorf("signals: "+format, args...) }
