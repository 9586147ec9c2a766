package xds

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/api/status"
)

// Shared helpers: an in-process ADS client (SotW or delta, wildcard
// subscriptions to the four types, ACKing every response) used by the
// tests and the benchmarks, a started Server, mesh fixtures.

// startServer serves s on 127.0.0.1:0 and returns its address.
func startServer(tb testing.TB, opts Options) (*Server, string) {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go s.Serve(ln)
	tb.Cleanup(s.Stop)
	return s, ln.Addr().String()
}

// client is an xDS client speaking ADS over a real gRPC connection.
type client struct {
	id, class string
	delta     bool

	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	err       error                      // why the stream ended
	versions  map[string]string          // type URL -> version of the last response
	names     map[string]map[string]bool // type URL -> resources held
	raw       map[string][]*anypb.Any    // SotW: type URL -> resources of the last accepted response
	responses int
	changed   chan struct{}
	// nack, when set, decides whether to reject a response (non-empty
	// message) instead of ACKing it.
	nack func(typeURL, version string) string
}

var allTypes = compiler.ResourceTypes

// dial connects a client and subscribes it to every type (wildcard).
func dial(tb testing.TB, addr, id, class string, delta bool) *client {
	tb.Helper()
	return dialWith(tb, addr, id, class, delta, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func dialWith(tb testing.TB, addr, id, class string, delta bool, opts ...grpc.DialOption) *client {
	tb.Helper()
	return dialNode(tb, addr, &corev3.Node{Id: id, Cluster: class}, delta, opts...)
}

// dialNode connects a client that claims node (id, cluster, metadata).
func dialNode(tb testing.TB, addr string, node *corev3.Node, delta bool, opts ...grpc.DialOption) *client {
	tb.Helper()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &client{id: node.GetId(), class: node.GetCluster(), delta: delta, conn: conn, cancel: cancel, done: make(chan struct{}),
		versions: map[string]string{}, names: map[string]map[string]bool{}, raw: map[string][]*anypb.Any{}, changed: make(chan struct{})}
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	if delta {
		st, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		for i, t := range allTypes {
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t}
			if i == 0 {
				req.Node = node
			}
			if err := st.Send(req); err != nil {
				break // the server ended the stream (a refusal): Recv says why
			}
		}
		go c.runDelta(st)
	} else {
		st, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		for _, t := range allTypes {
			if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: t, Node: node}); err != nil {
				break // the server ended the stream (a refusal): Recv says why
			}
		}
		go c.runSotW(st)
	}
	tb.Cleanup(c.close)
	return c
}

func (c *client) close() {
	c.cancel()
	<-c.done
	c.conn.Close()
}

// ended records why the stream ended and wakes waiters.
func (c *client) ended(err error) {
	c.mu.Lock()
	c.err = err
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// streamErr waits until the stream has ended and returns why.
func (c *client) streamErr(tb testing.TB, d time.Duration) error {
	tb.Helper()
	select {
	case <-c.done:
	case <-time.After(d):
		tb.Fatalf("client %s: the stream did not end within %s", c.id, d)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// total is the number of responses received.
func (c *client) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.responses
}

func (c *client) runSotW(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient) {
	defer close(c.done)
	for {
		resp, err := st.Recv()
		if err != nil {
			c.ended(err)
			return
		}
		t := resp.GetTypeUrl()
		req := &discoveryv3.DiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}
		c.mu.Lock()
		msg := ""
		if c.nack != nil {
			msg = c.nack(t, resp.GetVersionInfo())
		}
		if msg != "" {
			req.VersionInfo = c.versions[t]
			req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: msg}
		} else {
			names := make(map[string]bool, len(resp.GetResources()))
			for i := range resp.GetResources() {
				names[fmt.Sprint(i)] = true // SotW: the count is what matters here
			}
			c.names[t] = names
			c.raw[t] = resp.GetResources()
			c.versions[t] = resp.GetVersionInfo()
			req.VersionInfo = resp.GetVersionInfo()
		}
		c.responses++
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err := st.Send(req); err != nil {
			return
		}
	}
}

func (c *client) runDelta(st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) {
	defer close(c.done)
	for {
		resp, err := st.Recv()
		if err != nil {
			c.ended(err)
			return
		}
		t := resp.GetTypeUrl()
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}
		c.mu.Lock()
		msg := ""
		if c.nack != nil {
			msg = c.nack(t, resp.GetSystemVersionInfo())
		}
		if msg != "" {
			req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: msg}
		} else {
			names := c.names[t]
			if names == nil {
				names = map[string]bool{}
				c.names[t] = names
			}
			for _, r := range resp.GetResources() {
				names[r.GetName()] = true
			}
			for _, r := range resp.GetRemovedResources() {
				delete(names, r)
			}
			c.versions[t] = resp.GetSystemVersionInfo()
		}
		c.responses++
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err := st.Send(req); err != nil {
			return
		}
	}
}

// waitVersion waits until the client holds version v for every type in
// types.
func (c *client) waitVersion(tb testing.TB, d time.Duration, v string, types ...string) {
	tb.Helper()
	deadline := time.After(d)
	for {
		c.mu.Lock()
		ok := true
		for _, t := range types {
			if c.versions[t] != v {
				ok = false
			}
		}
		ch := c.changed
		got := fmt.Sprint(c.versions)
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			tb.Fatalf("client %s: no version %s for %v within %s; has %s", c.id, v, types, d, got)
		}
	}
}

func (c *client) count(t string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.names[t])
}

// waitStatus polls the server's status until cond holds.
func waitStatus(tb testing.TB, s *Server, d time.Duration, what string, cond func(status.Status) bool) status.Status {
	tb.Helper()
	deadline := time.After(d)
	for {
		ch := s.Changed()
		st := s.Status()
		if cond(st) {
			return st
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			tb.Fatalf("timed out after %s waiting for %s; status:\n%s", d, what, dumpStatus(st))
		}
	}
}

func dumpStatus(st status.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "revision %q, last attempt %+v\n", st.Revision, st.LastAttempt)
	for _, p := range st.Proxies {
		fmt.Fprintf(&b, "  %+v\n", p)
		if p.LastNACK != nil {
			fmt.Fprintf(&b, "    NACK %+v\n", *p.LastNACK)
		}
	}
	return b.String()
}

func proxy(st status.Status, id string) *status.Proxy {
	for i := range st.Proxies {
		if st.Proxies[i].NodeID == id {
			return &st.Proxies[i]
		}
	}
	return nil
}

// inSync: the node is connected and has ACKed the served version of its
// class.
func inSync(id string) func(status.Status) bool {
	return func(st status.Status) bool {
		p := proxy(st, id)
		return p != nil && p.Connected && p.InSync && p.AckedVersion == st.Classes[p.Class]
	}
}

// writeMesh writes a two-service mesh repository (frontend calls
// reviews; mTLS disabled, so plaintext end to end) into dir. reviews'
// only endpoint is 127.0.0.1:appPort and its route sets x-mesh-route to
// route. extra is spliced into reviews' definition.
func writeMesh(tb testing.TB, dir string, appPort int, route, extra string) {
	tb.Helper()
	files := map[string]string{
		"cue.mod/module.cue": "module: \"example.com/shop\"\nlanguage: version: \"v0.17.0\"\n",
		"mesh.cue": fmt.Sprintf(`package shop

import "weft.dev/weft"

mesh: weft.#Mesh & {
	name:        "shop"
	trustDomain: "shop.example"
	defaults: {namespace: "shop", mtls: "disable"}
	services: {
		frontend: {
			ports: http: {port: 8080, protocol: "http"}
			versions: v1: {labels: version: "v1", endpoints: ["127.0.0.1:8080"]}
			calls: ["reviews"]
		}
		reviews: {
			ports: http: {port: %d, protocol: "http"}
			versions: v1: {labels: version: "v1", endpoints: ["127.0.0.1:%d"]}
			routes: {
				all: {
					match: path: prefix: "/"
					headers: request: set: {"x-mesh-route": %q}
				}
			}
			%s
		}
	}
}
`, appPort, appPort, route, extra),
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// nodeMeta is a node with string metadata fields.
func nodeMeta(kv map[string]string) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range kv {
		s.Fields[k] = structpb.NewStringValue(v)
	}
	return s
}
