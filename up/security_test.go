package up_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weft-dev/weft/internal/catest"
	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/up"
)

const boundMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["catalog"]
		}
		catalog: {
			ports: http: port: 9080
			versions: v1: labels: version: "v1"
		}
		reviews: {
			ports: http: port: 9090
			versions: v1: labels: version: "v1"
		}
`

// adsStream opens an ADS stream to addr over TLS (client certificate
// cert, if any) and sends one CDS request for node.
func adsStream(t *testing.T, ctx context.Context, addr string, c *ca.CA, cert *tls.Certificate, node *corev3.Node) discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	cfg := &tls.Config{RootCAs: c.TrustPool(), ServerName: "localhost"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A stream the server refuses may already be closed: Recv says why.
	_ = st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, Node: node})
	return st
}

func meta(kv map[string]string) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range kv {
		s.Fields[k] = structpb.NewStringValue(v)
	}
	return s
}

// TestXDSStreamsBoundToIdentity: with the reviews workload's certificate,
// an xDS stream claiming catalog's node and class with placement metadata
// pointing at an attacker's port is refused (PermissionDenied), nothing
// of catalog's config is sent, and `weft status` lists the refusal; a
// stream of reviews' own node with crafted or malformed placement
// metadata is served reviews' placement and blocks nothing. The real
// catalog Envoy's inbound cluster still points at catalog's app; frontend
// reaches catalog, never the attacker, before and after the next commit.
// The CA's port (no client certificate) serves no ADS.
func TestXDSStreamsBoundToIdentity(t *testing.T) {
	repo := t.TempDir()
	git(t, repo, "init", "-q", "-b", "main")
	writeMesh(t, repo, boundMesh)
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "initial")
	tm := startMesh(t, repo, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The attacker listens where it wants catalog's traffic to go.
	catalog := tm.instance("catalog-v1")
	attacker, err := net.Listen("tcp", net.JoinHostPort(catalog.IP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	var hijacked atomic.Int64
	go func() {
		for {
			c, err := attacker.Accept()
			if err != nil {
				return
			}
			hijacked.Add(1)
			c.Close()
		}
	}()
	attackerPort := attacker.Addr().(*net.TCPAddr).Port

	reviewsID := tm.instance("reviews-v1").Identity
	cert := catest.WorkloadCert(t, tm.CA(), reviewsID)
	crafted := meta(map[string]string{
		"weft.local.ip":       catalog.IP,
		"weft.local.appPorts": "9080=" + itoa(attackerPort),
		"weft.class":          "catalog-v1",
	})
	st := adsStream(t, ctx, tm.XDSAddr(), tm.CA(), &cert, &corev3.Node{Id: "catalog-v1-0", Cluster: "catalog-v1", Metadata: crafted})
	if resp, err := st.Recv(); grpcstatus.Code(err) != codes.PermissionDenied {
		t.Fatalf("reviews' certificate claiming catalog-v1-0: %v (response %v), want PermissionDenied", err, resp)
	}

	// reviews' own node, with the same crafted metadata and with garbage:
	// served reviews' own config from weft up's placement.
	for _, md := range []*structpb.Struct{
		meta(map[string]string{"weft.local.ip": catalog.IP, "weft.local.appPorts": "9090=" + itoa(attackerPort)}),
		meta(map[string]string{"weft.local.appPorts": "not=ports,,=", "weft.local.ip": "::nonsense"}),
	} {
		own := adsStream(t, ctx, tm.XDSAddr(), tm.CA(), &cert, &corev3.Node{Id: "reviews-v1-0", Cluster: "reviews-v1", Metadata: md})
		resp, err := own.Recv()
		if err != nil {
			t.Fatalf("reviews' own node: %v", err)
		}
		if body := resp.String(); strings.Contains(body, itoa(attackerPort)) || !strings.Contains(body, "inbound|9090") {
			t.Errorf("reviews' own stream with crafted metadata got clusters naming the attacker's port or lacking reviews' inbound:\n%s", body)
		}
		own.CloseSend()
	}

	// The CA's port requires no client certificate: it serves no ADS.
	caStream := adsStream(t, ctx, tm.CAAddr(), tm.CA(), nil, &corev3.Node{Id: "catalog-v1-0", Cluster: "catalog-v1"})
	if _, err := caStream.Recv(); grpcstatus.Code(err) != codes.Unimplemented {
		t.Errorf("ADS on the CA port: %v, want Unimplemented", err)
	}

	checkCatalog := func(when string) {
		t.Helper()
		_, dump := tooltest.AdminGet(t, catalog.AdminSocket, "/config_dump?resource=dynamic_active_clusters")
		if strings.Contains(dump, itoa(attackerPort)) || !strings.Contains(dump, itoa(int(catalog.AppPorts[9080]))) {
			t.Errorf("%s: catalog's Envoy clusters name the attacker's port %d or lack the app's %d:\n%s", when, attackerPort, catalog.AppPorts[9080], dump)
		}
		fe := tm.client("frontend-v1")
		for i := 0; i < 20; i++ {
			code, a, _, err := get(fe, "http://catalog:9080/", nil)
			if err != nil || code != 200 || a == nil || a.Service != "catalog" {
				t.Fatalf("%s: frontend -> catalog: %d %+v %v", when, code, a, err)
			}
		}
		if n := hijacked.Load(); n != 0 {
			t.Errorf("%s: the attacker's port got %d connections", when, n)
		}
	}
	checkCatalog("after the attack")

	// The next commit is served to every proxy (the streams above block
	// nothing), and catalog still points at its app.
	next := commit(t, repo, strings.Replace(boundMesh, `calls: ["catalog"]`, `calls: ["catalog", "reviews"]`, 1))
	if err := waitServedAndAcked(ctx, tm.Mesh, next, 3); err != nil {
		t.Fatal(err)
	}
	checkCatalog("after the next commit")

	status, err := up.FetchStatus(ctx, tm.StatusAddr())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	up.PrintStatus(&out, status, time.Now())
	t.Logf("weft status:\n%s", out.String())
	for _, want := range []string{
		"refused xDS streams",
		reviewsID.String() + " from 127.0.0.1:",
		`claimed node "catalog-v1-0" class "catalog-v1": node "catalog-v1-0" runs as spiffe://t.example/ns/t/sa/catalog; the client certificate is ` + reviewsID.String(),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("weft status lacks %q", want)
		}
	}
	for _, p := range status.Proxies {
		if !p.InSync || p.Identity == "" {
			t.Errorf("proxy %+v, want in sync with its verified identity", p)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
