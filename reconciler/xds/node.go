package xds

import (
	"context"
	"fmt"
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
	meta      *corev3.Node
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
		c := *n.nack
		if c.Provenance != nil {
			pv := *c.Provenance
			c.Provenance = &pv
		}
		p.LastNACK = &c
	}
	return p
}

// stream is one xDS stream of a node.
type stream struct {
	delta bool
	node  *node // nil until its first request names the node
	// sent holds, per type URL, the responses not yet answered, oldest
	// first.
	sent map[string][]sentResponse
}

type sentResponse struct {
	nonce   string
	version string
	names   []string // delta: the resources in the response
}

// className is the proxy class a node asks for.
func className(n *corev3.Node) string {
	if v := n.GetMetadata().GetFields()[ClassMetadataKey]; v != nil && v.GetStringValue() != "" {
		return v.GetStringValue()
	}
	return n.GetCluster()
}

// attach registers the stream's node on its first request and gives a new
// node its class's snapshot; s.mu is held.
func (s *Server) attach(st *stream, meta *corev3.Node) {
	if st.node != nil || meta == nil {
		return
	}
	now := s.opts.Now()
	id := meta.GetId()
	class := className(meta)
	n := s.nodes[id]
	if n == nil || n.class != class {
		if n != nil && n.cls != nil {
			s.cache.ClearSnapshot(id)
		}
		streams := 0
		if n != nil {
			streams = n.streams
		}
		n = &node{id: id, class: class, streams: streams, subscribed: map[string]bool{}, pending: map[string]bool{}, ackedType: map[string]string{}}
		s.nodes[id] = n
	}
	n.meta = meta
	n.transport = status.TransportSotW
	if st.delta {
		n.transport = status.TransportDelta
	}
	if n.streams == 0 {
		n.connectedSince = now
		n.disconnectedAt = time.Time{}
	}
	n.streams++
	st.node = n
	s.log.Info("proxy connected", "node", id, "class", class, "transport", n.transport)
	if n.cls == nil {
		s.serveCurrent(n)
	}
	s.notify()
}

// serveCurrent sets the node's snapshot from the served revision; s.mu
// is held.
func (s *Server) serveCurrent(n *node) {
	cur := s.classes[n.class]
	if cur == nil {
		if s.revision == "" {
			n.err = "no revision served yet"
		} else {
			n.err = fmt.Sprintf("unknown proxy class %q: revision %s has no such class (node.cluster or metadata %q names it)", n.class, s.revision, ClassMetadataKey)
		}
		s.log.Warn("proxy asks for an unknown class; serving nothing", "node", n.id, "class", n.class, "revision", s.revision)
		return
	}
	c, snap := cur.class, cur.snap
	if s.opts.PerNode != nil {
		var err error
		c, snap, err = s.variant(n.meta, cur)
		if err != nil {
			n.err = err.Error()
			s.log.Error("per-node variant failed; serving nothing", "node", n.id, "class", n.class, "error", err)
			return
		}
	}
	s.set(n, c, snap, nil)
}

// variant is a node's own variant of a class, checked.
func (s *Server) variant(meta *corev3.Node, cur *served) (*compiler.Class, *cache.Snapshot, error) {
	c, err := s.opts.PerNode(meta, cur.class)
	if err != nil {
		return nil, nil, fmt.Errorf("per-node variant of %s for node %s: %w", cur.class.Name, meta.GetId(), err)
	}
	if c == cur.class {
		return c, cur.snap, nil
	}
	snap, err := snapshot(c)
	if err != nil {
		return nil, nil, fmt.Errorf("per-node variant for node %s: %w", meta.GetId(), err)
	}
	return c, snap, nil
}

// set serves c to n. changed lists the types whose resources differ from
// n's previous class (nil: compute it); a delta stream is only sent those.
// s.mu is held.
func (s *Server) set(n *node, c *compiler.Class, snap *cache.Snapshot, changed map[string]bool) {
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
func (s *Server) request(st *stream, meta *corev3.Node, typeURL, nonce string, errDetail string, hasErr bool) {
	s.attach(st, meta)
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
	}
	s.notify()
}

// response records a response sent on a stream; s.mu is held.
func (s *Server) response(st *stream, typeURL, nonce, version string, names []string) {
	if st.sent == nil {
		st.sent = map[string][]sentResponse{}
	}
	st.sent[typeURL] = append(st.sent[typeURL], sentResponse{nonce: nonce, version: version, names: names})
	if n := st.node; n != nil && n.acks(typeURL, version) {
		n.pending[typeURL] = true
	}
}

// closed ends a stream; s.mu is held.
func (s *Server) closed(st *stream) {
	n := st.node
	if n == nil {
		return
	}
	n.streams--
	if n.streams > 0 {
		return
	}
	n.disconnectedAt = s.opts.Now()
	s.cache.ClearSnapshot(n.id)
	n.cls, n.prev, n.acked, n.earlier = nil, nil, nil, nil
	n.subscribed, n.pending = map[string]bool{}, map[string]bool{}
	s.log.Info("proxy disconnected", "node", n.id, "class", n.class)
	s.notify()
}

// callbacks are the go-control-plane server callbacks.
type callbacks struct{ s *Server }

func (c callbacks) OnStreamOpen(_ context.Context, id int64, _ string) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.streams[id] = &stream{}
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
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	st := c.s.streams[id]
	if st == nil {
		return nil
	}
	c.s.request(st, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
	return nil
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if st := c.s.streams[id]; st != nil {
		c.s.response(st, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo(), nil)
	}
}

func (c callbacks) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.deltas[id] = &stream{delta: true}
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
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	st := c.s.deltas[id]
	if st == nil {
		return nil
	}
	c.s.request(st, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
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
