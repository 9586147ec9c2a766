package xds

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/api/status"
)

// checkApplied ends the rollout of the served revision once every
// connected proxy of a class it has is in sync with it: the revision is
// then the last applied one. s.mu is held.
func (s *Server) checkApplied() {
	if !s.rolling {
		return
	}
	for _, n := range s.nodes {
		if !s.waitingFor(n) {
			continue
		}
		return
	}
	s.rolling = false
	s.good = &goodRevision{rev: s.revision, classes: s.classes, at: s.opts.Now()}
	s.log.Info("revision applied: every connected proxy ACKed it", "revision", s.revision)
	s.notify()
}

// waitingFor: the rollout of the served revision waits for n (connected,
// its class served, not in sync with it); s.mu is held.
func (s *Server) waitingFor(n *node) bool {
	if n.streams == 0 {
		return false
	}
	cur := s.classes[n.class]
	if cur == nil {
		return false
	}
	return !n.inSync() || n.version != cur.class.SnapshotVersion
}

// maxWaiting bounds Rollout.Waiting.
const maxWaiting = 20

// rollout is the status of the rollout in progress; s.mu is held.
func (s *Server) rollout() *status.Rollout {
	r := &status.Rollout{Revision: s.revision, Since: s.rolloutSince}
	for id, n := range s.nodes {
		if s.waitingFor(n) {
			r.Waiting = append(r.Waiting, id)
		}
	}
	sort.Strings(r.Waiting)
	r.WaitingCount = len(r.Waiting)
	if len(r.Waiting) > maxWaiting {
		r.Waiting = r.Waiting[:maxWaiting]
	}
	return r
}

// nacked records a NACK of response r and reacts to it; s.mu is held.
//
//   - A NACK of the revision being rolled out rolls every proxy back to
//     the last applied revision (rollBack).
//   - A NACK of what the node is served otherwise (an applied revision, or
//     after a rollback) holds the node: it is sent nothing new until
//     another version is served.
//   - A NACK of an older response than the node's current one changes
//     nothing more: the node has moved on.
//
// In every case the version is never set for the node again, nor
// published again (a SotW server answers a NACK whose version differs
// from the snapshot's by sending the snapshot again: a NACK loop).
func (s *Server) nacked(n *node, typeURL string, r sentResponse, msg string) {
	cls := n.cls
	if n.prev != nil && n.prev.SnapshotVersion == r.version && (cls == nil || cls.SnapshotVersion != r.version) {
		cls = n.prev
	}
	if cls != nil && cls.SnapshotVersion != r.version {
		cls = nil
		for _, c := range n.earlier {
			if c.SnapshotVersion == r.version {
				cls = c
			}
		}
	}
	if n.nacks == 0 {
		n.pushesAtNACK = n.pushes
	}
	n.nacks++
	nack := newNACK(n.id, typeURL, r, msg, cls, n.acked, s.opts.Now())
	n.nack, n.nackFor = nack, r.version
	n.reject(r.version)
	s.rememberRejected(nack)
	s.warn.warn(n.id, "proxy rejected a response (NACK)", "node", n.id, "class", n.class, "type", typeURL, "version", r.version,
		"resource", nack.Resource, "reason", nack.Reason)

	cur := s.classes[n.class]
	switch {
	case r.version != n.version:
		// An older response: superseded by what the node is served now.
	case s.rolling && cur != nil && cur.class.SnapshotVersion == r.version:
		s.rollBack(nack)
	default:
		s.hold(n, fmt.Sprintf("rejected %s (NACK of %s: %s); nothing new is sent to it until another version is served", r.version, shortTypeName(typeURL), nack.Reason))
	}
}

// rememberRejected records a rejected version for the whole server;
// s.mu is held.
func (s *Server) rememberRejected(nack *status.NACK) {
	if s.rejected[nack.Version] != nil {
		return
	}
	s.rejected[nack.Version] = nack
	s.rejectedOrder = append(s.rejectedOrder, nack.Version)
	if len(s.rejectedOrder) > maxRejected {
		delete(s.rejected, s.rejectedOrder[0])
		s.rejectedOrder = s.rejectedOrder[1:]
	}
}

// rollBack ends the rollout of the served revision, which a proxy
// rejected: every connected proxy is served the last applied revision
// again (its own variant), so that the mesh runs one revision. A proxy
// whose class the applied revision lacks, or when no revision was ever
// applied, is held: it gets nothing new. The attempt fails at step
// "rollout" with the rejection. s.mu is held.
func (s *Server) rollBack(nack *status.NACK) {
	failed := s.revision
	now := s.opts.Now()
	s.rolling = false
	a := &status.Attempt{Revision: failed, At: now, Step: status.StepRollout, NACK: copyNACK(nack)}
	a.NACK.NodeID = nack.NodeID
	why := rejectionText(nack)
	ids := make([]string, 0, len(s.nodes))
	for id, n := range s.nodes {
		if n.streams > 0 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if s.good == nil {
		s.classes, s.revision, s.servedSince = map[string]*served{}, "", now
		a.Error = why + "; no earlier revision was applied: nothing new is served until a revision is accepted"
		for _, id := range ids {
			if n := s.nodes[id]; n.cls != nil {
				s.hold(n, fmt.Sprintf("revision %s was rejected by proxy %s and no earlier revision was applied; nothing new is sent", failed, nack.NodeID))
			}
		}
	} else {
		s.classes, s.revision, s.servedSince = s.good.classes, s.good.rev, now
		a.RolledBackTo = s.good.rev
		a.Error = why + "; every proxy is served " + s.good.rev + " again"
		for _, id := range ids {
			n := s.nodes[id]
			if s.classes[n.class] == nil {
				if n.cls != nil {
					s.hold(n, fmt.Sprintf("revision %s was rejected by proxy %s; class %s is not in %s, which every proxy is served again: nothing new is sent", failed, nack.NodeID, n.class, s.good.rev))
				}
				continue
			}
			s.serveCurrent(n)
		}
	}
	if pv := nack.Provenance; pv != nil && pv.File != "" {
		a.Problems = []status.Problem{{File: pv.File, Line: pv.Line, Message: why}}
	}
	s.recordAttempt(a)
	s.log.Warn("revision rejected by a proxy; rolled back", "revision", failed, "rolledBackTo", a.RolledBackTo,
		"node", nack.NodeID, "resource", nack.Resource, "reason", nack.Reason)
}

// rejectionText says in one line who rejected what and why.
func rejectionText(n *status.NACK) string {
	what := shortTypeName(n.TypeURL)
	if n.Resource != "" {
		what += fmt.Sprintf(" %q", n.Resource)
	}
	if pv := n.Provenance; pv != nil && pv.Service != "" {
		what += " (service " + pv.Service + ")"
	}
	return fmt.Sprintf("proxy %s rejected %s of %s: %s", n.NodeID, what, n.Version, n.Reason)
}

// shortTypeName is the message name of a type URL ("RouteConfiguration").
func shortTypeName(typeURL string) string {
	if i := strings.LastIndex(typeURL, "."); i >= 0 {
		return typeURL[i+1:]
	}
	return typeURL
}

// Bounds of a NACK's message and reason.
const (
	maxNACKMessage = 16 << 10
	maxNACKReason  = 512
)

// newNACK describes a rejection of response r of class cls (nil when the
// version is not known any more): the resource Envoy rejected, its
// provenance, and the reason.
func newNACK(nodeID, typeURL string, r sentResponse, msg string, cls, acked *compiler.Class, at time.Time) *status.NACK {
	nack := &status.NACK{NodeID: nodeID, Version: r.version, TypeURL: typeURL, At: at, Message: msg}
	if len(msg) > maxNACKMessage {
		nack.Message, nack.MessageBytes = truncate(msg, maxNACKMessage), len(msg)
	}
	reason, lost := envoyReason(msg)
	var res types.Resource
	if cls != nil {
		var name string
		name, res = culprit(cls, acked, typeURL, r.names, msg)
		if res != nil {
			nack.Resource = name
		}
	}
	where := msg
	if lost && res != nil {
		// Envoy puts the resource before the reason and cuts the message
		// at 4 KB: check the resource with the same rules (the protos'
		// validation) to say what is wrong.
		if v, ok := res.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				reason = innermostCause(err.Error()) + " (weft's validation of the resource: Envoy's message was cut)"
				where = err.Error()
			}
		}
	}
	if reason == "" {
		reason = "Envoy's message was cut before its reason; the proxy's log has it in full"
	}
	nack.Reason = truncate(reason, maxNACKReason)
	if cls != nil && res != nil {
		part := messagePart(typeURL, where)
		if part == "" && acked != nil {
			// Envoy did not say where: if only one route (filter chain)
			// changed since the last version the node accepted, it is
			// the one.
			part = changedPart(typeURL, resourceNamed(acked, typeURL, nack.Resource), res)
		}
		nack.Provenance = provenance(cls, typeURL, nack.Resource, part)
	}
	return nack
}

// resourceNamed is the resource of type t and the name in c, or nil.
func resourceNamed(c *compiler.Class, t, name string) types.Resource {
	for _, r := range c.Resources[t] {
		if cache.GetResourceName(r) == name {
			return r
		}
	}
	return nil
}

// changedPart is the ProvenanceRef.Part of the only virtual host or
// route (route configurations) or filter chain (listeners) that differs
// between old and cur, "" when there is no single one.
func changedPart(typeURL string, old, cur types.Resource) string {
	var parts []string
	switch c := cur.(type) {
	case *routev3.RouteConfiguration:
		o, ok := old.(*routev3.RouteConfiguration)
		if !ok {
			return ""
		}
		byName := map[string]*routev3.VirtualHost{}
		for _, vh := range o.GetVirtualHosts() {
			byName[vh.GetName()] = vh
		}
		for i, vh := range c.GetVirtualHosts() {
			ovh := byName[vh.GetName()]
			if ovh == nil {
				parts = append(parts, fmt.Sprintf("virtual_hosts[%d]", i))
				continue
			}
			if proto.Equal(ovh, vh) {
				continue
			}
			before := len(parts)
			for j, r := range vh.GetRoutes() {
				if j >= len(ovh.GetRoutes()) || !proto.Equal(ovh.GetRoutes()[j], r) {
					parts = append(parts, fmt.Sprintf("virtual_hosts[%d].routes[%d]", i, j))
				}
			}
			if len(parts) == before {
				parts = append(parts, fmt.Sprintf("virtual_hosts[%d]", i))
			}
		}
	case *listenerv3.Listener:
		o, ok := old.(*listenerv3.Listener)
		if !ok {
			return ""
		}
		for i, fc := range c.GetFilterChains() {
			if i >= len(o.GetFilterChains()) || !proto.Equal(o.GetFilterChains()[i], fc) {
				parts = append(parts, fmt.Sprintf("filter_chains[%d]", i))
			}
		}
	}
	if len(parts) != 1 {
		return ""
	}
	return parts[0]
}

// truncatedSuffix ends an error_detail that Envoy cut at 4 KB.
const truncatedSuffix = "...(truncated)"

// envoyReason extracts what is wrong from Envoy's NACK message: without
// the text-format dump of the resource that Envoy puts first ("<dump>:
// <reason>"), and, for a proto constraint violation, the innermost
// "caused by" (the field and the rule, e.g. "HeaderValueValidationError.
// Value: value length must be at most 16384 bytes"). lost reports that
// the message holds a dump but no reason (Envoy cut it).
func envoyReason(msg string) (reason string, lost bool) {
	m, cut := strings.CutSuffix(msg, truncatedSuffix)
	body := m
	if isDump(m) {
		i := strings.LastIndex(m, "\n: ")
		if i < 0 {
			return "", true
		}
		body = m[i+3:]
	}
	const pcv = "Proto constraint validation failed ("
	if i := strings.Index(body, pcv); i >= 0 {
		chain := strings.TrimSpace(body[i+len(pcv):])
		chain = strings.TrimSuffix(chain, ")")
		return innermostCause(chain), false
	}
	body = strings.TrimSpace(body)
	if body == "" {
		return "", cut
	}
	// The first lines, without any dump that follows.
	lines := strings.Split(body, "\n")
	var keep []string
	for _, l := range lines {
		if isDumpLine(l) || len(keep) == 3 {
			break
		}
		keep = append(keep, strings.TrimSpace(l))
	}
	if len(keep) == 0 {
		return "", true
	}
	return strings.Join(keep, " "), false
}

// innermostCause is the last part of a validation error's chain of
// "caused by" (Envoy's C++ " | caused by X" and Go's " | caused by: X").
func innermostCause(chain string) string {
	parts := strings.Split(chain, " | caused by")
	last := strings.TrimSpace(strings.TrimPrefix(parts[len(parts)-1], ":"))
	return strings.TrimSpace(last)
}

// dumpMarker starts the text-format dumps of Envoy's protobuf library
// (goo.gle/debugonly, goo.gle/debugproto, goo.gle/debugstr: the library
// marks debug output so that nobody parses it).
const dumpMarker = "goo.gle/debug"

var dumpLine = regexp.MustCompile(`^\s*([a-z_][a-z0-9_]*(\s*\{|: .*)|\})\s*$`)

// isDump reports whether msg starts with a text-format dump of a message.
func isDump(msg string) bool {
	first, _, _ := strings.Cut(msg, "\n")
	return strings.HasPrefix(first, dumpMarker) || dumpLine.MatchString(first) && strings.Contains(msg, "\n")
}

// isDumpLine reports whether a line looks like a line of a text-format
// dump ("name: \"x\"", "virtual_hosts {", "}").
func isDumpLine(l string) bool {
	return strings.HasPrefix(l, dumpMarker) || dumpLine.MatchString(l)
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
func provenance(cls *compiler.Class, typeURL, name, part string) *status.Provenance {
	p, ok := cls.Provenance.Lookup(compiler.ProvenanceRef{Type: typeURL, Name: name, Part: part})
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
