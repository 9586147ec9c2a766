package xds

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/api/status"
)

// node is the state of one proxy (one node id).
type node struct {
	id        string
	class     string
	identity  string // verified SPIFFE id of its streams ("" without mTLS)
	transport string
	streams   int // open streams that have sent a request

	connectedSince time.Time
	disconnectedAt time.Time

	// cls is the class variant set in the cache for this node (nil when
	// nothing is set); version is its SnapshotVersion. prev is the one
	// before, acked the last one fully ACKed: a NACK may be about an older
	// response than cls, and its resource is told by comparing with acked.
	cls, prev, acked *compiler.Class
	version          string
	ackedVersion     string

	subscribed map[string]bool // type URLs the node has asked for
	pending    map[string]bool // types that have not ACKed version yet
	// earlier are the classes served to a delta node before cls while a
	// type was pending, newest last (at most maxEarlier). A delta stream
	// is not resent a type whose resources did not change, so the ACK of
	// a response of an earlier version is the ACK of version for every
	// type the two classes have alike (acks).
	earlier    []*compiler.Class
	ackedType  map[string]string // type URL -> last ACKed version
	nack       *status.NACK
	nackFor    string // version of the last NACK
	certExpiry time.Time
	err        string

	// held: the node rejected what it is served and there is nothing to
	// fall back to, so it is sent nothing new (its watches park) until a
	// version it has not rejected is set.
	held bool
	// rejected are the versions the node NACKed, never set for it again
	// (at most maxRejected, oldest forgotten first).
	rejected      map[string]bool
	rejectedOrder []string
	// retry re-makes a failed per-node variant after retryDelay.
	retry      *time.Timer
	retryDelay time.Duration
	// live are its open streams (streams counts them).
	live map[*stream]bool
	// pushes counts the responses sent to the node, pushesAtNACK their
	// number when it first NACKed, resentRejected the responses of a type
	// and version that the node had been sent before and rejected (tests:
	// the NACK loop); lastSent is the version last sent of each type.
	pushes, pushesAtNACK, nacks, resentRejected int
	lastSent                                    map[string]string
}

// maxRejected bounds the versions remembered as rejected, per node and
// per server.
const maxRejected = 64

// reject remembers that the node NACKed version v.
func (n *node) reject(v string) {
	if n.rejected == nil {
		n.rejected = map[string]bool{}
	}
	if n.rejected[v] {
		return
	}
	n.rejected[v] = true
	n.rejectedOrder = append(n.rejectedOrder, v)
	if len(n.rejectedOrder) > maxRejected {
		delete(n.rejected, n.rejectedOrder[0])
		n.rejectedOrder = n.rejectedOrder[1:]
	}
}

// maxEarlier bounds node.earlier: a proxy that does not answer is not
// remembered every revision published meanwhile.
const maxEarlier = 8

// acks tells whether an ACK of a response of version v, of type t, ACKs
// the node's version: v is the version, or (delta) the class of version v
// has the same resources of type t as the node's class.
func (n *node) acks(t, v string) bool {
	if v == n.version {
		return true
	}
	for _, c := range n.earlier {
		if c.SnapshotVersion == v && n.cls != nil && !changedTypes(c, n.cls)[t] {
			return true
		}
	}
	return false
}

// inSync: the node has ACKed its version for every type it subscribes
// to, and rejected none of it.
func (n *node) inSync() bool {
	return n.version != "" && n.ackedVersion == n.version && len(n.pending) == 0 && (n.nack == nil || n.nackFor != n.version)
}

func (n *node) status() status.Proxy {
	p := status.Proxy{
		NodeID:         n.id,
		Class:          n.class,
		Identity:       n.identity,
		Transport:      n.transport,
		Connected:      n.streams > 0,
		ConnectedSince: n.connectedSince,
		DisconnectedAt: n.disconnectedAt,
		Version:        n.version,
		AckedVersion:   n.ackedVersion,
		InSync:         n.inSync(),
		CertExpiry:     n.certExpiry,
		Error:          n.err,
	}
	if p.Connected {
		p.DisconnectedAt = time.Time{}
	}
	if len(n.ackedType) > 0 {
		p.Acked = make(map[string]string, len(n.ackedType))
		for k, v := range n.ackedType {
			p.Acked[k] = v
		}
	}
	if n.nack != nil {
		p.LastNACK = copyNACK(n.nack)
	}
	return p
}

func copyNACK(n *status.NACK) *status.NACK {
	c := *n
	if c.Provenance != nil {
		pv := *c.Provenance
		c.Provenance = &pv
	}
	return &c
}

// stream is one xDS stream of a node.
type stream struct {
	delta bool
	peer  Peer  // the verified client, from the TLS handshake
	node  *node // nil until its first request names the node
	// binding is the node the Authorizer bound the stream to (nil until
	// its first request); claimed is a copy of the node that request
	// claimed and nodeMsg that request's node message, which the xDS
	// server keeps for the stream's later requests.
	binding          *Binding
	claimed, nodeMsg *corev3.Node
	// sent holds, per type URL, the responses not yet answered, oldest
	// first.
	sent map[string][]sentResponse
}

type sentResponse struct {
	nonce   string
	version string
	names   []string // delta: the resources in the response
}

// streamOf is the stream with the id; s.mu is held.
func (s *Server) streamOf(id int64, delta bool) *stream {
	if delta {
		return s.deltas[id]
	}
	return s.streams[id]
}

// attach registers the stream's node once the stream is bound, and gives
// a new node its class's snapshot; s.mu is held.
func (s *Server) attach(st *stream) {
	if st.node != nil || st.binding == nil {
		return
	}
	now := s.opts.Now()
	id, class := st.binding.NodeID, st.binding.Class
	n := s.nodes[id]
	if n == nil || n.class != class {
		if n != nil && n.cls != nil {
			s.cache.ClearSnapshot(id)
		}
		streams := 0
		var rejected map[string]bool
		var order []string
		if n != nil {
			streams, rejected, order = n.streams, n.rejected, n.rejectedOrder
			n.stopRetry()
		}
		n = &node{id: id, class: class, streams: streams, subscribed: map[string]bool{}, pending: map[string]bool{},
			ackedType: map[string]string{}, rejected: rejected, rejectedOrder: order}
		s.nodes[id] = n
	}
	if st.peer.Verified() {
		n.identity = st.peer.Identity.String()
	}
	if n.streams == 0 {
		// The first stream's transport is the node's (what ACKs are
		// awaited by); a second stream of another kind is served the same
		// snapshots, but does not change that.
		n.transport = status.TransportSotW
		if st.delta {
			n.transport = status.TransportDelta
		}
		n.connectedSince = now
		n.disconnectedAt = time.Time{}
	}
	n.streams++
	if n.live == nil {
		n.live = map[*stream]bool{}
	}
	n.live[st] = true
	st.node = n
	s.log.Info("proxy connected", "node", id, "class", class, "transport", n.transport, "identity", n.identity)
	if n.cls == nil {
		s.serveCurrent(n)
	}
	s.notify()
}

// serveCurrent sets the node's snapshot from the served revision. A
// per-node variant that fails leaves the node as it is, with the error,
// and is retried. s.mu is held.
func (s *Server) serveCurrent(n *node) {
	cur := s.classes[n.class]
	if cur == nil {
		if s.revision == "" {
			n.err = "no revision served yet"
		} else {
			n.err = fmt.Sprintf("unknown proxy class %q: revision %s has no such class (node.cluster or metadata %q names it)", n.class, s.revision, ClassMetadataKey)
		}
		s.warn.warn(n.id, "proxy asks for a class the served revision does not have; serving nothing", "node", n.id, "class", n.class, "revision", s.revision)
		return
	}
	c, snap, err := s.variant(n.id, cur)
	if err != nil {
		s.variantFailed(n, err)
		return
	}
	s.set(n, c, snap, nil)
}

// variant is a node's own variant of a class, checked.
func (s *Server) variant(nodeID string, cur *served) (*compiler.Class, *cache.Snapshot, error) {
	if s.opts.PerNode == nil {
		return cur.class, cur.snap, nil
	}
	c, err := s.opts.PerNode(nodeID, cur.class)
	if err != nil {
		return nil, nil, fmt.Errorf("per-node variant of %s for node %s: %w", cur.class.Name, nodeID, err)
	}
	if c == cur.class {
		return c, cur.snap, nil
	}
	snap, err := snapshot(c)
	if err != nil {
		return nil, nil, fmt.Errorf("per-node variant for node %s: %w", nodeID, err)
	}
	return c, snap, nil
}

// Bounds of the retry of a failed per-node variant.
const (
	minVariantRetry = 500 * time.Millisecond
	maxVariantRetry = 30 * time.Second
)

// variantFailed records a failed per-node variant and schedules its
// retry; the node keeps what it is served. s.mu is held.
func (s *Server) variantFailed(n *node, err error) {
	n.err = err.Error()
	s.warn.warn(n.id, "per-node variant failed; the proxy keeps what it has and the variant is retried", "node", n.id, "class", n.class, "error", err)
	if n.retry != nil {
		return
	}
	n.retryDelay = min(max(2*n.retryDelay, minVariantRetry), maxVariantRetry)
	n.retry = time.AfterFunc(n.retryDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		n.retry = nil
		if s.ctx.Err() != nil || s.nodes[n.id] != n || n.streams == 0 {
			return
		}
		if cur := s.classes[n.class]; cur != nil && n.version != cur.class.SnapshotVersion {
			s.serveCurrent(n)
			s.checkApplied()
			s.notify()
		}
	})
}

func (n *node) stopRetry() {
	if n.retry != nil {
		n.retry.Stop()
		n.retry = nil
	}
	n.retryDelay = 0
}

// hold stops sending the node anything new (its watches park) after it
// rejected what it is served; s.mu is held.
func (s *Server) hold(n *node, why string) {
	n.held = true
	n.err = why
	s.notify()
}

// set serves c to n. changed lists the types whose resources differ from
// n's previous class (nil: compute it); a delta stream is only sent those.
// s.mu is held.
func (s *Server) set(n *node, c *compiler.Class, snap *cache.Snapshot, changed map[string]bool) {
	if n.rejected[c.SnapshotVersion] {
		// Never send a node a version it rejected (a NACKed SotW version
		// would otherwise be answered again at once, in a loop).
		s.hold(n, fmt.Sprintf("rejected version %s earlier (NACK); nothing new is sent to it until another version is served", c.SnapshotVersion))
		return
	}
	n.held = false
	n.stopRetry()
	if n.cls != nil && changed == nil {
		changed = changedTypes(n.cls, c)
	}
	// The cache sends a SotW type when its version changes, a delta type
	// when its resources do.
	for t := range n.subscribed {
		if n.cls == nil || (c.SnapshotVersion != n.version && (n.transport != status.TransportDelta || changed[t])) {
			n.pending[t] = true
		}
	}
	if n.cls != c {
		n.prev = n.cls
	}
	// A delta type still pending keeps waiting for the ACK of a response
	// of n.cls (sent or still to be sent); if c has the same resources of
	// that type, the cache sends nothing new and that ACK is the one.
	if n.transport == status.TransportDelta && n.cls != nil && n.cls != c && len(n.pending) > 0 {
		n.earlier = append(n.earlier, n.cls)
		if len(n.earlier) > maxEarlier {
			n.earlier = append(n.earlier[:0:0], n.earlier[len(n.earlier)-maxEarlier:]...)
		}
	}
	n.cls, n.version, n.err = c, c.SnapshotVersion, ""
	s.checkSynced(n)
	if n.transport == status.TransportDelta {
		if err := deltaVersions(snap); err != nil {
			s.log.Error("building delta versions", "node", n.id, "error", err)
		}
	}
	if err := s.cache.SetSnapshot(context.Background(), n.id, snap); err != nil {
		// The simple cache only fails when a response cannot be built.
		s.log.Error("setting snapshot", "node", n.id, "error", err)
	}
	s.openParked(n.id)
}

// checkSynced marks the node in sync when nothing is pending; s.mu is
// held.
func (s *Server) checkSynced(n *node) {
	if len(n.pending) == 0 && n.version != "" && n.ackedVersion != n.version && (n.nack == nil || n.nackFor != n.version) && len(n.subscribed) > 0 {
		n.ackedVersion = n.version
		n.acked = n.cls
	}
	if len(n.pending) == 0 {
		n.earlier = nil
	}
}

// request handles a SotW or delta request: registration, subscription, ACK
// or NACK of a sent response. s.mu is held.
//
// versionInfo is a SotW request's version_info: the version of the type
// that Envoy holds (after an ACK the one it accepted, after a NACK the
// one it kept). When it is the node's version and nothing else is in
// flight, the type is in sync: e.g. after a NACK and a rollback to the
// version Envoy kept, the cache sends that type nothing (it has it), and
// the NACK is its last word on it.
func (s *Server) request(st *stream, typeURL, nonce, versionInfo string, errDetail string, hasErr bool) {
	s.attach(st)
	n := st.node
	if n == nil {
		return
	}
	if !n.subscribed[typeURL] {
		n.subscribed[typeURL] = true
		if n.cls != nil {
			n.pending[typeURL] = true
		}
	}
	defer s.holds(st, n, typeURL, versionInfo)
	if nonce == "" {
		return
	}
	sent := st.sent[typeURL]
	i := 0
	for i < len(sent) && sent[i].nonce != nonce {
		i++
	}
	if i == len(sent) {
		return // stale or unknown nonce
	}
	r := sent[i]
	st.sent[typeURL] = sent[i+1:]
	if hasErr {
		s.nacked(n, typeURL, r, errDetail)
	} else {
		n.ackedType[typeURL] = r.version
		if n.acks(typeURL, r.version) && len(st.sent[typeURL]) == 0 {
			delete(n.pending, typeURL)
		}
		s.checkSynced(n)
		s.checkApplied()
	}
	s.notify()
}

// holds marks type t in sync when a SotW request says that the node holds
// its version of t and no response of t is in flight; s.mu is held.
func (s *Server) holds(st *stream, n *node, t, versionInfo string) {
	if st.delta || versionInfo == "" || versionInfo != n.version || len(st.sent[t]) > 0 || !n.pending[t] {
		return
	}
	n.ackedType[t] = versionInfo
	delete(n.pending, t)
	s.checkSynced(n)
	s.checkApplied()
}

// deltaHolds marks a delta type in sync when the request that opens it
// on a stream says, with initial_resource_versions, that the proxy holds
// every resource of the type it subscribes to by name at the version of
// the node's snapshot: Envoy does so when it reconnects, to this server
// or to another replica, and the cache then sends it nothing (a wildcard
// subscription is always answered, and its ACK counts). The test is the
// cache's own (go-control-plane's createDeltaResponse) on the same
// version map; s.mu is held.
func (s *Server) deltaHolds(st *stream, req *discoveryv3.DeltaDiscoveryRequest) {
	n, t := st.node, req.GetTypeUrl()
	if n == nil || n.cls == nil || n.held || !n.pending[t] || len(st.sent[t]) > 0 ||
		req.GetResponseNonce() != "" || len(req.GetInitialResourceVersions()) == 0 {
		return
	}
	names := req.GetResourceNamesSubscribe()
	if len(names) == 0 || slices.Contains(names, "*") {
		return
	}
	snap, err := s.cache.GetSnapshot(n.id)
	if err != nil {
		return
	}
	cs, ok := snap.(*cache.Snapshot)
	if !ok || cs.VersionMap == nil || cs.GetVersion(t) != n.version {
		return
	}
	versions, initial := cs.VersionMap[t], req.GetInitialResourceVersions()
	for _, name := range names {
		v, has := versions[name]
		held, holds := initial[name]
		if has && held != v || !has && holds {
			return
		}
	}
	n.ackedType[t] = n.version
	delete(n.pending, t)
	s.checkSynced(n)
	s.checkApplied()
	s.notify()
}

// response records a response sent on a stream; s.mu is held.
func (s *Server) response(st *stream, typeURL, nonce, version string, names []string) {
	if st.sent == nil {
		st.sent = map[string][]sentResponse{}
	}
	st.sent[typeURL] = append(st.sent[typeURL], sentResponse{nonce: nonce, version: version, names: names})
	if n := st.node; n != nil {
		n.pushes++
		if n.rejected[version] && n.lastSent[typeURL] == version {
			n.resentRejected++
		}
		if n.lastSent == nil {
			n.lastSent = map[string]string{}
		}
		n.lastSent[typeURL] = version
		if n.acks(typeURL, version) {
			n.pending[typeURL] = true
		}
	}
}

// closed ends a stream; s.mu is held.
func (s *Server) closed(st *stream) {
	n := st.node
	if n == nil {
		return
	}
	n.streams--
	delete(n.live, st)
	if n.streams > 0 {
		s.settle(n)
		return
	}
	n.disconnectedAt = s.opts.Now()
	s.cache.ClearSnapshot(n.id)
	n.cls, n.prev, n.acked, n.earlier = nil, nil, nil, nil
	n.subscribed, n.pending = map[string]bool{}, map[string]bool{}
	n.held = false
	n.stopRetry()
	s.log.Info("proxy disconnected", "node", n.id, "class", n.class)
	s.checkApplied()
	s.notify()
}

// settle clears, after one of a node's streams closed, the pending types
// that only that stream still owed: no remaining stream has a response of
// the type in flight and the type's last ACK is of the node's version.
// s.mu is held.
func (s *Server) settle(n *node) {
	for t := range n.pending {
		inFlight := false
		for o := range n.live {
			if len(o.sent[t]) > 0 {
				inFlight = true
			}
		}
		if !inFlight && n.acks(t, n.ackedType[t]) {
			delete(n.pending, t)
		}
	}
	s.checkSynced(n)
	s.checkApplied()
	s.notify()
}

// callbacks are the go-control-plane server callbacks.
type callbacks struct{ s *Server }

func (c callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	p := peerOf(ctx)
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.streams[id] = &stream{peer: p}
	return nil
}

func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if st := c.s.streams[id]; st != nil {
		delete(c.s.streams, id)
		c.s.closed(st)
	}
}

func (c callbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	if err := c.s.bind(id, false, req.GetNode()); err != nil {
		return err
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	st := c.s.streams[id]
	if st == nil {
		return nil
	}
	c.s.request(st, req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
	return nil
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if st := c.s.streams[id]; st != nil {
		c.s.response(st, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo(), nil)
	}
}

func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	p := peerOf(ctx)
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.deltas[id] = &stream{delta: true, peer: p}
	return nil
}

func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if st := c.s.deltas[id]; st != nil {
		delete(c.s.deltas, id)
		c.s.closed(st)
	}
}

func (c callbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	if err := c.s.bind(id, true, req.GetNode()); err != nil {
		return err
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	st := c.s.deltas[id]
	if st == nil {
		return nil
	}
	c.s.request(st, req.GetTypeUrl(), req.GetResponseNonce(), "", req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
	c.s.deltaHolds(st, req)
	return nil
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	st := c.s.deltas[id]
	if st == nil {
		return
	}
	names := make([]string, 0, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		names = append(names, r.GetName())
	}
	c.s.response(st, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo(), names)
}

func (c callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error { return nil }
func (c callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {
}
