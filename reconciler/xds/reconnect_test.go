package xds

import (
	"context"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weft-dev/weft/compiler"
)

// openWatches is the number of SotW watches the node has open, whether
// in the cache or waiting for the node's first snapshot.
func openWatches(s *Server, id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	if info := s.cache.GetStatusInfo(id); info != nil {
		n = info.GetNumWatches()
	}
	return n + len(s.parked[id])
}

// TestReconnectBeforeFirstPublish: a restarted control plane. An Envoy
// that already holds version V reconnects and asks, as Envoy does, with
// version_info V and no nonce (CDS and LDS wildcard, then EDS and RDS by
// name) before the new server has served anything; then the same
// revision is published, with the same version V. The proxy is sent its
// resources on the new stream, ACKs them and is in sync, exactly as when
// it reconnects after the Publish.
func TestReconnectBeforeFirstPublish(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, 9080, "one", "")
	r1 := compileDir(t, dir, "r1")
	cls := r1.Class("frontend-v1")
	v := cls.SnapshotVersion

	s, addr := startServer(t, Options{})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "fe-1", Cluster: "frontend-v1"}
	names := func(t string) []string {
		var out []string
		for _, r := range cls.Resources[t] {
			out = append(out, cache.GetResourceName(r))
		}
		return out
	}
	send := func(typeURL, nonce string, names []string) {
		t.Helper()
		req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typeURL, VersionInfo: v, ResponseNonce: nonce, ResourceNames: names}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	send(resource.ClusterType, "", nil)
	send(resource.ListenerType, "", nil)
	deadline := time.Now().Add(10 * time.Second)
	for openWatches(s, "fe-1") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the server opened %d watches, want 2", openWatches(s, "fe-1"))
		}
		time.Sleep(time.Millisecond)
	}

	if err := s.Publish("r1", r1); err != nil {
		t.Fatal(err)
	}
	resps := make(chan *discoveryv3.DiscoveryResponse, 16)
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				close(resps)
				return
			}
			resps <- resp
		}
	}()
	got := map[string]string{}
	subscribed := false
	timeout := time.After(10 * time.Second)
	for len(got) < len(allTypes) {
		select {
		case resp, ok := <-resps:
			if !ok {
				t.Fatal("stream ended")
			}
			got[resp.GetTypeUrl()] = resp.GetVersionInfo()
			send(resp.GetTypeUrl(), resp.GetNonce(), names(resp.GetTypeUrl()))
			if !subscribed {
				subscribed = true
				send(resource.EndpointType, "", names(resource.EndpointType))
				send(resource.RouteType, "", names(resource.RouteType))
			}
		case <-timeout:
			t.Fatalf("responses within 10s: %v, want every type at %s; status:\n%s", got, v, dumpStatus(s.Status()))
		}
	}
	for _, typ := range compiler.ResourceTypes {
		if got[typ] != v {
			t.Errorf("%s sent at version %q, want %q", typ, got[typ], v)
		}
	}
	waitStatus(t, s, 10*time.Second, "fe-1 in sync", inSync("fe-1"))
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := s.WaitSynced(wctx); err != nil {
		t.Fatal(err)
	}
}

// TestDeltaReconnectWithInitialVersions: a delta proxy that held the
// served version connects to another server (a replica, or this one
// restarted) and says so, as Envoy does, with initial_resource_versions
// on each type's first request (CDS and LDS wildcard, EDS and RDS by
// name). The server sends the named types nothing (the proxy has them)
// and the wildcard types an empty response; the proxy must count as in
// sync, or every later rollout waits for it forever.
func TestDeltaReconnectWithInitialVersions(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, 9080, "one", "")
	r1 := compileDir(t, dir, "r1")
	cls := r1.Class("frontend-v1")
	node := &corev3.Node{Id: "fe-1", Cluster: "frontend-v1"}
	names := func(typ string) []string {
		var out []string
		for _, r := range cls.Resources[typ] {
			out = append(out, cache.GetResourceName(r))
		}
		return out
	}
	wildcard := map[string]bool{resource.ClusterType: true, resource.ListenerType: true}

	// connect runs one delta stream against addr, subscribing as Envoy
	// does with the given initial versions, ACKs every response, and
	// returns the resource versions held and the responses received per
	// type once the server has the node in sync.
	connect := func(s *Server, addr string, initial map[string]map[string]string) (map[string]map[string]string, map[string]int) {
		t.Helper()
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, typ := range []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType} {
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, InitialResourceVersions: initial[typ]}
			if i == 0 {
				req.Node = node
			}
			if !wildcard[typ] {
				req.ResourceNamesSubscribe = names(typ)
			}
			if err := st.Send(req); err != nil {
				t.Fatal(err)
			}
		}
		held := map[string]map[string]string{}
		for typ, vs := range initial {
			held[typ] = map[string]string{}
			for n, v := range vs {
				held[typ][n] = v
			}
		}
		counts := map[string]int{}
		var mu sync.Mutex
		go func() {
			for {
				resp, err := st.Recv()
				if err != nil {
					return
				}
				mu.Lock()
				typ := resp.GetTypeUrl()
				counts[typ]++
				if held[typ] == nil {
					held[typ] = map[string]string{}
				}
				for _, r := range resp.GetResources() {
					held[typ][r.GetName()] = r.GetVersion()
				}
				mu.Unlock()
				if st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}) != nil {
					return
				}
			}
		}()
		waitStatus(t, s, 10*time.Second, "fe-1 in sync", inSync("fe-1"))
		mu.Lock()
		defer mu.Unlock()
		return held, counts
	}

	a, addrA := startServer(t, Options{})
	if err := a.Publish("r1", r1); err != nil {
		t.Fatal(err)
	}
	held, counts := connect(a, addrA, nil)
	for _, typ := range allTypes {
		if counts[typ] != 1 || len(held[typ]) != len(cls.Resources[typ]) {
			t.Fatalf("first server: %d responses and %d resources of %s, want 1 and %d", counts[typ], len(held[typ]), typ, len(cls.Resources[typ]))
		}
	}

	b, addrB := startServer(t, Options{})
	if err := b.Publish("r1", r1); err != nil {
		t.Fatal(err)
	}
	_, counts = connect(b, addrB, held)
	// The route configurations are not sent again. The load assignments
	// are: the server versions them with their cluster (deltaVersions),
	// the proxy holds their own hash, so they always differ.
	if counts[resource.RouteType] != 0 {
		t.Errorf("second server sent %d route responses to a proxy that held them", counts[resource.RouteType])
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := b.WaitSynced(wctx); err != nil {
		t.Fatal(err)
	}
}
