package xds

import (
	"errors"
	"fmt"
	"sort"
	"time"

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
// and checked first; if a class fails, nothing served changes and the
// error is returned (and recorded as the last attempt, step "publish").
// A revision with a snapshot version that a proxy has rejected (NACKed)
// is refused the same way: a rejected version is never served again.
//
// A published revision is rolled out: it becomes the last applied
// revision once every connected proxy has ACKed it. If a proxy rejects it
// first, every proxy is served the last applied revision again (see
// doc.go, "Atomic revisions"). A node whose own variant cannot be made
// (Options.PerNode) keeps what it is served, shows the error and is
// retried; it does not stop the others.
func (s *Server) Publish(rev string, res *compiler.Result) error {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if s.opts.TestOnlyBeforePublish != nil {
		res = s.opts.TestOnlyBeforePublish(rev, res)
	}
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
	err     error // the node's variant failed: it keeps what it has
}

func (s *Server) publish(rev string, res *compiler.Result) error {
	if res == nil {
		return errors.New("publish: no compiled result")
	}
	next := make(map[string]*served, len(res.Classes))
	s.mu.Lock()
	cur := s.classes // replaced, never modified in place
	s.mu.Unlock()
	for _, c := range res.Classes {
		if c == nil {
			return errors.New("publish: nil class")
		}
		if next[c.Name] != nil {
			return fmt.Errorf("publish: class %s appears twice", c.Name)
		}
		if old := cur[c.Name]; old != nil && old.class == c {
			// The same class (compiler.WithEndpoints returns the classes
			// an endpoint change does not touch as they were): its
			// snapshot was checked, and its delta versions are built.
			next[c.Name] = old
			continue
		}
		snap, err := snapshot(c)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		next[c.Name] = &served{class: c, snap: snap}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkNotRejected(next); err != nil {
		return err
	}
	plans := s.plan(next)

	// Commit.
	s.classes = next
	s.revision = rev
	s.attempted = rev
	s.servedSince = s.opts.Now()
	s.rolling, s.rolloutSince = true, s.servedSince
	served := 0
	for _, p := range plans {
		if p.err != nil {
			s.variantFailed(p.n, p.err)
			continue
		}
		s.set(p.n, p.class, p.snap, p.changed)
		served++
	}
	s.reportMissing(rev, next)
	s.recordAttempt(&status.Attempt{Revision: rev, At: s.servedSince})
	s.log.Info("revision served; rolling out", "revision", rev, "classes", len(next), "proxies", served)
	s.checkApplied()
	return nil
}

// checkNotRejected fails when a class of next has a snapshot version that
// a proxy rejected; s.mu is held.
func (s *Server) checkNotRejected(next map[string]*served) error {
	names := make([]string, 0, len(next))
	for name := range next {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := next[name].class.SnapshotVersion
		if nack := s.rejected[v]; nack != nil {
			return &RejectedError{Class: name, Version: v, NACK: copyNACK(nack)}
		}
	}
	return nil
}

// plan makes every connected node's snapshot of next, in node id order;
// s.mu is held.
func (s *Server) plan(next map[string]*served) []nodePlan {
	ids := make([]string, 0, len(s.nodes))
	for id, n := range s.nodes {
		if n.streams > 0 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	changedByClass := map[string]map[string]bool{}
	var plans []nodePlan
	for _, id := range ids {
		n := s.nodes[id]
		cur := next[n.class]
		if cur == nil {
			continue
		}
		p := nodePlan{n: n}
		p.class, p.snap, p.err = s.variant(n.id, cur)
		if p.err != nil {
			plans = append(plans, p)
			continue
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
	return plans
}

// reportMissing marks the connected nodes whose class is not in the
// served revision; s.mu is held.
func (s *Server) reportMissing(rev string, classes map[string]*served) {
	for _, n := range s.nodes {
		if n.streams == 0 || classes[n.class] != nil {
			continue
		}
		if n.cls != nil {
			n.err = fmt.Sprintf("revision %s has no proxy class %q; still serving %s", rev, n.class, n.version)
		} else {
			n.err = fmt.Sprintf("unknown proxy class %q: revision %s has no such class", n.class, rev)
		}
		s.warn.warn(n.id, "proxy's class is not in the revision", "node", n.id, "class", n.class, "revision", rev)
	}
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

// RejectedError is a Publish refused because a class's snapshot version
// was rejected (NACKed) by a proxy earlier: publishing the same bytes
// again cannot succeed, so it is a stalling failure (Stalling reports
// true) until the definition changes.
type RejectedError struct {
	Class, Version string
	NACK           *status.NACK // the rejection
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("publish: class %s version %s was rejected by proxy %s at %s (%s); a rejected version is not served again",
		e.Class, e.Version, e.NACK.NodeID, e.NACK.At.Format(time.RFC3339), e.NACK.Reason)
}

// Stalling reports true: only a new revision can be served.
func (e *RejectedError) Stalling() bool { return true }
