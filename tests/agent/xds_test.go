package agent_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/catest"
	"github.com/weft-dev/weft/internal/tooltest"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/sidecar/agent"
)

// controlPlane is a go-control-plane xDS server (ADS, SotW and delta) on
// 127.0.0.1 that requires mTLS with a mesh certificate, as the reconciler's
// does. It records who connected and what Envoy sent.
type testControlPlane struct {
	t     *testing.T
	cache cache.SnapshotCache
	addr  string
	tls   *tls.Config

	mu      sync.Mutex
	gs      *grpc.Server
	peers   []cav1.Identity
	acks    []ack // requests that carry a version (ACKs, NACKs, re-ACKs)
	streams atomic.Int64
}

type ack struct {
	typeURL, version, errMsg string
	delta                    bool
	at                       time.Time
}

func newControlPlane(t *testing.T, e *meshEnv) *testControlPlane {
	t.Helper()
	tlsCfg, err := e.ca.ServerTLS(controlPlane, []string{"localhost"}, loopback, tls.RequireAndVerifyClientCert)
	if err != nil {
		t.Fatal(err)
	}
	cp := &testControlPlane{t: t, cache: cache.NewSnapshotCache(true, cache.IDHash{}, nil), tls: tlsCfg}
	cp.start("127.0.0.1:0")
	t.Cleanup(cp.stop)
	return cp
}

func (cp *testControlPlane) start(addr string) {
	cp.t.Helper()
	var ln net.Listener
	var err error
	// After a stop the port may take a moment to be free again.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		cp.t.Fatal(err)
	}
	cb := serverv3.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, _ int64, _ string) error {
			cp.recordPeer(ctx)
			return nil
		},
		DeltaStreamOpenFunc: func(ctx context.Context, _ int64, _ string) error {
			cp.recordPeer(ctx)
			return nil
		},
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			if r.VersionInfo != "" {
				cp.mu.Lock()
				cp.acks = append(cp.acks, ack{typeURL: r.TypeUrl, version: r.VersionInfo, errMsg: r.GetErrorDetail().GetMessage(), at: time.Now()})
				cp.mu.Unlock()
			}
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			cp.mu.Lock()
			defer cp.mu.Unlock()
			if r.ResponseNonce != "" {
				cp.acks = append(cp.acks, ack{typeURL: r.TypeUrl, version: "nonce:" + r.ResponseNonce, errMsg: r.GetErrorDetail().GetMessage(), delta: true, at: time.Now()})
			}
			for name, v := range r.InitialResourceVersions {
				cp.acks = append(cp.acks, ack{typeURL: r.TypeUrl, version: name + "@" + v, delta: true, at: time.Now()})
			}
			return nil
		},
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(cp.tls)))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(context.Background(), cp.cache, cb))
	go gs.Serve(ln)
	cp.mu.Lock()
	cp.gs, cp.addr = gs, ln.Addr().String()
	cp.mu.Unlock()
}

func (cp *testControlPlane) stop() {
	cp.mu.Lock()
	gs := cp.gs
	cp.gs = nil
	cp.mu.Unlock()
	if gs != nil {
		gs.Stop()
	}
}

func (cp *testControlPlane) recordPeer(ctx context.Context) {
	cp.streams.Add(1)
	p, ok := peer.FromContext(ctx)
	if !ok {
		return
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return
	}
	id, err := ca.PeerIdentity(info.State)
	if err != nil {
		cp.t.Errorf("xDS peer: %v", err)
		return
	}
	cp.mu.Lock()
	cp.peers = append(cp.peers, id)
	cp.mu.Unlock()
}

func (cp *testControlPlane) acksSince(since time.Time) []ack {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []ack
	for _, a := range cp.acks {
		if !a.at.Before(since) {
			out = append(out, a)
		}
	}
	return out
}

// serve sets the snapshot of node to version with the given listeners.
func (cp *testControlPlane) serve(t *testing.T, node, version string, listeners ...types.Resource) {
	t.Helper()
	snap, err := cache.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ListenerType: listeners,
		resource.ClusterType:  {},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

// hasListener reports whether Envoy's admin lists the listener name.
func (r *runningAgent) hasListener(t *testing.T, name string) bool {
	return strings.Contains(r.adminGet(t, "/listeners"), name+"::")
}

// TestAgentProxiesXDS: Envoy's ADS stream goes through the agent's socket
// to an xDS server that requires mTLS; Envoy ends up with the served
// listener and ACKs it, in state-of-the-world and in delta mode; the
// control plane saw the workload's SPIFFE id.
func TestAgentProxiesXDS(t *testing.T) {
	for _, delta := range []bool{false, true} {
		name := map[bool]string{false: "sotw", true: "delta"}[delta]
		t.Run(name, func(t *testing.T) {
			e := newMeshEnv(t)
			cp := newControlPlane(t, e)
			port := int(tooltest.FreePorts(t, 1)[0])
			node := "orders-v1~" + name
			cp.serve(t, node, "v1", mtlsListener(t, "inbound-"+name, port))
			a := e.startAgent(t, name, func(c *agent.Config) {
				c.XDSAddress, c.XDSServerName, c.DeltaXDS = cp.addr, "localhost", delta
			})
			a.waitReady(t, 30*time.Second)
			if !a.hasListener(t, "inbound-"+name) {
				t.Fatalf("envoy /listeners lacks inbound-%s:\n%s", name, a.adminGet(t, "/listeners"))
			}
			client := catest.WorkloadCert(t, e.ca, frontend)
			if body, _, err := mtlsGet(port, e.ca.TrustPool(), &client); err != nil || body != "hello from inbound-"+name {
				t.Errorf("request to the xDS-served listener: %q %v", body, err)
			}
			eventually(t, 10*time.Second, "Envoy ACKs the listener", func() bool {
				for _, a := range cp.acksSince(time.Time{}) {
					if a.typeURL == resource.ListenerType && a.errMsg == "" && (a.version == "v1" || a.delta) {
						return true
					}
				}
				return false
			})
			for _, a := range cp.acksSince(time.Time{}) {
				if a.errMsg != "" {
					t.Errorf("NACK of %s: %s", a.typeURL, a.errMsg)
				}
			}
			cp.mu.Lock()
			peers := append([]cav1.Identity(nil), cp.peers...)
			cp.mu.Unlock()
			if len(peers) == 0 || peers[0] != orders {
				t.Errorf("xDS peers %v, want the workload %s over mTLS", peers, orders)
			}
			// A new version reaches Envoy through the same stream.
			port2 := int(tooltest.FreePorts(t, 1)[0])
			cp.serve(t, node, "v2", mtlsListener(t, "inbound-"+name, port), mtlsListener(t, "second-"+name, port2))
			eventually(t, 10*time.Second, "the second listener reaches Envoy", func() bool { return a.hasListener(t, "second-"+name) })
		})
	}
}

// TestAgentReadiness: the agent is not ready while Envoy is live but has
// no listeners, and becomes ready once the control plane serves one.
func TestAgentReadiness(t *testing.T) {
	e := newMeshEnv(t)
	cp := newControlPlane(t, e)
	node := "orders-v1~ready"
	cp.serve(t, node, "empty")
	a := e.startAgent(t, "ready", func(c *agent.Config) {
		c.XDSAddress, c.XDSServerName = cp.addr, "localhost"
	})
	eventually(t, 30*time.Second, "envoy is LIVE", func() bool {
		_, resp, err := tooltest.TryAdminGet(a.admin, "/ready")
		return err == nil && strings.TrimSpace(resp) == "LIVE"
	})
	time.Sleep(time.Second) // a few readiness polls
	select {
	case <-a.Ready():
		t.Fatalf("agent ready while Envoy has no listeners: %+v", a.Status())
	default:
	}
	if st := a.Status(); st.Ready || !strings.Contains(st.Reason, "no listeners") {
		t.Errorf("status %+v, want not ready: no listeners", st)
	}
	if code := httpStatus("http://" + a.HealthAddr() + "/ready"); code != 503 {
		t.Errorf("agent /ready %d, want 503", code)
	}
	port := int(tooltest.FreePorts(t, 1)[0])
	cp.serve(t, node, "v1", mtlsListener(t, "inbound", port))
	a.waitReady(t, 15*time.Second)
	if code := httpStatus("http://" + a.HealthAddr() + "/ready"); code != 200 {
		t.Errorf("agent /ready %d after the listener arrived, want 200", code)
	}
}

// TestAgentUpstreamRestart: the control plane goes away under continuous
// traffic and comes back on the same address. Envoy keeps serving its
// listener meanwhile (zero failed requests), reconnects through the agent
// and re-ACKs the version it has.
func TestAgentUpstreamRestart(t *testing.T) {
	for _, delta := range []bool{false, true} {
		name := map[bool]string{false: "sotw", true: "delta"}[delta]
		t.Run(name, func(t *testing.T) {
			e := newMeshEnv(t)
			cp := newControlPlane(t, e)
			port := int(tooltest.FreePorts(t, 1)[0])
			node := "orders-v1~restart-" + name
			cp.serve(t, node, "v1", mtlsListener(t, "inbound", port))
			a := e.startAgent(t, "restart-"+name, func(c *agent.Config) {
				c.XDSAddress, c.XDSServerName, c.DeltaXDS = cp.addr, "localhost", delta
			})
			a.waitReady(t, 30*time.Second)

			client := catest.WorkloadCert(t, e.ca, frontend)
			var requests, failed atomic.Int64
			var firstErr atomic.Value
			stop, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, _, err := mtlsGet(port, e.ca.TrustPool(), &client); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
					requests.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
			}()
			streamsBefore := cp.streams.Load()
			cp.stop()
			time.Sleep(2 * time.Second) // Envoy is on its own
			if !a.hasListener(t, "inbound") {
				t.Errorf("envoy lost its listener while the control plane was away")
			}
			restarted := time.Now()
			cp.start(cp.addr)
			eventually(t, 20*time.Second, "Envoy reconnects and re-ACKs the listener version", func() bool {
				for _, ack := range cp.acksSince(restarted) {
					if ack.typeURL == resource.ListenerType && ack.errMsg == "" && (ack.version == "v1" || strings.HasPrefix(ack.version, "inbound@")) {
						return true
					}
				}
				return false
			})
			t.Logf("reconnected and re-ACKed %s after the restart", time.Since(restarted).Round(time.Millisecond))
			time.Sleep(500 * time.Millisecond)
			close(stop)
			<-done
			if cp.streams.Load() <= streamsBefore {
				t.Errorf("no new xDS stream after the restart")
			}
			if n := failed.Load(); n > 0 {
				t.Errorf("%d of %d requests failed while the control plane restarted; first: %v", n, requests.Load(), firstErr.Load())
			}
			t.Logf("%d requests, %d failed", requests.Load(), failed.Load())
			if !a.hasListener(t, "inbound") || a.Status().EnvoyStarts != 1 {
				t.Errorf("after the restart: listener present %v, envoy starts %d", a.hasListener(t, "inbound"), a.Status().EnvoyStarts)
			}
		})
	}
}
