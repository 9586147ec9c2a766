package agent_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/tooltest"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/sidecar/agent"
	"github.com/weft-dev/weft/sidecar/inject"
)

// TestMain removes the weft binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	tooltest.RemoveWeft()
	os.Exit(code)
}

// weftBinary is cmd/weft, built once per test binary: these tests run
// `weft agent` as the injected container does.
func weftBinary(t *testing.T) string { return tooltest.Weft(t) }

// saToken is a token shaped like a projected service-account token (a
// JWT whose subject is the service account, bound to a pod); the local
// TokenAuthenticator stands in for TokenReview and maps it to the
// service account's identity.
func saToken(t *testing.T, ns, sa, pod string, n int) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	claims := map[string]any{
		"aud": []string{"weft"}, "iss": "https://kubernetes.default.svc.cluster.local", "sub": "system:serviceaccount:" + ns + ":" + sa,
		"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]string{"name": sa}, "pod": map[string]string{"name": pod}},
		"jti":           fmt.Sprint(n),
	}
	return enc(map[string]string{"alg": "ES256", "typ": "JWT"}) + "." + enc(claims) + ".c2lnbmF0dXJl"
}

// podAuthorizer stands in for the controller's: node id <pod>.<namespace>,
// the pod's service account must be the certificate's identity, the class
// is the version its labels select (only v1: version=v1 here); node.cluster
// may be the pod's service (what the agent sends) or the class.
type podAuthorizer struct {
	mu   sync.Mutex
	pods map[string]*corev1.Pod // by node id
}

func (a *podAuthorizer) Authorize(_ context.Context, p xds.Peer, claimed *corev3.Node) (xds.Binding, error) {
	if !p.Verified() {
		return xds.Binding{}, fmt.Errorf("no SPIFFE identity: %s", p.IdentityError)
	}
	a.mu.Lock()
	pod := a.pods[claimed.GetId()]
	a.mu.Unlock()
	if pod == nil {
		return xds.Binding{}, fmt.Errorf("no pod for node id %q", claimed.GetId())
	}
	if want := (cav1.Identity{TrustDomain: trustDomain, Namespace: pod.Namespace, ServiceAccount: pod.Spec.ServiceAccountName}); want != p.Identity {
		return xds.Binding{}, fmt.Errorf("pod %s/%s runs as %s; the client certificate is %s", pod.Namespace, pod.Name, want, p.Identity)
	}
	svc := pod.Labels[compiler.ServiceLabel]
	if pod.Labels["version"] != "v1" {
		return xds.Binding{}, fmt.Errorf("not a workload of the mesh: pod %s/%s: its labels match no version of service %s (v1: version=v1)", pod.Namespace, pod.Name, svc)
	}
	class := compiler.ClassName(svc, "v1")
	if c := claimed.GetCluster(); c != svc && c != class {
		return xds.Binding{}, fmt.Errorf("node.cluster %q is neither the pod's service nor its class", c)
	}
	return xds.Binding{NodeID: claimed.GetId(), Class: class}, nil
}

// xdsControlPlane is reconciler/xds's server over mTLS with the mesh CA,
// serving a compiled two-service mesh (web, called by frontend) whose
// listeners use free ports.
func xdsControlPlane(t *testing.T, e *meshEnv, auth xds.Authorizer, appPort uint32) (*xds.Server, string) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"cue.mod/module.cue": "module: \"example.com/shop\"\nlanguage: version: \"v0.17.0\"\n",
		"mesh.cue": fmt.Sprintf(`package shop

import "weft.dev/weft"

mesh: weft.#Mesh & {
	name: "shop", trustDomain: %q
	defaults: namespace: "shop"
	services: {
		web: {serviceAccount: "web", ports: http: port: %d, versions: v1: labels: version: "v1"}
		frontend: {serviceAccount: "frontend", ports: http: port: 9080, versions: v1: labels: version: "v1", calls: ["web"]}
	}
}
`, trustDomain, appPort),
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
	ports := tooltest.FreePorts(t, 2)
	res, err := compiler.Compile(m, nil, compiler.Options{Revision: "rev1", InboundPort: ports[0], OutboundPort: ports[1]})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := e.ca.ServerTLS(controlPlane, []string{"localhost"}, loopback, tls.RequireAndVerifyClientCert)
	if err != nil {
		t.Fatal(err)
	}
	s := xds.New(xds.Options{TLS: tlsCfg, Authorizer: auth, Logger: slogDiscard()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.GRPC().Serve(ln)
	t.Cleanup(s.GRPC().Stop)
	if err := s.Publish("rev1", res); err != nil {
		t.Fatal(err)
	}
	return s, ln.Addr().String()
}

// agentProcess is `weft agent` running as the injected weft-proxy
// container would, with paths and addresses moved to the test's.
type agentProcess struct {
	cmd    *exec.Cmd
	health string
	admin  string
	out    *tooltest.Output
	done   chan error
}

// startPodAgent injects pod, then runs the weft-proxy container's command,
// arguments and environment (the downward API resolved as the kubelet
// would), with overrides that put its files, ports and servers on this
// machine.
func startPodAgent(t *testing.T, e *meshEnv, pod *corev1.Pod, caAddr, xdsAddr, tokenFile string, extra ...string) *agentProcess {
	t.Helper()
	if _, err := inject.Pod(pod, pod.Namespace, inject.Options{TrustBundle: e.ca.TrustBundlePEM(), TrustDomain: trustDomain}); err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.InitContainers[1]
	if c.Name != inject.ProxyContainerName || c.Command[1] != "agent" {
		t.Fatalf("second init container %s runs %q", c.Name, c.Command)
	}
	dir := filepath.Join(e.dir, pod.Name)
	if err := os.MkdirAll(filepath.Join(dir, "podinfo"), 0o700); err != nil {
		t.Fatal(err)
	}
	var labels []string
	for k, v := range pod.Labels {
		labels = append(labels, fmt.Sprintf("%s=%q", k, v))
	}
	if err := os.WriteFile(filepath.Join(dir, "podinfo", "labels"), []byte(strings.Join(labels, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	health := fmt.Sprintf("127.0.0.1:%d", tooltest.FreePorts(t, 1)[0])
	args := append(append([]string{}, c.Command[1:]...), c.Args...)
	args = append(args,
		"--ca-address="+caAddr, "--xds-address="+xdsAddr, "--token-file="+tokenFile,
		"--socket="+filepath.Join(dir, "agent.sock"), "--bootstrap="+filepath.Join(dir, "envoy.yaml"),
		"--health-address="+health, "--stats-address=", "--envoy="+tooltest.Envoy(t),
		"--pod-info="+filepath.Join(dir, "podinfo"), "--concurrency=1", "--drain-timeout=1s")
	args = append(args, extra...)
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, ev := range c.Env {
		v := ev.Value
		if ev.ValueFrom != nil {
			switch ev.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				v = pod.Name
			case "metadata.namespace":
				v = pod.Namespace
			case "metadata.labels['" + compiler.ServiceLabel + "']":
				v = pod.Labels[compiler.ServiceLabel]
			default:
				t.Fatalf("env %s from %s: unknown to this test", ev.Name, ev.ValueFrom.FieldRef.FieldPath)
			}
		}
		env = append(env, ev.Name+"="+v)
	}
	out := &tooltest.Output{}
	cmd := exec.Command(weftBinary(t), args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agentProcess{cmd: cmd, health: health, admin: filepath.Join(dir, agent.AdminSocketName), out: out, done: make(chan error, 1)}
	go func() { a.done <- cmd.Wait() }()
	t.Cleanup(func() {
		a.stop(t)
		if t.Failed() {
			t.Logf("weft agent %s output:\n%s", pod.Name, out.String())
		}
	})
	return a
}

// stop sends SIGTERM (as the kubelet does) and waits; it returns the
// exit error.
func (a *agentProcess) stop(t *testing.T) error {
	if a.cmd.ProcessState != nil {
		return nil
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		a.done <- err
		return err
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		t.Errorf("weft agent did not stop within 30s of SIGTERM")
		return errors.New("killed")
	}
}

func (a *agentProcess) get(path string) (int, string) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + a.health + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func (a *agentProcess) status(t *testing.T) agent.Status {
	t.Helper()
	code, body := a.get("/status")
	var st agent.Status
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("GET /status: %d %s", code, body)
	}
	return st
}

func webPod(name string, appPort int, version string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"app": "web", "version": version}},
		Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{
			Name: "web", Image: "localhost/web:1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(appPort)}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}},
		}}},
	}
}

// TestWeftAgentInPod runs `weft agent` with the command, arguments and
// environment the injector gives the weft-proxy container, against the
// real mesh CA (a local token authenticator standing in for TokenReview,
// the token shaped like the projected one) and reconciler/xds's server
// (an authorizer standing in for the controller's pod lookup), with a real
// Envoy: the certificate carries the identity the token names, Envoy gets
// it over SDS and its listeners over xDS as node web-0.shop of class
// web-v1, /ready and /healthz answer 200, /status says all of it, the
// app's rewritten readiness probe follows the app, a rotated token file is
// what the next CSR uses, and SIGTERM stops Envoy and the agent cleanly.
func TestWeftAgentInPod(t *testing.T) {
	e := newMeshEnv(t)
	appPort := int(tooltest.FreePorts(t, 1)[0])
	var appHealthy atomic.Bool
	appHealthy.Store(true)
	app := &http.Server{Addr: fmt.Sprintf("127.0.0.1:%d", appPort), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && !appHealthy.Load() {
			http.Error(w, "not yet", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "web")
	})}
	go app.ListenAndServe()
	t.Cleanup(func() { app.Close() })

	web := cav1.Identity{TrustDomain: trustDomain, Namespace: "shop", ServiceAccount: "web"}
	tok := saToken(t, "shop", "web", "web-0", 1)
	if err := e.auth.Add(tok, web); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(e.dir, "token")
	if err := ca.WriteTokenFile(tokenFile, tok); err != nil {
		t.Fatal(err)
	}
	pod := webPod("web-0", appPort, "v1")
	auth := &podAuthorizer{pods: map[string]*corev1.Pod{}}
	srv, xdsAddr := xdsControlPlane(t, e, auth, uint32(appPort))
	a := startPodAgent(t, e, pod, e.caAddr, xdsAddr, tokenFile, "--cert-ttl=6s")
	auth.mu.Lock()
	auth.pods["web-0.shop"] = pod
	auth.mu.Unlock()

	started := time.Now()
	eventually(t, 60*time.Second, "GET /ready answers 200", func() bool { code, _ := a.get("/ready"); return code == 200 })
	t.Logf("ready %s after start", time.Since(started).Round(time.Millisecond))
	if code, body := a.get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	st := a.status(t)
	if st.Identity != web.String() || st.NodeID != "web-0.shop" || st.Serial == "" || !st.XDS.Connected || st.PodLabels["version"] != "v1" {
		t.Errorf("/status: %+v", st)
	}
	_, certs := tooltest.AdminGet(t, a.admin, "/certs")
	if !strings.Contains(certs, web.String()) || !strings.Contains(certs, st.Serial) {
		t.Errorf("Envoy's /certs lacks the workload certificate %s (serial %s):\n%s", web, st.Serial, certs)
	}
	proxy := proxyStatus(t, srv, "web-0.shop")
	if proxy.Class != "web-v1" || proxy.Identity != web.String() {
		t.Errorf("the xDS server serves web-0.shop as %+v", proxy)
	}

	// The app's readiness probe, rewritten to the agent.
	if code, _ := a.get("/app-health/web/readyz"); code != 200 {
		t.Errorf("app probe while the app is healthy: %d", code)
	}
	appHealthy.Store(false)
	if code, body := a.get("/app-health/web/readyz"); code != 503 || !strings.Contains(body, "HTTP 500") {
		t.Errorf("app probe while the app fails: %d %s", code, body)
	}
	appHealthy.Store(true)

	// The kubelet rotates the token: the next CSR must use the new one
	// (the old one is no longer accepted).
	renewals := st.Renewals
	tok2 := saToken(t, "shop", "web", "web-0", 2)
	if err := e.auth.Add(tok2, web); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteTokenFile(tokenFile, tok2); err != nil {
		t.Fatal(err)
	}
	e.auth.Remove(tok)
	rotated := time.Now()
	eventually(t, 30*time.Second, "a certificate renewed with the rotated token", func() bool { return a.status(t).Renewals >= renewals+2 })
	t.Logf("two renewals %s after the rotation", time.Since(rotated).Round(time.Millisecond))
	if strings.Contains(a.out.String(), "certificate request failed") {
		t.Errorf("a CSR failed after the token rotation:\n%s", a.out.String())
	}

	stopping := time.Now()
	if err := a.stop(t); err != nil {
		t.Errorf("weft agent exited with %v after SIGTERM", err)
	}
	t.Logf("stopped %s after SIGTERM", time.Since(stopping).Round(time.Millisecond))
	if !strings.Contains(a.out.String(), "envoy stopped") {
		t.Errorf("the agent's log does not say Envoy stopped:\n%s", a.out.String())
	}
}

// TestWeftAgentRefused: a pod whose labels match no version of its
// service is refused by the control plane; the agent's /ready says so,
// with the control plane's reason, /status has it, and the log says it
// once, clearly.
func TestWeftAgentRefused(t *testing.T) {
	e := newMeshEnv(t)
	web := cav1.Identity{TrustDomain: trustDomain, Namespace: "shop", ServiceAccount: "web"}
	tok := saToken(t, "shop", "web", "web-9", 1)
	if err := e.auth.Add(tok, web); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(e.dir, "token-9")
	if err := ca.WriteTokenFile(tokenFile, tok); err != nil {
		t.Fatal(err)
	}
	pod := webPod("web-9", 8080, "v7")
	auth := &podAuthorizer{pods: map[string]*corev1.Pod{"web-9.shop": pod}}
	_, xdsAddr := xdsControlPlane(t, e, auth, 8080)
	a := startPodAgent(t, e, pod, e.caAddr, xdsAddr, tokenFile)

	want := "the control plane refused this proxy's xDS stream: not a workload of the mesh: pod shop/web-9: its labels match no version of service web (v1: version=v1)"
	var body string
	eventually(t, 60*time.Second, "/ready says the stream was refused", func() bool {
		var code int
		code, body = a.get("/ready")
		return code == 503 && strings.Contains(body, want)
	})
	st := a.status(t)
	if st.Ready || !strings.Contains(st.XDS.Refused, "its labels match no version of service web") || st.PodLabels["version"] != "v7" {
		t.Errorf("/status: %+v", st)
	}
	log := a.out.String()
	if n := strings.Count(log, `level=ERROR msg="agent: the control plane refused this proxy's xDS stream`); n != 1 {
		t.Errorf("the refusal is logged %d times, want once:\n%s", n, log)
	}
	if !strings.Contains(log, "its labels match no version of service web") {
		t.Errorf("the log lacks the reason:\n%s", log)
	}
}

// TestWeftAgentBadToken: a token file that is not a service-account JWT,
// or one for another pod, stops `weft agent` at once with a message that
// says which.
func TestWeftAgentBadToken(t *testing.T) {
	e := newMeshEnv(t)
	for name, tc := range map[string]struct{ token, want string }{
		"not a JWT": {"opaque-token-opaque-token", "is not a JWT: want the pod's projected service-account token"},
		"other pod": {saToken(t, "shop", "web", "web-1", 1), "is bound to pod web-1; this is pod web-0"},
		"other ns":  {saToken(t, "billing", "web", "web-0", 1), "is for namespace billing; the pod runs in shop"},
	} {
		t.Run(name, func(t *testing.T) {
			tokenFile := filepath.Join(e.dir, strings.ReplaceAll(name, " ", "-"))
			if err := ca.WriteTokenFile(tokenFile, tc.token); err != nil {
				t.Fatal(err)
			}
			a := startPodAgent(t, e, webPod("web-0", 8080, "v1"), e.caAddr, "127.0.0.1:1", tokenFile)
			select {
			case err := <-a.done:
				a.done <- err
				if err == nil || !strings.Contains(a.out.String(), tc.want) {
					t.Errorf("exit %v, output:\n%s\nwant %q", err, a.out.String(), tc.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("weft agent still runs")
			}
		})
	}
}

func proxyStatus(t *testing.T, s *xds.Server, node string) status.Proxy {
	t.Helper()
	var out status.Proxy
	eventually(t, 30*time.Second, "the xDS server lists "+node, func() bool {
		for _, p := range s.Status().Proxies {
			if p.NodeID == node {
				out = p
				return true
			}
		}
		return false
	})
	return out
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
