// Package monitoring turns a mesh model into what watches it: the PromQL
// of the golden signals per edge, a Grafana dashboard per service (built
// with the Grafana Foundation SDK) and Prometheus recording and alerting
// rules for each service's SLO (multiwindow, multi-burn-rate alerts, as in
// the Google SRE workbook, chapter "Alerting on SLOs"). Every query reads
// the per-request stats the compiler puts in every proxy
// (envoy_weft_requests_total, envoy_weft_request_duration_milliseconds;
// docs/observability.md has the labels).
//
// It is pure like the compiler: same model, same bytes. It imports
// schema/mesh and the compiler's names of weft, never reconciler, sidecar
// or cmd.
package monitoring

import (
	"fmt"
	"sort"
	"strings"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/schema/mesh"
)

// Prometheus names of the per-request stats (Envoy prefixes "envoy_" and
// turns '.' into '_').
const (
	RequestsMetric = "envoy_" + "weft_requests_total"
	DurationMetric = "envoy_" + "weft_request_duration_milliseconds"
)

// GRPCServerErrors are the gRPC status codes counted as server errors:
// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
// DATA_LOSS (gRPC's status code guide names them the server's failures;
// the others are the caller's).
var GRPCServerErrors = []string{"2", "4", "12", "13", "14", "15"}

// Selector is a set of label matchers, written in order.
type Selector []string

// Eq adds label="value".
func (s Selector) Eq(label, value string) Selector {
	return append(append(Selector(nil), s...), fmt.Sprintf("%s=%q", label, value))
}

// Re adds label=~"regex".
func (s Selector) Re(label, re string) Selector {
	return append(append(Selector(nil), s...), fmt.Sprintf("%s=~%q", label, re))
}

func (s Selector) String() string { return "{" + strings.Join(s, ", ") + "}" }

// Flow is a set of requests, as one or more selectors whose union it is
// (the selectors must select disjoint series).
type Flow []Selector

// Inbound are the requests a service's proxies received (reporter
// destination): from the mesh and from outside.
func Inbound(m *mesh.Model, s *mesh.Service) Flow {
	return Flow{base(m).Eq(compiler.LabelReporter, compiler.ReporterDestination).Eq(compiler.LabelDestService, s.Name)}
}

// Edge are the requests from one service to another, as the caller's
// proxies saw them (reporter source): also those its proxy answered itself
// (injected faults, no healthy endpoint).
func Edge(m *mesh.Model, from, to string) Flow {
	return Flow{base(m).Eq(compiler.LabelReporter, compiler.ReporterSource).
		Eq(compiler.LabelSourceService, from).Eq(compiler.LabelDestService, to)}
}

// Callers are the requests to a service from every mesh caller (reporter
// source).
func Callers(m *mesh.Model, s *mesh.Service) Flow {
	return Flow{base(m).Eq(compiler.LabelReporter, compiler.ReporterSource).Eq(compiler.LabelDestService, s.Name)}
}

// Served are all requests to a service, each counted once, where it is
// closest to its caller: mesh callers' requests at the caller (reporter
// source), requests from outside the mesh at the service (reporter
// destination, source_service "outside"). This is the SLI population.
func Served(m *mesh.Model, s *mesh.Service) Flow {
	return Flow{
		base(m).Eq(compiler.LabelReporter, compiler.ReporterSource).Eq(compiler.LabelDestService, s.Name),
		base(m).Eq(compiler.LabelReporter, compiler.ReporterDestination).Eq(compiler.LabelDestService, s.Name).
			Eq(compiler.LabelSourceService, compiler.SourceOutside),
	}
}

// MeshEdges are the requests of every edge of the mesh named name, each
// counted once: at the caller for mesh callers (reporter source), at the
// destination for requests from outside (source_service "outside").
func MeshEdges(name string) Flow {
	b := Selector{fmt.Sprintf("%s=%q", compiler.LabelMesh, name)}
	return Flow{
		b.Eq(compiler.LabelReporter, compiler.ReporterSource),
		b.Eq(compiler.LabelReporter, compiler.ReporterDestination).Eq(compiler.LabelSourceService, compiler.SourceOutside),
	}
}

func base(m *mesh.Model) Selector { return Selector{fmt.Sprintf("%s=%q", compiler.LabelMesh, m.Name)} }

// union writes f(selector) for every selector, joined with "or".
func (fl Flow) union(f func(Selector) string) string {
	parts := make([]string, len(fl))
	for i, s := range fl {
		parts[i] = f(s)
	}
	return strings.Join(parts, " or ")
}

// errorSelectors are the error requests of a selector: a 5xx answer, or a
// gRPC server error status.
func errorSelectors(s Selector) []Selector {
	return []Selector{
		s.Eq(compiler.LabelResponseCodeClass, "5xx"),
		s.Re(compiler.LabelGRPCStatus, strings.Join(GRPCServerErrors, "|")),
	}
}

func by(labels []string) string { return "sum by (" + strings.Join(labels, ", ") + ") " }

// Rate is the requests per second of a flow over window, by labels.
func (fl Flow) Rate(window string, labels ...string) string {
	return by(labels) + "(" + fl.union(func(s Selector) string {
		return fmt.Sprintf("rate(%s%s[%s])", RequestsMetric, s, window)
	}) + ")"
}

// ErrorRate is the error requests per second of a flow over window, by
// labels (absent when there was none).
func (fl Flow) ErrorRate(window string, labels ...string) string {
	var errs Flow
	for _, s := range fl {
		errs = append(errs, errorSelectors(s)...)
	}
	return errs.Rate(window, labels...)
}

// ErrorRatio is the share of error requests of a flow, 0 to 1, by labels;
// 0 (not absent) while requests flow without errors.
func (fl Flow) ErrorRatio(window string, labels ...string) string {
	total := fl.Rate(window, labels...)
	return fmt.Sprintf("(%s or %s * 0) / %s", fl.ErrorRate(window, labels...), total, total)
}

// Quantile is the q quantile (0.99) of the request duration of a flow in
// milliseconds, over window, by labels.
func (fl Flow) Quantile(q float64, window string, labels ...string) string {
	return fmt.Sprintf("histogram_quantile(%g, %s(%s))", q, by(append(append([]string(nil), labels...), "le")),
		fl.union(func(s Selector) string {
			return fmt.Sprintf("rate(%s_bucket%s[%s])", DurationMetric, s, window)
		}))
}

// SlowRatio is the share of requests of a flow that took longer than
// boundMs (a bucket bound), 0 to 1, by labels.
func (fl Flow) SlowRatio(boundMs float64, window string, labels ...string) string {
	le := fmt.Sprintf("%g", boundMs)
	within := by(labels) + "(" + fl.union(func(s Selector) string {
		return fmt.Sprintf("rate(%s_bucket%s[%s])", DurationMetric, s.Eq("le", le), window)
	}) + ")"
	all := by(labels) + "(" + fl.union(func(s Selector) string {
		return fmt.Sprintf("rate(%s_count%s[%s])", DurationMetric, s, window)
	}) + ")"
	return fmt.Sprintf("1 - %s / %s", within, all)
}

// dependencies are the services s calls, sorted, without duplicates.
func dependencies(s *mesh.Service) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range s.Calls {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}
