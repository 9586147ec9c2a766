package servicemap

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/compiler/graph"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/signals"
	"github.com/weft-dev/weft/schema/mesh"
)

// Outside is the id of the node of traffic from outside the mesh.
const Outside = graph.Outside

// Input is what a Graph is built from.
type Input struct {
	// Model is the served revision's model (nil: nothing served yet).
	Model *mesh.Model
	// Status is the control plane's status (nil: unknown).
	Status *status.Status
	// Edges are the live edges (signals readers with Inbound set).
	Edges   []signals.Edge
	Signals SignalsInfo
	// Thresholds (zero: DefaultThresholds) and the page's refresh period.
	Thresholds Thresholds
	Refresh    time.Duration
}

// Build builds the JSON of the map. It is pure: the same input gives the
// same Graph.
func Build(in Input) *Graph {
	th := in.Thresholds
	if th == (Thresholds{}) {
		th = DefaultThresholds
	}
	g := &Graph{Signals: in.Signals, RefreshSeconds: in.Refresh.Seconds(), Thresholds: th,
		Nodes: []Node{}, Edges: []Edge{}, Unwanted: []Unwanted{}}
	if st := in.Status; st != nil {
		g.Revision, g.ServedSince = st.Revision, st.ServedSince
		if a := st.LastAttempt; a != nil && a.Error != "" {
			g.LastFailure = &Failure{Revision: a.Revision, At: a.At, Step: a.Step, Error: a.Error}
		}
	}
	m := in.Model
	if m == nil {
		return g
	}
	g.Mesh, g.Environment = m.Name, m.Environment
	if g.Revision == "" {
		g.Revision = m.Revision
	}
	dg := graph.Of(m)
	c := classify(m, dg, in.Edges)
	for _, e := range dg.Edges {
		g.Edges = append(g.Edges, declaredEdge(m, e, c.declared[edgeID(e)], th))
	}
	g.Unwanted = c.unwanted
	needOutside := dg.HasIngress()
	for _, u := range g.Unwanted {
		needOutside = needOutside || u.From == Outside
	}
	if needOutside {
		g.Nodes = append(g.Nodes, Node{ID: Outside, Outside: true})
	}
	for _, name := range m.ServiceNames() {
		g.Nodes = append(g.Nodes, serviceNode(m, dg, m.Services[name], in.Status))
	}
	g.Width, g.Height = layout(g.Nodes, g.Edges)
	return g
}

// edgeID is the id of a declared edge.
func edgeID(e graph.Edge) string {
	id := e.From + "->" + e.To
	if e.Kind == graph.KindMirror {
		id += "/mirror"
		if e.Route != "" {
			id += "/" + e.Route
		}
	}
	return id
}

// classified is the live edges sorted into the declared edges (by id,
// per version pair) and the unwanted connections.
type classified struct {
	declared map[string][]VersionSignals
	unwanted []Unwanted
}

// classify sorts every live edge:
//
//   - reported by a caller (Source a service): a declared call when the
//     destination is in its calls; no route when Envoy found none (no
//     destination); an undeclared call otherwise;
//   - from outside: the ingress of an edge service, else unwanted;
//   - reported by a destination for a mesh caller (Inbound): skipped
//     when a service of that identity calls the destination (its own
//     report counts it); counted on the mirror edge when the identity's
//     services call a service whose routes mirror to it; else an
//     undeclared caller, or an unknown identity.
func classify(m *mesh.Model, dg *graph.Graph, edges []signals.Edge) classified {
	c := classified{declared: map[string][]VersionSignals{}}
	calls := map[string]bool{}
	for _, e := range dg.Edges {
		if e.Kind == graph.KindCalls {
			calls[e.From+"->"+e.To] = true
		}
	}
	byIdentity := map[string][]string{}
	for _, name := range m.ServiceNames() {
		id := m.SPIFFEID(m.Services[name])
		byIdentity[id] = append(byIdentity[id], name)
	}
	unwanted := map[string]*unwantedAcc{}
	addUnwanted := func(kind, from, principal, to string, e signals.Edge) {
		id := kind + ":" + from + "->" + to
		if principal != "" && from == "" {
			id = kind + ":" + principal + "->" + to
		}
		u := unwanted[id]
		if u == nil {
			u = &unwantedAcc{Unwanted: Unwanted{ID: id, Kind: kind, From: from, Principal: principal, To: to}}
			unwanted[id] = u
		}
		u.add(e)
	}
	for _, e := range edges {
		vs := VersionSignals{SourceVersion: e.SourceVersion, DestinationVersion: e.DestinationVersion, Signals: signalsOf(e)}
		switch {
		case e.Inbound():
			names := byIdentity[e.SourcePrincipal]
			switch {
			case len(names) == 0:
				addUnwanted(UnwantedUnknownIdentity, "", e.SourcePrincipal, e.Destination, e)
			case anyCalls(names, e.Destination, calls):
				// counted by the caller
			default:
				if id, ok := mirrorEdge(dg, names, e.Destination); ok {
					vs.SourceVersion = ""
					c.declared[id] = append(c.declared[id], vs)
				} else {
					addUnwanted(UnwantedUndeclaredCaller, strings.Join(names, ", "), e.SourcePrincipal, e.Destination, e)
				}
			}
		case e.Source == Outside:
			if s := m.Services[e.Destination]; s != nil && s.Edge {
				id := Outside + "->" + e.Destination
				c.declared[id] = append(c.declared[id], vs)
			} else {
				addUnwanted(UnwantedOutside, Outside, "", e.Destination, e)
			}
		case e.Destination == "":
			addUnwanted(UnwantedNoRoute, e.Source, "", "", e)
		case calls[e.Source+"->"+e.Destination]:
			id := e.Source + "->" + e.Destination
			c.declared[id] = append(c.declared[id], vs)
		default:
			addUnwanted(UnwantedUndeclaredCall, e.Source, "", e.Destination, e)
		}
	}
	for _, id := range mesh.SortedKeys(unwanted) {
		u := unwanted[id]
		u.Signals = u.total()
		u.Explanation = explain(m, u.Unwanted)
		c.unwanted = append(c.unwanted, u.Unwanted)
	}
	return c
}

func anyCalls(names []string, to string, calls map[string]bool) bool {
	for _, n := range names {
		if calls[n+"->"+to] {
			return true
		}
	}
	return false
}

// mirrorEdge finds the mirror edge that explains requests from the
// identity of names to dest: a service those names call mirrors to dest.
func mirrorEdge(dg *graph.Graph, names []string, dest string) (string, bool) {
	for _, e := range dg.Edges {
		if e.Kind != graph.KindMirror || e.To != dest {
			continue
		}
		for _, n := range names {
			if n == e.From || slices.Contains(dg.Callers(e.From), n) {
				return edgeID(e), true
			}
		}
	}
	return "", false
}

// explain says what an unwanted connection is, in words.
func explain(m *mesh.Model, u Unwanted) string {
	switch u.Kind {
	case UnwantedNoRoute:
		return fmt.Sprintf("the app of %s asked its proxy for a host that is not in its calls; no route matched (Envoy answers 404)", u.From)
	case UnwantedUndeclaredCall:
		return fmt.Sprintf("the proxy of %s routed requests to %s, which is not in its calls (a proxy still holding an older revision?)", u.From, u.To)
	case UnwantedUndeclaredCaller:
		why := "its authz denies them (403) unless an allow rule names the caller"
		if s := m.Services[u.To]; s != nil && s.Authz != nil && s.Authz.AllowSet {
			why = "its authz.allow decides"
		}
		return fmt.Sprintf("requests with the certificate of %s reached the inbound side of %s directly: %s does not call %s; %s", u.From, u.To, u.From, u.To, why)
	case UnwantedUnknownIdentity:
		return fmt.Sprintf("requests with a mesh certificate of %s, which is no service of this revision, reached %s", u.Principal, u.To)
	case UnwantedOutside:
		return fmt.Sprintf("requests without a mesh certificate reached %s, which is not an edge service (it accepts plaintext: mtls %s)", u.To, mtlsOf(m, u.To))
	}
	return ""
}

func mtlsOf(m *mesh.Model, name string) string {
	if s := m.Services[name]; s != nil && s.MTLS != "" {
		return string(s.MTLS)
	}
	return string(m.Defaults.MTLS)
}

type unwantedAcc struct {
	Unwanted
	parts []Signals
}

func (u *unwantedAcc) add(e signals.Edge) { u.parts = append(u.parts, signalsOf(e)) }

func (u *unwantedAcc) total() Signals { return sum(u.parts) }

func signalsOf(e signals.Edge) Signals {
	return Signals{RequestsPerSecond: e.RequestsPerSecond, ErrorPercent: e.ErrorPercent, P99Ms: ms(e.P99)}
}

// sum adds flows: rates add up, the error percentage is weighted by
// rate, and the p99 is the largest of the parts' (an upper bound of the
// p99 of their union; percentiles do not add up).
func sum(parts []Signals) Signals {
	var s Signals
	var errs float64
	for _, p := range parts {
		s.RequestsPerSecond += p.RequestsPerSecond
		errs += p.RequestsPerSecond * p.ErrorPercent
		s.P99Ms = math.Max(s.P99Ms, p.P99Ms)
	}
	if s.RequestsPerSecond > 0 {
		s.ErrorPercent = errs / s.RequestsPerSecond
	}
	return round(s)
}

func round(s Signals) Signals {
	r := func(v, unit float64) float64 { return math.Round(v/unit) * unit }
	return Signals{RequestsPerSecond: r(s.RequestsPerSecond, 0.01), ErrorPercent: r(s.ErrorPercent, 0.01), P99Ms: r(s.P99Ms, 0.1)}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// declaredEdge is a declared edge with its traffic and health.
func declaredEdge(m *mesh.Model, e graph.Edge, parts []VersionSignals, th Thresholds) Edge {
	out := Edge{ID: edgeID(e), From: e.From, To: e.To, Kind: e.Kind, Label: e.Label(), ByVersion: []VersionSignals{}}
	sort.Slice(parts, func(i, j int) bool {
		return cmp.Or(cmp.Compare(parts[i].SourceVersion, parts[j].SourceVersion),
			cmp.Compare(parts[i].DestinationVersion, parts[j].DestinationVersion)) < 0
	})
	sigs := make([]Signals, len(parts))
	for i, p := range parts {
		p.Signals = round(p.Signals)
		out.ByVersion = append(out.ByVersion, p)
		sigs[i] = p.Signals
	}
	out.Signals = sum(sigs)
	out.ErrorThreshold, out.ThresholdFrom = th.DefaultErrorPercent, "default"
	if s := m.Services[e.To]; s != nil && s.SLO != nil {
		if s.SLO.Availability > 0 {
			out.ErrorThreshold, out.ThresholdFrom = math.Round((100-s.SLO.Availability)*1e4)/1e4, "slo"
		}
		if s.SLO.Latency != nil && s.SLO.Latency.P99 != nil {
			out.LatencyBoundMs = ms(s.SLO.Latency.P99.Duration)
		}
	}
	out.Health, out.Reason = health(out, th)
	return out
}

// health applies the thresholds (see the package documentation).
func health(e Edge, th Thresholds) (string, string) {
	if e.RequestsPerSecond == 0 {
		return HealthIdle, ""
	}
	budget := "the default threshold"
	if e.ThresholdFrom == "slo" {
		budget = "the error budget of the SLO of " + e.To
	}
	switch {
	case e.ErrorPercent > e.ErrorThreshold:
		return HealthFailing, fmt.Sprintf("%.2f%% errors, over %s (%g%%)", e.ErrorPercent, budget, e.ErrorThreshold)
	case e.LatencyBoundMs > 0 && e.P99Ms > e.LatencyBoundMs:
		return HealthFailing, fmt.Sprintf("p99 %.1f ms, over the p99 objective of %s (%g ms)", e.P99Ms, e.To, e.LatencyBoundMs)
	case e.ErrorPercent > th.DegradedShare*e.ErrorThreshold:
		return HealthDegraded, fmt.Sprintf("%.2f%% errors, over %g%% of %s (%g%%)", e.ErrorPercent, 100*th.DegradedShare, budget, e.ErrorThreshold)
	}
	return HealthHealthy, ""
}

// serviceNode is a service's node, without its position.
func serviceNode(m *mesh.Model, dg *graph.Graph, s *mesh.Service, st *status.Status) Node {
	n := Node{ID: s.Name, Namespace: s.Namespace, Identity: m.SPIFFEID(s), Edge: s.Edge, MTLS: mtlsOf(m, s.Name),
		Callers: dg.Callers(s.Name)}
	for _, e := range dg.Edges {
		if e.From == s.Name && e.Kind == graph.KindCalls {
			n.Calls = append(n.Calls, e.To)
		}
	}
	for _, p := range s.PortList() {
		n.Ports = append(n.Ports, Port{Name: p.Name, Port: p.Port, Protocol: string(p.Protocol)})
	}
	for _, v := range s.VersionNames() {
		ver := s.Versions[v]
		n.Versions = append(n.Versions, Version{Name: v, Labels: ver.Labels, Replicas: ver.Replicas})
	}
	for _, r := range s.Routes {
		n.Routes = append(n.Routes, route(r))
	}
	n.Authz = authz(m, s)
	if s.SLO != nil {
		n.SLO = &SLO{Availability: s.SLO.Availability}
		if s.SLO.Latency != nil && s.SLO.Latency.P99 != nil {
			n.SLO.LatencyP99Ms = ms(s.SLO.Latency.P99.Duration)
		}
	}
	if st != nil {
		n.Proxies, n.NACKs = proxiesOf(s, st)
	}
	return n
}

func route(r mesh.Route) Route {
	out := Route{Name: r.Name, Match: matchText(r.Match)}
	for _, v := range mesh.SortedKeys(r.To) {
		out.To = append(out.To, Weight{Version: v, Percent: r.To[v]})
	}
	if r.Timeout != nil {
		out.Timeout = r.Timeout.String()
	}
	if r.Retries != nil {
		n := r.Retries.Attempts
		out.Retries = &n
	}
	if f := r.Fault; f != nil {
		var parts []string
		if f.Delay != nil {
			parts = append(parts, fmt.Sprintf("delay %g%% by %s", f.Delay.Percent, f.Delay.Duration))
		}
		if f.Abort != nil {
			parts = append(parts, fmt.Sprintf("abort %g%% with %d", f.Abort.Percent, f.Abort.Status))
		}
		out.Fault = strings.Join(parts, ", ")
	}
	if mr := r.Mirror; mr != nil {
		out.Mirror = fmt.Sprintf("%g%% to %s", mr.Percent, mr.To)
		if mr.Version != "" {
			out.Mirror += " " + mr.Version
		}
	}
	return out
}

// matchText writes a match in words.
func matchText(m mesh.Match) string {
	var parts []string
	str := func(sm mesh.StringMatch) string {
		switch {
		case sm.Exact != nil:
			return "exact " + *sm.Exact
		case sm.Prefix != nil:
			return "prefix " + *sm.Prefix
		case sm.Regex != nil:
			return "regex " + *sm.Regex
		case sm.Present != nil && *sm.Present:
			return "present"
		case sm.Present != nil:
			return "absent"
		}
		return "any"
	}
	if m.Path != nil {
		parts = append(parts, "path "+str(*m.Path))
	}
	for _, h := range mesh.SortedKeys(m.Headers) {
		parts = append(parts, "header "+h+" "+str(m.Headers[h]))
	}
	if len(m.Methods) > 0 {
		parts = append(parts, "methods "+strings.Join(m.Methods, ", "))
	}
	if len(parts) == 0 {
		return "every request"
	}
	return strings.Join(parts, "; ")
}

func authz(m *mesh.Model, s *mesh.Service) *Authz {
	a := &Authz{}
	rules := func(rs []mesh.AuthzRule) []AuthzRule {
		var out []AuthzRule
		for _, r := range rs {
			out = append(out, AuthzRule{From: r.From, Methods: r.Methods, Paths: r.Paths})
		}
		return out
	}
	if s.Authz != nil {
		a.Allow, a.Deny = rules(s.Authz.Allow), rules(s.Authz.Deny)
	}
	if s.Authz == nil || !s.Authz.AllowSet {
		a.Default = "allows the services that call it (calls) and those whose dependencies mirror to it, by SPIFFE id"
		if s.Edge || mtlsOf(m, s.Name) != string(mesh.MTLSStrict) {
			a.Default += "; on its plaintext chain, any peer"
		}
	} else if len(s.Authz.Allow) == 0 {
		a.Default = "allow is empty: nobody is allowed"
	}
	return a
}

// proxiesOf are the proxies of a service's classes and their NACKs
// (newest first), with the failed rollout's NACK when it names the
// service.
func proxiesOf(s *mesh.Service, st *status.Status) ([]Proxy, []NACK) {
	classes := map[string]bool{}
	for _, v := range s.VersionNames() {
		classes[compiler.ClassName(s.Name, v)] = true
	}
	var ps []Proxy
	var ns []NACK
	seen := map[string]bool{}
	addNACK := func(nodeID string, n *status.NACK) {
		key := nodeID + "|" + n.Version + "|" + n.TypeURL + "|" + n.At.String()
		if seen[key] {
			return
		}
		seen[key] = true
		x := NACK{NodeID: nodeID, Version: n.Version, Type: shortType(n.TypeURL), At: n.At, Reason: n.Reason, Resource: n.Resource}
		if x.Reason == "" {
			x.Reason = n.Message
		}
		if p := n.Provenance; p != nil && p.File != "" {
			x.Where = fmt.Sprintf("%s:%d", p.File, p.Line)
		}
		ns = append(ns, x)
	}
	for _, p := range st.Proxies {
		if !classes[p.Class] {
			continue
		}
		ps = append(ps, Proxy{NodeID: p.NodeID, Class: p.Class, Connected: p.Connected, InSync: p.InSync, AckedVersion: p.AckedVersion, Error: p.Error})
		if p.LastNACK != nil {
			addNACK(p.NodeID, p.LastNACK)
		}
	}
	if a := st.LastAttempt; a != nil && a.NACK != nil && a.NACK.Provenance != nil && a.NACK.Provenance.Service == s.Name {
		addNACK(a.NACK.NodeID, a.NACK)
	}
	sort.SliceStable(ns, func(i, j int) bool {
		if !ns[i].At.Equal(ns[j].At) {
			return ns[i].At.After(ns[j].At)
		}
		return ns[i].NodeID < ns[j].NodeID
	})
	return ps, ns
}

func shortType(t string) string {
	if i := strings.LastIndex(t, "."); i >= 0 {
		return t[i+1:]
	}
	return t
}
