package compiler

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/schema/mesh"
)

// Tests that run real Envoys from compiled bootstraps and send them
// traffic: they check behaviour that `--mode validate` cannot. Without an
// iptables redirect, a connection's original destination is the inbound
// listener itself, so the tests make the inbound chains match that port
// (matchOwnPort); everything else is the compiler's output as is.

// TestEnvoyServes: frontend -> reviews -> app over plaintext (mtls
// "disable"): routing by Host, header edits, fault injection, local rate
// limits (the service bucket on the virtual host, a route's own bucket)
// and an RBAC deny rule.
func TestEnvoyServes(t *testing.T) {
	h := newHarness(t)
	appPort := h.app(t)

	rv := svc("reviews", appPort)
	rv.MTLS = mesh.MTLSDisable
	rv.RateLimit = &mesh.RateLimit{RequestsPerSecond: 1, Burst: 3}
	rv.Headers = &mesh.Headers{
		Request:  &mesh.HeaderOps{Set: map[string]string{"x-mesh": "shop"}},
		Response: &mesh.HeaderOps{Preset: "security"},
	}
	rv.Routes = []mesh.Route{
		{Name: "broken", Match: prefix("/broken"), Fault: &mesh.Fault{Abort: &mesh.FaultAbort{Percent: 100, Status: 418}}},
		{Name: "limited", Match: prefix("/limited"), RateLimit: &mesh.RateLimit{RequestsPerSecond: 1, Burst: 1}},
		{Name: "all", Match: prefix("/"), Headers: &mesh.Headers{Request: &mesh.HeaderOps{Set: map[string]string{"x-mesh-route": "all"}}}},
	}
	rv.Authz = &mesh.Authz{Deny: []mesh.AuthzRule{{Paths: []string{"/admin/*"}}}}
	fe := calls(svc("frontend", 8080), "reviews")
	fe.MTLS = mesh.MTLSDisable
	m := newModel(fe, rv)

	rvProxy := h.proxy(t, m, "reviews-v1")
	m.Services["reviews"].Versions["v1"].Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", rvProxy.inbound)}
	feProxy := h.proxy(t, m, "frontend-v1")
	get := func(path string) (int, http.Header, string) {
		return feProxy.get(t, fmt.Sprintf("reviews:%d", appPort), path)
	}

	code, hdr, body := get("/hello")
	if code != 200 || !strings.HasPrefix(body, "app /hello x-mesh=shop x-mesh-route=all") {
		t.Fatalf("GET /hello: %d %q", code, body)
	}
	if hdr.Get("x-frame-options") != "DENY" || hdr.Get("strict-transport-security") == "" {
		t.Errorf("security headers missing: %v", hdr)
	}
	if code, _, body := get("/broken"); code != 418 {
		t.Errorf("GET /broken: %d %q, want the injected 418", code, body)
	}
	if code, _, body := get("/admin/users"); code != 403 {
		t.Errorf("GET /admin/users: %d %q, want 403 from the deny rule", code, body)
	}
	// /limited has its own bucket of 1, which replaces the service's.
	if code, _, _ := get("/limited"); code != 200 {
		t.Errorf("first GET /limited: %d", code)
	}
	if code, _, _ := get("/limited"); code != 429 {
		t.Errorf("second GET /limited: %d, want 429", code)
	}
	// The service bucket holds 3; /hello took one (the 403 and the
	// injected fault never reached the limiter).
	var codes []int
	for i := 0; i < 4; i++ {
		code, _, _ := get("/x")
		codes = append(codes, code)
	}
	if fmt.Sprint(codes) != "[200 200 429 429]" {
		t.Errorf("GET /x four times: %v, want [200 200 429 429] (service burst 3)", codes)
	}
}

// TestEnvoyMTLS: strict mTLS with certificates from SDS over the unix
// socket. frontend may call reviews; intruder has a cluster to reviews but
// reviews' authz only allows frontend; the app sees the caller's SPIFFE id
// in x-forwarded-client-cert; plaintext is refused.
func TestEnvoyMTLS(t *testing.T) {
	h := newHarness(t)
	appPort := h.app(t)
	rv := svc("reviews", appPort)
	rv.Authz = &mesh.Authz{AllowSet: true, Allow: []mesh.AuthzRule{{From: []string{"frontend"}}}}
	m := newModel(calls(svc("frontend", 8080), "reviews"), calls(svc("intruder", 8081), "reviews"), rv)
	h.startSDS(t, m)

	rvProxy := h.proxy(t, m, "reviews-v1")
	m.Services["reviews"].Versions["v1"].Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", rvProxy.inbound)}
	feProxy := h.proxy(t, m, "frontend-v1")
	inProxy := h.proxy(t, m, "intruder-v1")
	host := fmt.Sprintf("reviews.shop:%d", appPort)

	code, _, body := feProxy.get(t, host, "/hello")
	if code != 200 || !strings.Contains(body, "URI=spiffe://shop.example/ns/shop/sa/frontend") {
		t.Fatalf("frontend -> reviews: %d %q, want 200 with frontend's SPIFFE id in XFCC", code, body)
	}
	if code, _, body := inProxy.get(t, host, "/hello"); code != 403 {
		t.Errorf("intruder -> reviews: %d %q, want 403", code, body)
	}
	// A caller that expects another identity behind reviews refuses the
	// peer's certificate.
	other := *m
	other.Services = map[string]*mesh.Service{}
	for k, v := range m.Services {
		other.Services[k] = v
	}
	impostor := *m.Services["reviews"]
	impostor.ServiceAccount = "reviews-prod"
	other.Services["reviews"] = &impostor
	if code, _, body := h.proxy(t, &other, "frontend-v1").get(t, host, "/hello"); code != 503 {
		t.Errorf("frontend expecting sa/reviews-prod -> reviews: %d %q, want 503 (SAN mismatch)", code, body)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/hello", rvProxy.inbound))
	if err == nil {
		resp.Body.Close()
		t.Errorf("plaintext to a strict port: %s, want the connection refused", resp.Status)
	}
}

type harness struct {
	envoy string
	dir   string
	sds   string // SDS socket
}

func newHarness(t *testing.T) *harness {
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "weft")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &harness{envoy: tooltest.Envoy(t), dir: dir, sds: filepath.Join(dir, "sds.sock")}
}

// app starts the workload: it echoes the path and a few request headers.
func (h *harness) app(t *testing.T) uint32 {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app %s x-mesh=%s x-mesh-route=%s xfcc=%s", r.URL.Path,
			r.Header.Get("x-mesh"), r.Header.Get("x-mesh-route"), r.Header.Get("x-forwarded-client-cert"))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

type proxy struct {
	inbound, outbound, admin, stats uint32
}

// proxy compiles m and runs the Envoy of one class.
func (h *harness) proxy(t *testing.T, m *mesh.Model, class string) *proxy {
	t.Helper()
	ports := tooltest.FreePorts(t, 4)
	p := &proxy{inbound: ports[0], outbound: ports[1], admin: ports[2], stats: ports[3]}
	res, err := Compile(m, nil, Options{InboundPort: p.inbound, OutboundPort: p.outbound})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Class(class)
	b, err := Bootstrap(c, BootstrapOptions{AdminPort: p.admin, SDSSocket: h.sds, StatsPort: ports[3]})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range b.StaticResources.Listeners {
		if l.Name == InboundListenerName {
			matchOwnPort(l, p.inbound)
		}
	}
	y, err := MarshalYAMLObject(b)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(h.dir, class+".yaml")
	if err := os.WriteFile(file, y, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, h.envoy, "-c", file, "--disable-hot-restart", "--log-level", "warn", "--concurrency", "1")
	out := &tooltest.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s envoy output:\n%s", class, out.String())
		}
	})
	waitReady(t, p.admin, out)
	return p
}

// get sends a request to the proxy's outbound listener, as an app using it
// as HTTP_PROXY would.
func (p *proxy) get(t *testing.T, host, path string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	proxyURL := &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", p.outbound)}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// startSDS serves every class's workload certificate ("default") and the
// mesh root ("ROOTCA") over the harness's SDS socket, keyed by node id.
func (h *harness) startSDS(t *testing.T, m *mesh.Model) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"weft test CA"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})

	snaps := cache.NewSnapshotCache(false, cache.IDHash{}, nil)
	for i, name := range m.ServiceNames() {
		s := m.Services[name]
		id, _ := url.Parse(m.SPIFFEID(s))
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)),
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			URIs:         []*url.URL{id},
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		inline := func(b []byte) *corev3.DataSource {
			return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
		}
		secrets := []types.Resource{
			&tlsv3.Secret{Name: CertSecretName, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inline(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
				PrivateKey:       inline(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})),
			}}},
			&tlsv3.Secret{Name: RootCASecretName, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: inline(rootPEM),
			}}},
		}
		snap, err := cache.NewSnapshot("1", map[resource.Type][]types.Resource{resource.SecretType: secrets})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range s.VersionNames() {
			if err := snaps.SetSnapshot(context.Background(), ClassName(name, v), snap); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	gs := grpc.NewServer()
	secretv3.RegisterSecretDiscoveryServiceServer(gs, serverv3.NewServer(ctx, snaps, nil))
	ln, err := net.Listen("unix", h.sds)
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(func() { cancel(); gs.Stop() })
}

// matchOwnPort makes inbound chains match connections made straight to
// the listener (no iptables redirect, so no other original destination).
func matchOwnPort(l *listenerv3.Listener, port uint32) {
	for _, fc := range l.FilterChains {
		fc.FilterChainMatch.DestinationPort = wrapperspb.UInt32(port)
	}
}

func waitReady(t *testing.T, admin uint32, out *tooltest.Output) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", admin))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.TrimSpace(string(body)) == "LIVE" {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("envoy not ready:\n%s", out.String())
}
