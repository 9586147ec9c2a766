package xds

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/api/status"
)

// Peer is the client of an xDS stream as the TLS stack verified it. It
// comes from the gRPC connection's TLS state (the chains that the
// handshake verified against the server's ClientCAs), never from
// anything the client sends on the stream.
type Peer struct {
	// Identity is the SPIFFE id, the only URI SAN, of the verified
	// client certificate; zero when there is none (IdentityError says
	// why: plaintext, no verified certificate, not a SPIFFE id).
	Identity      cav1.Identity
	IdentityError string
	// Addr is the client's address.
	Addr string
}

// Verified reports whether the peer has a verified SPIFFE identity.
func (p Peer) Verified() bool { return p.Identity != (cav1.Identity{}) }

// Binding is the node a stream is served as: the node id that keys its
// snapshot and its status, and its proxy class.
type Binding struct {
	NodeID string
	Class  string
}

// Authorizer decides, for every xDS stream, which node it is. It is
// called once per stream, with the first request's node (what the client
// claims: id, cluster, metadata) and the peer's verified identity, before
// anything is served on the stream. An error refuses the stream with
// PermissionDenied; its text is the reason shown in the status's refused
// streams (it may name the claim and the identity, not secrets).
//
// The server serves the stream as the returned Binding, whatever the
// claim says (a node id that differs from the claim replaces it); later
// requests on the stream may repeat the first node but not change it.
// Placement data (addresses, ports) must come from the control plane's
// own records (Options.PerNode looks it up by node id), never from the
// claim.
//
// Local mode (`weft up`) uses a RecordAuthorizer over the instances it
// placed; the Kubernetes controller will look the node up among pods (the
// identity from the pod's service account, the class from its labels).
// Authorize may be called concurrently for different streams and must
// not call back into the Server.
type Authorizer interface {
	Authorize(ctx context.Context, p Peer, claimed *corev3.Node) (Binding, error)
}

// AuthorizerFunc is a function that is an Authorizer.
type AuthorizerFunc func(ctx context.Context, p Peer, claimed *corev3.Node) (Binding, error)

// Authorize implements Authorizer.
func (f AuthorizerFunc) Authorize(ctx context.Context, p Peer, claimed *corev3.Node) (Binding, error) {
	return f(ctx, p, claimed)
}

// TrustClaims serves a stream as the node it claims: its node id, and the
// class of ClaimedClass. It checks nothing else, so it is for plaintext
// tests and tools only; a server that proxies reach over mTLS uses a
// RecordAuthorizer or its own Authorizer. It is the default when
// Options.Authorizer is nil.
var TrustClaims Authorizer = AuthorizerFunc(func(_ context.Context, _ Peer, claimed *corev3.Node) (Binding, error) {
	return Binding{NodeID: claimed.GetId(), Class: ClaimedClass(claimed)}, nil
})

// ClaimedClass is the proxy class a node claims: its metadata field
// "weft.class", else node.cluster.
func ClaimedClass(n *corev3.Node) string {
	if v := n.GetMetadata().GetFields()[ClassMetadataKey]; v != nil && v.GetStringValue() != "" {
		return v.GetStringValue()
	}
	return n.GetCluster()
}

// NodeRecord is what the control plane knows about a proxy it placed: the
// identity its workload runs as and its proxy class.
type NodeRecord struct {
	Identity cav1.Identity
	Class    string
}

// RecordAuthorizer authorizes a stream whose claimed node id is one the
// control plane knows (Lookup), when the peer's verified SPIFFE id is the
// node's identity and every class the node claims (node.cluster and the
// weft.class metadata, where set) is the node's class. It is local mode's
// Authorizer (Lookup: the instances `weft up` placed).
type RecordAuthorizer struct {
	// Lookup returns the record of a node id, false if there is none. It
	// must be safe for concurrent use.
	Lookup func(nodeID string) (NodeRecord, bool)
}

// Authorize implements Authorizer.
func (a RecordAuthorizer) Authorize(_ context.Context, p Peer, claimed *corev3.Node) (Binding, error) {
	if !p.Verified() {
		why := p.IdentityError
		if why == "" {
			why = "no verified client certificate"
		}
		return Binding{}, fmt.Errorf("no SPIFFE identity: %s", why)
	}
	id := claimed.GetId()
	if id == "" {
		return Binding{}, errors.New("the node has no id")
	}
	rec, ok := a.Lookup(id)
	if !ok {
		return Binding{}, fmt.Errorf("node %q is not a proxy that this control plane placed", id)
	}
	if rec.Identity != p.Identity {
		return Binding{}, fmt.Errorf("node %q runs as %s; the client certificate is %s", id, rec.Identity, p.Identity)
	}
	claims := []string{claimed.GetCluster()}
	if v := claimed.GetMetadata().GetFields()[ClassMetadataKey]; v != nil {
		claims = append(claims, v.GetStringValue())
	}
	for _, c := range claims {
		if c != "" && c != rec.Class {
			return Binding{}, fmt.Errorf("node %q is of class %s, the stream claims class %q", id, rec.Class, c)
		}
	}
	return Binding{NodeID: id, Class: rec.Class}, nil
}

// peerOf is the verified peer of a stream's context.
func peerOf(ctx context.Context) Peer {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Peer{IdentityError: "no peer information"}
	}
	out := Peer{}
	if p.Addr != nil {
		out.Addr = p.Addr.String()
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		out.IdentityError = "the connection is not TLS"
		return out
	}
	if len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		out.IdentityError = "no verified client certificate"
		return out
	}
	id, err := certIdentity(ti.State.VerifiedChains[0][0])
	if err != nil {
		out.IdentityError = err.Error()
		return out
	}
	out.Identity = id
	return out
}

// certIdentity is the SPIFFE id of a workload certificate: its only URI
// SAN.
func certIdentity(c *x509.Certificate) (cav1.Identity, error) {
	return identityFromURIs(c.URIs)
}

// identityFromURIs is the SPIFFE id among a certificate's URI SANs: there
// must be exactly one URI, and it must be a SPIFFE id.
func identityFromURIs(uris []*url.URL) (cav1.Identity, error) {
	if len(uris) != 1 {
		return cav1.Identity{}, fmt.Errorf("the client certificate has %d URI SANs, want exactly one SPIFFE id", len(uris))
	}
	id, err := cav1.IdentityFromURL(uris[0])
	if err != nil {
		return cav1.Identity{}, fmt.Errorf("the client certificate's URI SAN: %w", err)
	}
	return id, nil
}

// bind authorizes a stream at its first request that names a node, and
// checks that later requests do not change the node. It rewrites the
// request's node id (in place: the xDS server keeps that message for the
// requests that omit the node) to the bound one. The returned error, a
// gRPC status, ends the stream.
func (s *Server) bind(id int64, delta bool, node *corev3.Node) error {
	s.mu.Lock()
	st := s.streamOf(id, delta)
	if st == nil {
		s.mu.Unlock()
		return nil
	}
	if st.binding != nil {
		defer s.mu.Unlock()
		if node == nil || node == st.nodeMsg {
			return nil
		}
		if !proto.Equal(node, st.claimed) {
			err := errors.New("a stream's node cannot change after its first request")
			s.refuse(st.peer, node, err)
			return grpcstatus.Error(codes.PermissionDenied, "xDS stream refused: "+err.Error())
		}
		node.Id = st.binding.NodeID
		st.nodeMsg = node
		return nil
	}
	if node == nil {
		s.mu.Unlock()
		return grpcstatus.Error(codes.InvalidArgument, "xDS stream refused: the first request carries no node")
	}
	p := st.peer
	s.mu.Unlock()

	// Outside s.mu: the authorizer may take its owner's locks, which are
	// held while publishing.
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	b, err := s.opts.Authorizer.Authorize(ctx, p, node)
	cancel()
	if err == nil && (b.NodeID == "" || b.Class == "") {
		err = fmt.Errorf("the authorizer gave no node id or class (%+v)", b)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.refuse(p, node, err)
		return grpcstatus.Error(codes.PermissionDenied, "xDS stream refused: "+err.Error())
	}
	st.peer = p
	st.binding = &b
	st.claimed = proto.Clone(node).(*corev3.Node)
	st.nodeMsg = node
	node.Id = b.NodeID
	return nil
}

// maxRefused bounds Status.RefusedStreams.
const maxRefused = 32

// refuse records a refused stream; s.mu is held.
func (s *Server) refuse(p Peer, claimed *corev3.Node, err error) {
	now := s.opts.Now()
	r := status.RefusedStream{
		At: now, First: now, Count: 1,
		Address: p.Addr, NodeID: truncate(claimed.GetId(), 256), Class: truncate(ClaimedClass(claimed), 256),
		Reason: truncate(err.Error(), 1024),
	}
	if p.Verified() {
		r.Identity = p.Identity.String()
	}
	for i := range s.refused {
		o := &s.refused[i]
		if o.Identity == r.Identity && o.NodeID == r.NodeID && o.Class == r.Class && o.Reason == r.Reason {
			o.At, o.Count, o.Address = now, o.Count+1, r.Address
			r = *o
			s.refused = append(s.refused[:i], s.refused[i+1:]...)
			break
		}
	}
	s.refused = append([]status.RefusedStream{r}, s.refused...)
	if len(s.refused) > maxRefused {
		s.refused = s.refused[:maxRefused]
	}
	s.warn.warn("refused|"+r.Identity+"|"+r.NodeID, "xDS stream refused", "identity", r.Identity, "address", r.Address,
		"claimedNode", r.NodeID, "claimedClass", r.Class, "reason", r.Reason)
	s.notify()
}

// refusedStreams is a copy of the refused streams, newest first; s.mu is
// held.
func (s *Server) refusedStreams() []status.RefusedStream {
	if len(s.refused) == 0 {
		return nil
	}
	out := append([]status.RefusedStream(nil), s.refused...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	return out
}

// truncate cuts s to at most n bytes (on a rune boundary), marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("…(%d bytes more)", len(s)-cut)
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
