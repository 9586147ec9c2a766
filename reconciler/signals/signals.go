// Package signals reads the live golden signals of every edge of a mesh —
// requests per second, error percentage and p99 latency from one
// (service, version) to another — for the service map and `weft graph`.
// Two readers give the same Edge values: Prometheus, through its HTTP API
// with the PromQL of package compiler/monitoring, when one is configured;
// Proxies, straight from the proxies' stats endpoints
// (GET /stats/prometheus), when none is.
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
type Edge struct {
	Source, SourceVersion           string
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

// Key identifies an edge.
func (e Edge) Key() string {
	return e.Source + "/" + e.SourceVersion + " -> " + e.Destination + "/" + e.DestinationVersion
}

// Reader returns the edges of a mesh.
type Reader interface {
	Edges(ctx context.Context) ([]Edge, error)
}

// edgeLabels are the labels that make an edge.
var edgeLabels = []string{compiler.LabelSourceService, compiler.LabelSourceVersion, compiler.LabelDestService, compiler.LabelDestVersion}

func edgeOf(labels map[string]string) Edge {
	return Edge{
		Source: labels[compiler.LabelSourceService], SourceVersion: labels[compiler.LabelSourceVersion],
		Destination: labels[compiler.LabelDestService], DestinationVersion: labels[compiler.LabelDestVersion],
	}
}

func sortEdges(es []Edge) {
	sort.Slice(es, func(i, j int) bool { return es[i].Key() < es[j].Key() })
}

// onEdge reports whether a series of the per-request stats counts for an
// edge: as its caller saw it (reporter source), or as the destination saw
// a request from outside the mesh.
func onEdge(labels map[string]string) bool {
	switch labels[compiler.LabelReporter] {
	case compiler.ReporterSource:
		return true
	case compiler.ReporterDestination:
		return labels[compiler.LabelSourceService] == compiler.SourceOutside
	}
	return false
}

func errorf(format string, args ...any) error { return fmt.Errorf("signals: "+format, args...) }
