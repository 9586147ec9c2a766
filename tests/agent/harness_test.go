package agent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/tooltest"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/sidecar/agent"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

const trustDomain = "shop.example"

var (
	orders       = cav1.Identity{TrustDomain: trustDomain, Namespace: "shop", ServiceAccount: "orders"}
	frontend     = cav1.Identity{TrustDomain: trustDomain, Namespace: "shop", ServiceAccount: "frontend"}
	controlPlane = cav1.Identity{TrustDomain: trustDomain, Namespace: "weft-system", ServiceAccount: "weft"}
	loopback     = []net.IP{net.IPv4(127, 0, 0, 1)}
)

// meshEnv is a mesh CA served over gRPC+TLS on 127.0.0.1, as `weft up`
// runs it, plus a short temporary directory for sockets and files.
type meshEnv struct {
	dir        string
	ca         *ca.CA
	auth       *ca.TokenAuthenticator
	caAddr     string
	bundleFile string
}

func newMeshEnv(t *testing.T) *meshEnv {
	t.Helper()
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "weft-agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c, err := ca.New(ca.Config{TrustDomain: trustDomain, StateDir: filepath.Join(dir, "ca"), MinTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := c.ServerTLS(controlPlane, []string{"localhost"}, loopback, tls.NoClientCert)
	if err != nil {
		t.Fatal(err)
	}
	auth := ca.NewTokenAuthenticator()
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	ca.NewServer(c, auth, nil).Register(gs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	bundle := filepath.Join(dir, "trust-bundle.pem")
	if err := os.WriteFile(bundle, c.TrustBundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return &meshEnv{dir: dir, ca: c, auth: auth, caAddr: ln.Addr().String(), bundleFile: bundle}
}

// tokenFile registers a token for id and writes it as `weft up` does.
func (e *meshEnv) tokenFile(t *testing.T, id cav1.Identity) string {
	t.Helper()
	tok, err := ca.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.auth.Add(tok, id); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dir, "tokens", id.ServiceAccount+".token")
	if err := ca.WriteTokenFile(path, tok); err != nil {
		t.Fatal(err)
	}
	return path
}

type runningAgent struct {
	*agent.Agent
	admin string // Envoy's admin socket
	out   *tooltest.Output
	// stop cancels Run and waits for it (at most 20s); idempotent.
	stop         func() error
	expectRunErr bool // Run may end with an error (e.g. no certificate)
}

// startAgent runs an agent (and so a real Envoy) for orders until the test
// ends.
func (e *meshEnv) startAgent(t *testing.T, name string, mutate func(*agent.Config)) *runningAgent {
	t.Helper()
	out := &tooltest.Output{}
	cfg := agent.Config{
		Identity:        orders,
		Class:           "orders-v1",
		NodeID:          "orders-v1~" + name,
		CAAddress:       e.caAddr,
		CAServerName:    "localhost",
		TrustBundleFile: e.bundleFile,
		TokenFile:       e.tokenFile(t, orders),
		Socket:          filepath.Join(e.dir, name+".sock"),
		BootstrapPath:   filepath.Join(e.dir, name+"-envoy.yaml"),
		HealthAddress:   "127.0.0.1:0",
		EnvoyBinary:     tooltest.Envoy(t),
		EnvoyArgs:       []string{"--concurrency", "1"},
		EnvoyOutput:     out,
		Log:             slog.New(slog.NewTextHandler(out, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	r := &runningAgent{Agent: a, admin: a.Config().AdminSocket, out: out}
	var once sync.Once
	var runErr error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(20 * time.Second):
				runErr = errors.New("agent did not stop within 20s")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil && !r.expectRunErr {
			t.Errorf("agent Run: %v", err)
		}
		if t.Failed() {
			t.Logf("agent %s log and envoy output:\n%s", name, out.String())
		}
	})
	return r
}

func (r *runningAgent) waitReady(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-r.Ready():
	case <-time.After(within):
		t.Fatalf("agent not ready within %s: %+v", within, r.Status())
	}
}

// adminGet reads one of Envoy's admin pages.
func (r *runningAgent) adminGet(t *testing.T, path string) string {
	t.Helper()
	_, body := tooltest.AdminGet(t, r.admin, path)
	return body
}

// mtlsListener is an inbound-style listener on 127.0.0.1:port that
// requires a client certificate of the mesh (both secrets from SDS, as the
// compiler's listeners do) and answers every request itself.
func mtlsListener(t *testing.T, name string, port int) *listenerv3.Listener {
	t.Helper()
	pack := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	sds := func(secret string) *tlsv3.SdsSecretConfig {
		return &tlsv3.SdsSecretConfig{Name: secret, SdsConfig: &corev3.ConfigSource{
			ResourceApiVersion: corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
				ApiType: corev3.ApiConfigSource_GRPC, TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: compiler.SDSClusterName}}}},
			}},
		}}
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: name,
			VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
					Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "hello from " + name}},
				}},
			}}}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: pack(&routerv3.Router{})}}},
	}
	return &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)}}}},
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: pack(hcm)}}},
			TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
				ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: pack(&tlsv3.DownstreamTlsContext{
					RequireClientCertificate: wrapperspb.Bool(true),
					CommonTlsContext: &tlsv3.CommonTlsContext{
						TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(compiler.CertSecretName)},
						ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
							ValidationContextSdsSecretConfig: sds(compiler.RootCASecretName)},
					},
				})}},
		}},
	}
}

// mtlsGet sends one request on a new connection to the listener at port
// with client certificate cert, verifying Envoy's certificate against
// roots; it returns the body and Envoy's leaf certificate.
func mtlsGet(port int, roots *x509.CertPool, cert *tls.Certificate) (string, *x509.Certificate, error) {
	cfg := &tls.Config{RootCAs: roots, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
		// Mesh certificates carry no DNS name: verify the chain and the
		// SPIFFE id instead of a host name.
		VerifyConnection: func(cs tls.ConnectionState) error {
			opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
				return err
			}
			if id, err := cav1.IdentityFromURL(cs.PeerCertificates[0].URIs[0]); err != nil || id != orders {
				return fmt.Errorf("server is %v, want %s", cs.PeerCertificates[0].URIs, orders)
			}
			return nil
		}}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/hello", port))
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", nil, err
	}
	if resp.StatusCode != 200 {
		return string(b), nil, fmt.Errorf("status %s", resp.Status)
	}
	return string(b), resp.TLS.PeerCertificates[0], nil
}

// eventually polls cond every 100ms until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func httpGet(u string) (string, error) {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func httpStatus(u string) int {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
