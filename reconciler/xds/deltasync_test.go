package xds

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/meshgen"
	"github.com/weft-dev/weft/schema"
)

// TestDeltaPublishWhileUnACKed: a delta proxy has been sent all four
// types and not ACKed them yet when a revision that changes only its load
// assignments is published. The cache resends only the load assignments;
// the late ACKs of the other three types (of the earlier version) must
// count for the new version, or the proxy stays out of sync forever.
func TestDeltaPublishWhileUnACKed(t *testing.T) {
	dir := t.TempDir()
	if err := meshgen.Write(dir, meshgen.Spec{Services: 4, Endpoints: 2, Calls: 2}); err != nil {
		t.Fatal(err)
	}
	m, err := schema.Load(dir, schema.Options{Revision: "r"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := compiler.Compile(m, nil, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Services["svc-00001"].Versions["v1"].Endpoints[0] = "10.99.0.1:8080"
	c, err := compiler.Compile(m, nil, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const class = "svc-00000-v1"
	if d := changedTypes(a.Class(class), c.Class(class)); len(d) != 1 || !d[resource.EndpointType] {
		t.Fatalf("the change touches %v, want only endpoints", d)
	}

	s, addr := startServer(t, Options{})
	if err := s.Publish("r1", a); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, typ := range allTypes {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = &corev3.Node{Id: "p1", Cluster: class}
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	// The initial responses, held unACKed.
	var held []*discoveryv3.DeltaDiscoveryResponse
	for range allTypes {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if v := resp.GetSystemVersionInfo(); v != a.Class(class).SnapshotVersion {
			t.Fatalf("initial %s response of version %s, want %s", resp.GetTypeUrl(), v, a.Class(class).SnapshotVersion)
		}
		held = append(held, resp)
	}
	if err := s.Publish("r2", c); err != nil {
		t.Fatal(err)
	}
	ack := func(resp *discoveryv3.DeltaDiscoveryResponse) {
		t.Helper()
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, resp := range held {
		ack(resp)
	}
	// Only the load assignments are resent.
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			if resp.GetTypeUrl() != resource.EndpointType || resp.GetSystemVersionInfo() != c.Class(class).SnapshotVersion {
				t.Errorf("unexpected %s response of version %s", resp.GetTypeUrl(), resp.GetSystemVersionInfo())
			}
			ack(resp)
		}
	}()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := s.WaitSynced(wctx); err != nil {
		t.Fatalf("%v\n%s", err, dumpStatus(s.Status()))
	}
	if p := proxy(s.Status(), "p1"); p == nil || p.AckedVersion != c.Class(class).SnapshotVersion {
		t.Fatalf("proxy p1: %+v, want ACKed %s", p, c.Class(class).SnapshotVersion)
	}
}
