package xds

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/schema"
)

// Publish swaps in revision rev: every class of res, for every node. All
// snapshots (every class, and every connected node's variant) are built
// and checked first; if any fails, nothing served changes and the error is
// returned (and recorded as the last attempt, step "publish").
func (s *Server) Publish(rev string, res *compiler.Result) error {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	err := s.publish(rev, res)
	if err != nil {
		s.RecordFailure(rev, status.StepPublish, err)
	}
	return err
}

type nodePlan struct {
	n       *node
	class   *compiler.Class
	snap    *cache.Snapshot
	changed map[string]bool
}

func (s *Server) publish(rev string, res *compiler.Result) error {
	if res == nil {
		return errors.New("publish: no compiled result")
	}
	next := make(map[string]*served, len(res.Classes))
	for _, c := range res.Classes {
		if c == nil {
			return errors.New("publish: nil class")
		}
		if next[c.Name] != nil {
			return fmt.Errorf("publish: class %s appears twice", c.Name)
		}
		snap, err := snapshot(c)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		next[c.Name] = &served{class: c, snap: snap}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// Plan every node's new snapshot before setting any.
	ids := make([]string, 0, len(s.nodes))
	for id, n := range s.nodes {
		if n.streams > 0 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	changedByClass := map[string]map[string]bool{}
	var plans []nodePlan
	var missing []*node
	for _, id := range ids {
		n := s.nodes[id]
		cur := next[n.class]
		if cur == nil {
			missing = append(missing, n)
			continue
		}
		p := nodePlan{n: n, class: cur.class, snap: cur.snap}
		if s.opts.PerNode != nil {
			c, snap, err := s.variant(n.meta, cur)
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			p.class, p.snap = c, snap
		}
		if n.cls != nil {
			if p.class == cur.class && s.classes[n.class] != nil && n.cls == s.classes[n.class].class {
				ch, ok := changedByClass[n.class]
				if !ok {
					ch = changedTypes(n.cls, p.class)
					changedByClass[n.class] = ch
				}
				p.changed = ch
			} else {
				p.changed = changedTypes(n.cls, p.class)
			}
		}
		plans = append(plans, p)
	}

	// Commit.
	s.classes = next
	s.revision = rev
	s.servedSince = s.opts.Now()
	for _, p := range plans {
		s.set(p.n, p.class, p.snap, p.changed)
	}
	for _, n := range missing {
		if n.cls != nil {
			n.err = fmt.Sprintf("revision %s has no proxy class %q; still serving %s", rev, n.class, n.version)
		} else {
			n.err = fmt.Sprintf("unknown proxy class %q: revision %s has no such class", n.class, rev)
		}
		s.log.Warn("proxy's class is not in the revision", "node", n.id, "class", n.class, "revision", rev)
	}
	s.recordAttempt(&status.Attempt{Revision: rev, At: s.servedSince})
	s.log.Info("revision served", "revision", rev, "classes", len(next), "proxies", len(plans))
	return nil
}

// changedTypes lists the types whose resources differ between a and b:
// what a delta stream is sent. A load assignment counts as changed when
// its EDS cluster changed (see deltaVersions).
func changedTypes(a, b *compiler.Class) map[string]bool {
	out := map[string]bool{}
	if a == b {
		return out
	}
	var changedClusters map[string]bool
	for _, t := range compiler.ResourceTypes {
		ch := changedNames(a.Resources[t], b.Resources[t])
		if len(ch) > 0 {
			out[t] = true
		}
		if t == resource.ClusterType {
			changedClusters = ch
		}
	}
	for _, r := range b.Resources[resource.EndpointType] {
		if changedClusters[cache.GetResourceName(r)] {
			out[resource.EndpointType] = true
		}
	}
	return out
}

// changedNames are the names of resources added, removed or changed
// between a and b.
func changedNames(a, b []types.Resource) map[string]bool {
	out := map[string]bool{}
	byName := make(map[string]types.Resource, len(a))
	for _, r := range a {
		byName[cache.GetResourceName(r)] = r
	}
	for _, r := range b {
		name := cache.GetResourceName(r)
		o, ok := byName[name]
		if !ok || (o != r && !proto.Equal(o, r)) {
			out[name] = true
		}
		delete(byName, name)
	}
	for name := range byName {
		out[name] = true
	}
	return out
}

// deltaVersions builds the snapshot's delta version map (as the cache
// would) with one change: a load assignment's version also covers its EDS
// cluster. Envoy warms an updated EDS cluster until it receives its load
// assignment again, and the cache resends only changed resources, so
// without this every cluster change (every revision: provenance names the
// revision) would stall the cluster until Envoy's initial_fetch_timeout
// (go-control-plane issue #583). It must run before the snapshot is first
// given to the cache for a delta node, under s.mu.
func deltaVersions(snap *cache.Snapshot) error {
	if snap.VersionMap != nil {
		return nil
	}
	if err := snap.ConstructVersionMap(); err != nil {
		return err
	}
	clusters := snap.VersionMap[resource.ClusterType]
	eds := snap.VersionMap[resource.EndpointType]
	for name, r := range snap.GetResources(resource.ClusterType) {
		cl, ok := r.(*clusterv3.Cluster)
		if !ok || cl.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		cla := cl.GetEdsClusterConfig().GetServiceName()
		if cla == "" {
			cla = name
		}
		if v, ok := eds[cla]; ok {
			eds[cla] = cache.HashResource([]byte(v + "/" + clusters[name]))
		}
	}
	return nil
}

// nacked records a NACK of response r; s.mu is held.
func (s *Server) nacked(n *node, typeURL string, r sentResponse, msg string) {
	nack := &status.NACK{Version: r.version, TypeURL: typeURL, At: s.opts.Now(), Message: msg}
	cls := n.cls
	if n.prev != nil && n.prev.SnapshotVersion == r.version && (cls == nil || cls.SnapshotVersion != r.version) {
		cls = n.prev
	}
	if cls != nil && cls.SnapshotVersion == r.version {
		if name, res := culprit(cls, n.acked, typeURL, r.names, msg); res != nil {
			nack.Resource = name
			nack.Provenance = provenance(cls, typeURL, name, msg)
		}
	}
	n.nack, n.nackFor = nack, r.version
	s.log.Warn("proxy rejected a response (NACK)", "node", n.id, "class", n.class, "type", typeURL, "version", r.version, "resource", nack.Resource, "error", msg)
}

// culprit tells which resource of a NACKed response Envoy rejected: the
// one named in the message (the longest name that occurs), else the only
// resource of the response, else the only one that changed since the last
// ACKed class.
func culprit(cls, acked *compiler.Class, typeURL string, names []string, msg string) (string, types.Resource) {
	all := map[string]types.Resource{}
	for _, r := range cls.Resources[typeURL] {
		all[cache.GetResourceName(r)] = r
	}
	if names == nil {
		for name := range all {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	best := ""
	for _, name := range names {
		if all[name] != nil && strings.Contains(msg, name) && len(name) > len(best) {
			best = name
		}
	}
	if best != "" {
		return best, all[best]
	}
	if len(names) == 1 && all[names[0]] != nil {
		return names[0], all[names[0]]
	}
	if acked != nil {
		old := map[string]types.Resource{}
		for _, r := range acked.Resources[typeURL] {
			old[cache.GetResourceName(r)] = r
		}
		var diff []string
		for _, name := range names {
			if o := old[name]; all[name] != nil && (o == nil || !proto.Equal(o, all[name])) {
				diff = append(diff, name)
			}
		}
		if len(diff) == 1 {
			return diff[0], all[diff[0]]
		}
	}
	return "", nil
}

// provenance is the provenance of the part of a resource that Envoy's
// message names ("VirtualHosts[1]: ... caused by ...Routes[0]" is route 0
// of virtual host 1), else of the resource. A load assignment has its
// cluster's.
func provenance(cls *compiler.Class, typeURL, name, msg string) *status.Provenance {
	p, ok := cls.Provenance.Lookup(compiler.ProvenanceRef{Type: typeURL, Name: name, Part: messagePart(typeURL, msg)})
	if !ok {
		return nil
	}
	// The snapshot version is "<revision>/<hash>": the revision this
	// resource was served in (resources do not carry it themselves).
	rev := cls.SnapshotVersion
	if i := strings.LastIndex(rev, "/"); i >= 0 {
		rev = rev[:i]
	}
	return &status.Provenance{Service: p.Service, File: p.File, Line: p.Line, Revision: rev}
}

// messageFields are the repeated fields of Envoy's validation messages
// (protoc-gen-validate's C++ names) that provenance is recorded for, by
// resource type, with their proto names.
var messageFields = map[string]map[string]string{
	resource.RouteType:    {"VirtualHosts": "virtual_hosts", "Routes": "routes"},
	resource.ListenerType: {"FilterChains": "filter_chains"},
}

var indexedField = regexp.MustCompile(`\b([A-Z][A-Za-z]*)\[(\d+)\]`)

// messagePart turns the indexed fields named in an Envoy validation
// message, outermost first, into a ProvenanceRef.Part.
func messagePart(typeURL, msg string) string {
	fields := messageFields[typeURL]
	var parts []string
	for _, m := range indexedField.FindAllStringSubmatch(msg, -1) {
		if f, ok := fields[m[1]]; ok {
			parts = append(parts, f+"["+m[2]+"]")
		}
	}
	return strings.Join(parts, ".")
}

// ProblemLister is an error that carries positioned problems (a vet step
// may return one; schema.Errors is understood directly).
type ProblemLister interface {
	error
	Problems() []status.Problem
}

// Problems are the positioned problems of err: schema errors, or an error
// implementing ProblemLister, anywhere in its chain; nil otherwise.
func Problems(err error) []status.Problem {
	var se schema.Errors
	if errors.As(err, &se) {
		out := make([]status.Problem, 0, len(se))
		for _, e := range se {
			out = append(out, status.Problem{File: e.Pos.File, Line: e.Pos.Line, Column: e.Pos.Column, Path: e.Path, Message: e.Msg, Fix: e.Fix})
		}
		return out
	}
	var pl ProblemLister
	if errors.As(err, &pl) {
		return pl.Problems()
	}
	return nil
}
