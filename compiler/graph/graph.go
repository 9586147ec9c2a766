package graph

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/schema/mesh"
)

// Outside is the node of the traffic from outside the mesh (the value of
// the source_service label on such requests).
const Outside = compiler.SourceOutside

// Kinds of edges.
const (
	// KindCalls is a dependency written in the caller's calls.
	KindCalls = "calls"
	// KindMirror is a copy of requests that a route of From mirrors to
	// To (sent by the proxies of From's callers, with their identity).
	KindMirror = "mirror"
	// KindIngress is traffic from outside the mesh (From is Outside)
	// into an edge service.
	KindIngress = "ingress"
)

// Graph is the declared graph of one model.
type Graph struct {
	Mesh string `json:"mesh"`
	// Environment is the overlay unified with the base ("" for the base).
	Environment string `json:"environment,omitempty"`
	// Services are sorted by name; Edges by From, To, Kind, Route.
	Services []Service `json:"services"`
	Edges    []Edge    `json:"edges"`
}

// Service is one node.
type Service struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Identity is the SPIFFE id of its workloads.
	Identity string `json:"identity"`
	// Edge services receive traffic from outside the mesh.
	Edge     bool     `json:"edge,omitempty"`
	Versions []string `json:"versions"`
	// Splits are the routes that name their versions (a "to"), in
	// precedence order.
	Splits []Split `json:"splits,omitempty"`
}

// Split is the weights of one route's versions.
type Split struct {
	Route   string   `json:"route"`
	Weights []Weight `json:"weights"`
}

// Weight is a version's share of a route's requests, in percent.
type Weight struct {
	Version string `json:"version"`
	Percent int    `json:"percent"`
}

// Edge is one allowed flow of requests.
type Edge struct {
	From string `json:"from"`
	To   string `json:"to"`
	Kind string `json:"kind"`
	// Route, Version and Percent describe a mirror: the route of From
	// that mirrors, the version of To it targets ("" for all) and the
	// share of requests copied.
	Route   string  `json:"route,omitempty"`
	Version string  `json:"version,omitempty"`
	Percent float64 `json:"percent,omitempty"`
}

// Key identifies an edge within a graph.
func (e Edge) Key() string {
	k := e.From + " -> " + e.To + " (" + e.Kind
	if e.Route != "" {
		k += " " + e.Route
	}
	return k + ")"
}

// Label is a short description for a drawing ("" for a plain call).
func (e Edge) Label() string {
	switch e.Kind {
	case KindMirror:
		l := fmt.Sprintf("mirror %s%% of %s", formatPercent(e.Percent), e.Route)
		if e.Version != "" {
			l += " to " + e.Version
		}
		return l
	}
	return ""
}

// Of builds the graph of a model.
func Of(m *mesh.Model) *Graph {
	g := &Graph{Mesh: m.Name, Environment: m.Environment, Services: []Service{}, Edges: []Edge{}}
	for _, name := range m.ServiceNames() {
		s := m.Services[name]
		n := Service{Name: name, Namespace: s.Namespace, Identity: m.SPIFFEID(s), Edge: s.Edge, Versions: s.VersionNames()}
		for _, r := range s.Routes {
			if len(r.To) > 0 {
				sp := Split{Route: r.Name}
				for _, v := range mesh.SortedKeys(r.To) {
					sp.Weights = append(sp.Weights, Weight{Version: v, Percent: r.To[v]})
				}
				n.Splits = append(n.Splits, sp)
			}
			if r.Mirror != nil {
				g.Edges = append(g.Edges, Edge{From: name, To: r.Mirror.To, Kind: KindMirror,
					Route: r.Name, Version: r.Mirror.Version, Percent: r.Mirror.Percent})
			}
		}
		g.Services = append(g.Services, n)
		if s.Edge {
			g.Edges = append(g.Edges, Edge{From: Outside, To: name, Kind: KindIngress})
		}
		seen := map[string]bool{}
		for _, c := range s.Calls {
			if !seen[c] {
				seen[c] = true
				g.Edges = append(g.Edges, Edge{From: name, To: c, Kind: KindCalls})
			}
		}
	}
	sortEdges(g.Edges)
	return g
}

func sortEdges(es []Edge) { slices.SortFunc(es, compareEdges) }

// compareEdges orders edges by From, To, Kind, Route.
func compareEdges(a, b Edge) int {
	return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Route, b.Route))
}

// Service returns the service named name, or nil.
func (g *Graph) Service(name string) *Service {
	for i := range g.Services {
		if g.Services[i].Name == name {
			return &g.Services[i]
		}
	}
	return nil
}

// HasIngress reports whether some service receives traffic from outside.
func (g *Graph) HasIngress() bool {
	for _, e := range g.Edges {
		if e.Kind == KindIngress {
			return true
		}
	}
	return false
}

// Callers are the services with an edge of kind calls to name, sorted.
func (g *Graph) Callers(name string) []string {
	var out []string
	for _, e := range g.Edges {
		if e.To == name && e.Kind == KindCalls {
			out = append(out, e.From)
		}
	}
	return out
}

// Diff is what an environment changes compared with the base.
type Diff struct {
	AddedServices   []string      `json:"addedServices,omitempty"`
	RemovedServices []string      `json:"removedServices,omitempty"`
	AddedEdges      []Edge        `json:"addedEdges,omitempty"`
	RemovedEdges    []Edge        `json:"removedEdges,omitempty"`
	ChangedSplits   []SplitChange `json:"changedSplits,omitempty"`
}

// SplitChange is a route whose weights differ: Base or Env is nil when
// the route has no "to" there (or does not exist).
type SplitChange struct {
	Service string   `json:"service"`
	Route   string   `json:"route"`
	Base    []Weight `json:"base"`
	Env     []Weight `json:"env"`
}

// Empty reports whether the environment changes nothing of the graph.
func (d Diff) Empty() bool {
	return len(d.AddedServices)+len(d.RemovedServices)+len(d.AddedEdges)+len(d.RemovedEdges)+len(d.ChangedSplits) == 0
}

// Compare returns what env changes compared with base.
func Compare(base, env *Graph) Diff {
	var d Diff
	for _, s := range env.Services {
		if base.Service(s.Name) == nil {
			d.AddedServices = append(d.AddedServices, s.Name)
		}
	}
	for _, s := range base.Services {
		if env.Service(s.Name) == nil {
			d.RemovedServices = append(d.RemovedServices, s.Name)
		}
	}
	d.AddedEdges = edgesNotIn(env.Edges, base.Edges)
	d.RemovedEdges = edgesNotIn(base.Edges, env.Edges)
	for _, s := range env.Services {
		b := base.Service(s.Name)
		if b == nil {
			continue
		}
		routes := map[string]bool{}
		for _, sp := range append(slices.Clone(b.Splits), s.Splits...) {
			routes[sp.Route] = true
		}
		for _, r := range mesh.SortedKeys(routes) {
			bw, ew := b.split(r), s.split(r)
			if !slices.Equal(bw, ew) {
				d.ChangedSplits = append(d.ChangedSplits, SplitChange{Service: s.Name, Route: r, Base: bw, Env: ew})
			}
		}
	}
	return d
}

func (s *Service) split(route string) []Weight {
	for _, sp := range s.Splits {
		if sp.Route == route {
			return sp.Weights
		}
	}
	return nil
}

func edgesNotIn(a, b []Edge) []Edge {
	in := map[string]bool{}
	for _, e := range b {
		in[e.Key()] = true
	}
	var out []Edge
	for _, e := range a {
		if !in[e.Key()] {
			out = append(out, e)
		}
	}
	return out
}

// FormatWeights writes weights as "v1 80% · v2 20%" ("none" when empty).
func FormatWeights(ws []Weight) string {
	if len(ws) == 0 {
		return "none"
	}
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%s %d%%", w.Version, w.Percent)
	}
	return strings.Join(parts, " · ")
}

func formatPercent(p float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", p), "0"), ".")
}
