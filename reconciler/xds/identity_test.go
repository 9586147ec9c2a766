package xds

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/catest"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/ca"
)

var (
	frontendID = cav1.Identity{TrustDomain: "shop.example", Namespace: "shop", ServiceAccount: "frontend"}
	reviewsID  = cav1.Identity{TrustDomain: "shop.example", Namespace: "shop", ServiceAccount: "reviews"}
)

// identityServer is an xDS server over mTLS with a real mesh CA's serving
// certificate, that binds streams with a RecordAuthorizer over two placed
// proxies and localizes their classes from its own placements.
func identityServer(t *testing.T) (*Server, string, *ca.CA) {
	t.Helper()
	c, err := ca.New(ca.Config{TrustDomain: "shop.example", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := c.ServerTLS(cav1.Identity{TrustDomain: "shop.example", Namespace: "weft-system", ServiceAccount: "weft"},
		[]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, tls.RequireAndVerifyClientCert)
	if err != nil {
		t.Fatal(err)
	}
	records := map[string]NodeRecord{
		"frontend-v1-0": {Identity: frontendID, Class: "frontend-v1"},
		"reviews-v1-0":  {Identity: reviewsID, Class: "reviews-v1"},
	}
	placements := map[string]compiler.Placement{
		"frontend-v1-0": {IP: "127.0.0.2", AppPorts: map[uint32]uint32{8080: 18080}},
		"reviews-v1-0":  {IP: "127.0.0.3", AppPorts: map[uint32]uint32{9080: 19080}},
	}
	s, addr := startServer(t, Options{
		TLS: tlsCfg,
		Authorizer: RecordAuthorizer{Lookup: func(id string) (NodeRecord, bool) {
			r, ok := records[id]
			return r, ok
		}},
		PerNode: func(id string, cls *compiler.Class) (*compiler.Class, error) {
			p, ok := placements[id]
			if !ok {
				return nil, fmt.Errorf("no placement for %s", id)
			}
			return compiler.Localize(cls, p)
		},
	})
	return s, addr, c
}

// workloadTLS is the client TLS of a workload: a certificate for id
// signed by the mesh CA, as its agent holds.
func workloadTLS(t *testing.T, c *ca.CA, id cav1.Identity) grpc.DialOption {
	t.Helper()
	return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs:      c.TrustPool(),
		ServerName:   "localhost",
		Certificates: []tls.Certificate{catest.WorkloadCert(t, c, id)},
	}))
}

// inboundEndpoint is where the inbound cluster of port p that client c
// received sends requests ("" if it has none).
func inboundEndpoint(t *testing.T, c *client, p uint32) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.raw[resource.ClusterType] {
		cl := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(cl); err != nil {
			t.Fatal(err)
		}
		if cl.GetName() != compiler.InboundClusterName(p) {
			continue
		}
		sa := cl.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		return fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
	}
	return ""
}

// TestStreamsBoundToIdentity: the node and class a stream is served are
// those the control plane placed for the SPIFFE id of its verified client
// certificate. With the reviews workload's real CA-issued certificate, a
// stream claiming frontend's node, or frontend's class, or an unknown
// node, or switching to frontend's node after its first request, is
// refused with PermissionDenied, receives nothing, and is listed in the
// status; a stream of reviews' own node with crafted placement metadata
// is served reviews' placement from the control plane's records. The real
// proxies keep being served, and the next revision reaches them.
func TestStreamsBoundToIdentity(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, 9080, "one", "")
	r1 := compileDir(t, dir, "r1")
	writeMesh(t, dir, 9080, "two", "")
	r2 := compileDir(t, dir, "r2")
	s, addr, c := identityServer(t)
	if err := s.Publish("r1", r1); err != nil {
		t.Fatal(err)
	}
	asFrontend, asReviews := workloadTLS(t, c, frontendID), workloadTLS(t, c, reviewsID)
	fe := dialNode(t, addr, &corev3.Node{Id: "frontend-v1-0", Cluster: "frontend-v1"}, false, asFrontend)
	rv := dialNode(t, addr, &corev3.Node{Id: "reviews-v1-0", Cluster: "reviews-v1"}, false, asReviews)
	waitStatus(t, s, 10*time.Second, "the real proxies in sync", func(st status.Status) bool { return inSync("frontend-v1-0")(st) && inSync("reviews-v1-0")(st) })

	refused := []struct {
		name   string
		node   *corev3.Node
		delta  bool
		reason string
	}{
		{"frontend's node and class", &corev3.Node{Id: "frontend-v1-0", Cluster: "frontend-v1"}, false, "runs as " + frontendID.String()},
		{"frontend's node, delta", &corev3.Node{Id: "frontend-v1-0", Cluster: "frontend-v1"}, true, "runs as " + frontendID.String()},
		{"own node, frontend's class", &corev3.Node{Id: "reviews-v1-0", Cluster: "frontend-v1"}, false, `claims class "frontend-v1"`},
		{"own node, frontend's class in metadata", &corev3.Node{Id: "reviews-v1-0", Cluster: "reviews-v1",
			Metadata: nodeMeta(map[string]string{ClassMetadataKey: "frontend-v1"})}, false, `claims class "frontend-v1"`},
		{"a node nobody placed", &corev3.Node{Id: "catalog-v1-1", Cluster: "catalog-v1"}, false, "not a proxy that this control plane placed"},
	}
	for _, tc := range refused {
		a := dialNode(t, addr, tc.node, tc.delta, asReviews)
		err := a.streamErr(t, 10*time.Second)
		if grpcstatus.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: stream ended with %v, want PermissionDenied naming %q", tc.name, err, tc.reason)
		}
		if n := a.total(); n != 0 {
			t.Errorf("%s: the refused stream received %d responses", tc.name, n)
		}
	}

	// A stream bound to its own node cannot switch to another.
	conn, err := grpc.NewClient(addr, asReviews)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sw, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, Node: &corev3.Node{Id: "reviews-v1-0", Cluster: "reviews-v1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.Recv(); err != nil {
		t.Fatalf("reviews' own stream: %v", err)
	}
	_ = sw.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ListenerType, Node: &corev3.Node{Id: "frontend-v1-0", Cluster: "frontend-v1"}})
	for {
		resp, err := sw.Recv()
		if err != nil {
			if grpcstatus.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "cannot change") {
				t.Errorf("switching node: %v, want PermissionDenied", err)
			}
			break
		}
		if resp.GetTypeUrl() == resource.ListenerType {
			t.Fatalf("the switched stream was sent listeners (version %s)", resp.GetVersionInfo())
		}
	}

	// Crafted placement metadata on reviews' own node changes nothing: the
	// placement is the control plane's record.
	crafted := dialNode(t, addr, &corev3.Node{Id: "reviews-v1-0", Cluster: "reviews-v1", Metadata: nodeMeta(map[string]string{
		"weft.local.ip": "127.0.0.99", "weft.local.appPorts": "9080=1", ClassMetadataKey: "reviews-v1",
	})}, false, asReviews)
	crafted.waitVersion(t, 10*time.Second, r1.Class("reviews-v1").SnapshotVersion, allTypes...)
	if got := inboundEndpoint(t, crafted, 9080); got != "127.0.0.3:19080" {
		t.Errorf("stream with crafted metadata: inbound|9080 goes to %q, want reviews' placement 127.0.0.3:19080", got)
	}
	crafted.close()

	st := s.Status()
	if len(st.RefusedStreams) < 4 {
		t.Fatalf("refused streams: %+v, want the refusals listed", st.RefusedStreams)
	}
	var sawFrontend bool
	for _, r := range st.RefusedStreams {
		if r.Identity != reviewsID.String() || r.Reason == "" || r.At.IsZero() || r.Address == "" {
			t.Errorf("refused stream %+v, want reviews' identity, a reason, a time and an address", r)
		}
		if r.NodeID == "frontend-v1-0" && r.Class == "frontend-v1" {
			sawFrontend = r.Count == 2 // SotW and delta
		}
	}
	if !sawFrontend {
		t.Errorf("refused streams %+v lack reviews claiming frontend-v1-0 twice", st.RefusedStreams)
	}
	for _, p := range st.Proxies {
		want := map[string]string{"frontend-v1-0": frontendID.String(), "reviews-v1-0": reviewsID.String()}[p.NodeID]
		if want == "" || p.Identity != want {
			t.Errorf("proxy %s (identity %q) in the status; want only the two real ones with their identities", p.NodeID, p.Identity)
		}
	}

	// The real proxies are served the next revision.
	if err := s.Publish("r2", r2); err != nil {
		t.Fatal(err)
	}
	fe.waitVersion(t, 10*time.Second, r2.Class("frontend-v1").SnapshotVersion, allTypes...)
	st = waitStatus(t, s, 10*time.Second, "r2 applied", func(st status.Status) bool { return st.LastAppliedRevision == "r2" })
	rv.waitVersion(t, 10*time.Second, r2.Class("reviews-v1").SnapshotVersion, allTypes...)
	if !inSync("reviews-v1-0")(st) || inboundEndpoint(t, fe, 8080) != "127.0.0.2:18080" || inboundEndpoint(t, rv, 9080) != "127.0.0.3:19080" {
		t.Errorf("after r2: %s", dumpStatus(st))
	}
}

// TestPerNodeFailureAffectsOnlyThatNode: a node whose variant cannot be
// made (no placement yet) does not stop a revision for the others; it
// shows the error, holds the rollout open, and is served as soon as its
// variant can be made, without another publish.
func TestPerNodeFailureAffectsOnlyThatNode(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, 9080, "one", "")
	r1 := compileDir(t, dir, "r1")
	writeMesh(t, dir, 9080, "two", "")
	r2 := compileDir(t, dir, "r2")
	var failing atomic.Bool
	failing.Store(true)
	s, addr := startServer(t, Options{PerNode: func(id string, c *compiler.Class) (*compiler.Class, error) {
		if id == "bad" && failing.Load() {
			return nil, fmt.Errorf("no placement for %s yet", id)
		}
		return c, nil
	}})
	if err := s.Publish("r1", r1); err != nil {
		t.Fatal(err)
	}
	good := dial(t, addr, "good", "frontend-v1", false)
	bad := dial(t, addr, "bad", "frontend-v1", true)
	good.waitVersion(t, 10*time.Second, r1.Class("frontend-v1").SnapshotVersion, allTypes...)
	waitStatus(t, s, 10*time.Second, "bad connected, without its variant", func(st status.Status) bool {
		p := proxy(st, "bad")
		return p != nil && p.Connected && strings.Contains(p.Error, "no placement for bad yet")
	})
	if err := s.Publish("r2", r2); err != nil {
		t.Fatalf("publish with a failing node: %v", err)
	}
	v2 := r2.Class("frontend-v1").SnapshotVersion
	good.waitVersion(t, 10*time.Second, v2, allTypes...)
	st := waitStatus(t, s, 10*time.Second, "r2 rolling out, waiting for bad only", func(st status.Status) bool {
		return inSync("good")(st) && st.Rollout != nil && st.Rollout.WaitingCount == 1 && st.Rollout.Waiting[0] == "bad"
	})
	if p := proxy(st, "bad"); !strings.Contains(p.Error, "no placement for bad yet") || bad.total() != 0 {
		t.Errorf("bad: %+v, %d responses; want the variant's error and nothing served", p, bad.total())
	}
	failing.Store(false)
	bad.waitVersion(t, 15*time.Second, v2, allTypes...)
	st = waitStatus(t, s, 10*time.Second, "r2 applied", func(st status.Status) bool { return st.LastAppliedRevision == "r2" && st.Rollout == nil })
	if p := proxy(st, "bad"); p.Error != "" || !p.InSync {
		t.Errorf("bad after the retry: %+v", p)
	}
}
