package tests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/tooltest"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/sidecar/inject"
)

const podTrustDomain = "shop.example"

var (
	webID      = cav1.Identity{TrustDomain: podTrustDomain, Namespace: "shop", ServiceAccount: "web"}
	frontendID = cav1.Identity{TrustDomain: podTrustDomain, Namespace: "shop", ServiceAccount: "frontend"}
	billingID  = cav1.Identity{TrustDomain: podTrustDomain, Namespace: "shop", ServiceAccount: "billing"}
)

// podMesh compiles a mesh where frontend calls web (port 8080), with the
// default listener ports (15006 inbound, 15001 outbound).
func podMesh(t *testing.T, tlsCfg *tls.Config) *xds.Server {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"cue.mod/module.cue": "module: \"example.com/shop\"\nlanguage: version: \"v0.17.0\"\n",
		"mesh.cue": `package shop

import "weft.dev/weft"

mesh: weft.#Mesh & {
	name: "shop", trustDomain: "shop.example"
	defaults: namespace: "shop"
	services: {
		web: {serviceAccount: "web", ports: http: port: 8080, versions: v1: labels: version: "v1"}
		frontend: {serviceAccount: "frontend", ports: http: port: 9080, versions: v1: labels: version: "v1", calls: ["web"]}
		billing: {serviceAccount: "billing", ports: http: port: 7080, versions: v1: labels: version: "v1"}
	}
}
`,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := schema.Load(dir, schema.Options{Revision: "rev1"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := compiler.Compile(m, nil, compiler.Options{Revision: "rev1"})
	if err != nil {
		t.Fatal(err)
	}
	s := xds.New(xds.Options{TLS: tlsCfg, Logger: slog.New(slog.DiscardHandler), Authorizer: xds.AuthorizerFunc(
		func(_ context.Context, p xds.Peer, n *corev3.Node) (xds.Binding, error) {
			// Stands in for the controller's pod lookup: web-0 in shop,
			// service account web, labels version=v1.
			if n.GetId() != "web-0.shop" || p.Identity != webID || (n.GetCluster() != "web" && n.GetCluster() != "web-v1") {
				return xds.Binding{}, fmt.Errorf("unknown node %q (%s, cluster %q)", n.GetId(), p.Identity, n.GetCluster())
			}
			return xds.Binding{NodeID: n.GetId(), Class: "web-v1"}, nil
		})})
	if err := s.Publish("rev1", res); err != nil {
		t.Fatal(err)
	}
	return s
}

// meshCert is a certificate of c for id, as another workload's proxy holds.
func meshCert(t testing.TB, c *ca.CA, id cav1.Identity) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := c.SignCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{iss.Cert.Raw}, PrivateKey: key, Leaf: iss.Cert}
}

// projectedToken is shaped like the kubelet's projected token for pod.
func projectedToken(ns, sa, pod string) string {
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	return enc(map[string]string{"alg": "ES256"}) + "." + enc(map[string]any{
		"aud": []string{"weft"}, "sub": "system:serviceaccount:" + ns + ":" + sa,
		"kubernetes.io": map[string]any{"namespace": ns, "pod": map[string]string{"name": pod}},
	}) + ".c2ln"
}

// TestMeshedPodInNetns is an injected pod without Kubernetes: a network
// namespace ("pod") where `weft netinit` ran with the injector's
// arguments, the mesh CA and reconciler/xds's server listen on loopback,
// the app on 127.0.0.1:8080, and `weft agent` runs with the injected
// container's arguments and a real Envoy; a second namespace ("peer")
// reaches the pod's IP like another node would. From there: the agent's
// /ready (as the kubelet's probe does, not redirected) turns 200; a
// request to the app's port is redirected to Envoy's inbound listener,
// which answers a mesh caller (frontend's certificate) with the app's
// response and the web identity, refuses one the authorization does not
// admit (billing: 403) and a plaintext one; the rewritten app probe and
// Envoy's stats port answer directly; SIGTERM stops the agent cleanly.
func TestMeshedPodInNetns(t *testing.T) {
	needNetns(t)
	envoy := tooltest.Envoy(t)
	weftBin := weft(t)
	pod, peer := podAndPeer(t)
	dir, err := os.MkdirTemp("", "weft-pod")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	// The control plane, on the pod's loopback (a stand-in for the
	// controller's Service: loopback is never redirected).
	c, err := ca.New(ca.Config{TrustDomain: podTrustDomain, StateDir: filepath.Join(dir, "ca")})
	if err != nil {
		t.Fatal(err)
	}
	cp := cav1.Identity{TrustDomain: podTrustDomain, Namespace: "weft-system", ServiceAccount: "weft-controller"}
	lo := []net.IP{net.IPv4(127, 0, 0, 1)}
	caTLS, err := c.ServerTLS(cp, []string{"localhost"}, lo, tls.NoClientCert)
	if err != nil {
		t.Fatal(err)
	}
	auth := ca.NewTokenAuthenticator()
	tok := projectedToken("shop", "web", "web-0")
	if err := auth.Add(tok, webID); err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(caTLS)))
	ca.NewServer(c, auth, nil).Register(gs)
	go gs.Serve(pod.listen(t, "127.0.0.1:15012"))
	t.Cleanup(gs.Stop)
	xdsTLS, err := c.ServerTLS(cp, []string{"localhost"}, lo, tls.RequireAndVerifyClientCert)
	if err != nil {
		t.Fatal(err)
	}
	s := podMesh(t, xdsTLS)
	go s.Serve(pod.listen(t, "127.0.0.1:15010"))
	t.Cleanup(s.GRPC().Stop)
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from web %s", r.URL.Path)
	})}
	go app.Serve(pod.listen(t, "127.0.0.1:8080"))
	t.Cleanup(func() { app.Close() })

	// The injected pod's two init containers, in order.
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", Labels: map[string]string{"app": "web", "version": "v1"}},
		Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{Name: "web", Image: "web",
			Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}},
		}}},
	}
	if _, err := inject.Pod(p, "shop", inject.Options{TrustBundle: c.TrustBundlePEM()}); err != nil {
		t.Fatal(err)
	}
	initC, proxy := p.Spec.InitContainers[0], p.Spec.InitContainers[1]
	if out := pod.exec(t, append([]string{weftBin}, append(initC.Command[1:], initC.Args...)...)...); !strings.Contains(out, "rules applied") {
		t.Fatalf("weft netinit:\n%s", out)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := ca.WriteTokenFile(tokenFile, tok); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--net=" + pod.path, weftBin}, append(proxy.Command[1:], proxy.Args...)...)
	args = append(args, "--ca-address=127.0.0.1:15012", "--xds-address=127.0.0.1:15010", "--token-file="+tokenFile,
		"--socket="+filepath.Join(dir, "agent.sock"), "--bootstrap="+filepath.Join(dir, "envoy.yaml"),
		"--pod-info=", "--envoy="+envoy, "--concurrency=1", "--drain-timeout=1s")
	env := []string{"PATH=" + os.Getenv("PATH"), "POD_NAME=web-0", "POD_NAMESPACE=shop", "WEFT_SERVICE=web"}
	for _, e := range proxy.Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	out := &tooltest.Output{}
	cmd := exec.Command("nsenter", args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
		}
		if t.Failed() {
			t.Logf("weft agent output:\n%s", out.String())
		}
	})

	// Clients in the peer namespace, as another node or pod.
	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: peer.dialContext, DisableKeepAlives: true}}
	get := func(cl *http.Client, u string) (int, string, *http.Response, error) {
		resp, err := cl.Get(u)
		if err != nil {
			return 0, "", nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp, nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body, _, err := get(plain, "http://10.77.0.2:15021/ready")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready from the peer: %d %q %v", code, body, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	mtls := func(cert tls.Certificate) *http.Client {
		roots := c.TrustPool()
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: peer.dialContext, DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
				// Mesh certificates carry no DNS name: verify the chain and
				// the SPIFFE id.
				VerifyConnection: func(cs tls.ConnectionState) error {
					if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots}); err != nil {
						return err
					}
					if id, err := cav1.IdentityFromURL(cs.PeerCertificates[0].URIs[0]); err != nil || id != webID {
						return fmt.Errorf("the server is %v, want %s", cs.PeerCertificates[0].URIs, webID)
					}
					return nil
				}}}}
	}
	if code, body, _, err := get(mtls(meshCert(t, c, frontendID)), "https://10.77.0.2:8080/orders"); err != nil || code != 200 || body != "hello from web /orders" {
		t.Errorf("frontend -> web through the redirect: %d %q %v", code, body, err)
	}
	if code, body, _, err := get(mtls(meshCert(t, c, billingID)), "https://10.77.0.2:8080/orders"); err != nil || code != 403 {
		t.Errorf("billing (not a caller of web) -> web: %d %q %v, want 403", code, body, err)
	}
	if code, body, _, err := get(plain, "http://10.77.0.2:8080/orders"); err == nil && strings.Contains(body, "hello from web") {
		t.Errorf("a plaintext request reached the app: %d %q", code, body)
	}
	if code, body, _, err := get(plain, "http://10.77.0.2:15021/app-health/web/readyz"); err != nil || code != 200 {
		t.Errorf("the rewritten app probe from the peer: %d %q %v", code, body, err)
	}
	if code, body, _, err := get(plain, "http://10.77.0.2:15090/stats/prometheus"); err != nil || code != 200 || !strings.Contains(body, "envoy_") {
		t.Errorf("Envoy's stats port from the peer: %d %v", code, err)
	}

	stopped = true
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("weft agent exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Error("weft agent did not stop within 30s of SIGTERM")
	}
}
