package xds

import (
	"context"
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
