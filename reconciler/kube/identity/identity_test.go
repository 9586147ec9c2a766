package identity_test

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/weft-dev/weft/internal/kubetest"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/reconciler/kube/identity"
	"github.com/weft-dev/weft/reconciler/kube/kubetesting"
	"github.com/weft-dev/weft/reconciler/kube/serving"
	"github.com/weft-dev/weft/reconciler/kube/workload"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema/mesh"
)

const td = "shop.example"

func id(ns, sa string) cav1.Identity {
	return cav1.Identity{TrustDomain: td, Namespace: ns, ServiceAccount: sa}
}

// caServer serves c's CertificateService with the TokenReview
// authenticator on 127.0.0.1 and returns a client of it.
func caServer(t *testing.T, env *kubetest.Env, c *ca.CA, obs ca.Observer) cav1.CertificateServiceClient {
	t.Helper()
	tlsCfg, err := c.ServerTLS(id("weft-system", "weft-controller"), []string{"weft-controller.weft-system.svc"}, nil, tls.NoClientCert)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	srv := ca.NewServer(c, &identity.TokenReviewAuthenticator{Client: env.Client, TrustDomain: td}, nil)
	if obs != nil {
		srv.Observe(obs)
	}
	srv.Register(gs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return kubetesting.CAClient(t, ln.Addr().String(), c.TrustBundlePEM(), "weft-controller.weft-system.svc")
}

func newCA(t *testing.T) *ca.CA {
	t.Helper()
	c, err := ca.New(ca.Config{TrustDomain: td, StateDir: filepath.Join(t.TempDir(), "ca")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantRefused fails unless err is a gRPC status with code whose message
// contains every part.
func wantRefused(t *testing.T, err error, code codes.Code, parts ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code {
		t.Fatalf("got %v, want %v", err, code)
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Fatalf("message %q does not contain %q", st.Message(), p)
		}
	}
}

// TestTokenReviewAuthenticator: CSRs authenticated by real projected
// service-account tokens from the real apiserver (TokenRequest), checked
// with its TokenReview API.
func TestTokenReviewAuthenticator(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	cs := env.Clientset
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kubetesting.Namespace(t, cs, "shop")
	for _, sa := range []string{"orders", "payments", "gone", "orders-pod"} {
		kubetesting.ServiceAccount(t, cs, "shop", sa)
	}
	c := newCA(t)
	reg := prometheus.NewRegistry()
	metrics, err := ca.NewMetrics(reg, c)
	if err != nil {
		t.Fatal(err)
	}
	cl := caServer(t, env, c, metrics)
	orders := id("shop", "orders")
	signed := 0
	counted := &signed

	t.Run("a token of orders gets orders' SPIFFE id", func(t *testing.T) {
		tok := kubetesting.Token(t, cs, "shop", "orders", "weft", nil)
		got, err := (&identity.TokenReviewAuthenticator{Client: env.Client, TrustDomain: td}).Authenticate(ctx, tok)
		if err != nil || got != orders {
			t.Fatalf("Authenticate = %v, %v; want %v", got, err, orders)
		}
		cert, resp, err := kubetesting.Sign(ctx, t, cl, tok, orders.String())
		if err != nil {
			t.Fatal(err)
		}
		*counted++
		if len(cert.Leaf.URIs) != 1 || cert.Leaf.URIs[0].String() != "spiffe://shop.example/ns/shop/sa/orders" {
			t.Fatalf("certificate URIs %v, want [spiffe://shop.example/ns/shop/sa/orders]", cert.Leaf.URIs)
		}
		if string(resp.GetTrustBundlePem()) != string(c.TrustBundlePEM()) {
			t.Error("the response's trust bundle is not the CA's")
		}
	})

	t.Run("a CSR naming another id is refused", func(t *testing.T) {
		tok := kubetesting.Token(t, cs, "shop", "orders", "weft", nil)
		_, _, err := kubetesting.Sign(ctx, t, cl, tok, id("shop", "payments").String())
		wantRefused(t, err, codes.PermissionDenied, "spiffe://shop.example/ns/shop/sa/orders", "spiffe://shop.example/ns/shop/sa/payments")
	})

	t.Run("a token for another audience is refused", func(t *testing.T) {
		tok := kubetesting.Token(t, cs, "shop", "orders", "vault", nil)
		_, _, err := kubetesting.Sign(ctx, t, cl, tok, orders.String())
		wantRefused(t, err, codes.Unauthenticated, `audiences ["vault"] is invalid for the target audiences ["weft"]`)
	})

	t.Run("an expired token is refused", func(t *testing.T) {
		sa, err := cs.CoreV1().ServiceAccounts("shop").Get(ctx, "orders", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		tok, err := env.SignServiceAccountToken(kubetest.TokenClaims{ServiceAccount: sa, Audiences: []string{"weft"},
			NotBefore: now.Add(-2 * time.Hour), Expiry: now.Add(-time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = kubetesting.Sign(ctx, t, cl, tok, orders.String())
		wantRefused(t, err, codes.Unauthenticated, "service account token has expired")
	})

	t.Run("a token of a deleted service account is refused", func(t *testing.T) {
		tok := kubetesting.Token(t, cs, "shop", "gone", "weft", nil)
		gone := id("shop", "gone").String()
		if _, _, err := kubetesting.Sign(ctx, t, cl, tok, gone); err != nil {
			t.Fatalf("before the delete: %v", err)
		}
		*counted++
		if err := cs.CoreV1().ServiceAccounts("shop").Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		err := eventuallyRefused(ctx, t, cl, tok, gone, counted)
		wantRefused(t, err, codes.Unauthenticated, "the apiserver refused the token", `serviceaccounts "gone" not found`)
	})

	t.Run("a token bound to a deleted pod is refused", func(t *testing.T) {
		pod := kubetesting.CreatePod(t, cs, kubetesting.Pod{Namespace: "shop", Name: "orders-1", ServiceAccount: "orders-pod"})
		tok := kubetesting.Token(t, cs, "shop", "orders-pod", "weft", pod)
		me := id("shop", "orders-pod").String()
		if _, _, err := kubetesting.Sign(ctx, t, cl, tok, me); err != nil {
			t.Fatalf("before the delete: %v", err)
		}
		*counted++
		if err := cs.CoreV1().Pods("shop").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))}); err != nil {
			t.Fatal(err)
		}
		err := eventuallyRefused(ctx, t, cl, tok, me, counted)
		wantRefused(t, err, codes.Unauthenticated, "the apiserver refused the token", "service account token has been invalidated")
	})

	t.Run("no token", func(t *testing.T) {
		_, err := cl.Sign(ctx, &cav1.SignRequest{})
		wantRefused(t, err, codes.Unauthenticated, "no bearer token")
	})

	t.Run("metrics", func(t *testing.T) {
		if got := testutil.ToFloat64(metricsSigned(t, reg)); got != float64(signed) {
			t.Errorf("%s = %v, want the %d certificates signed", ca.MetricSigned, got, signed)
		}
		if _, ok := metrics.Nearest(); !ok {
			t.Errorf("no %s", ca.MetricNearestExpiry)
		}
	})
}

// metricsSigned gathers the signed counter from reg.
func metricsSigned(t *testing.T, reg *prometheus.Registry) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == ca.MetricSigned {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: "copy"})
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("no %s gathered", ca.MetricSigned)
	return nil
}

// eventuallyRefused asks until the CA refuses (the apiserver caches a
// successful token review for 10 s) and returns the refusal.
func eventuallyRefused(ctx context.Context, t *testing.T, cl cav1.CertificateServiceClient, tok, id string, signed *int) error {
	t.Helper()
	start := time.Now()
	for {
		_, _, err := kubetesting.Sign(ctx, t, cl, tok, id)
		if err != nil {
			t.Logf("refused %s after the delete: %v", time.Since(start).Round(100*time.Millisecond), err)
			return err
		}
		*signed++
		if time.Since(start) > time.Minute {
			t.Fatal("still signed a minute after the delete")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestPodAuthorizer: xDS streams of real service accounts' certificates
// (from the CA, authenticated by TokenRequest tokens) are bound to the
// pods their node ids name, and served the class the pods' labels select.
func TestPodAuthorizer(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	cs := env.Clientset
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kubetesting.Namespace(t, cs, "shop")
	for _, sa := range []string{"frontend", "reviews"} {
		kubetesting.ServiceAccount(t, cs, "shop", sa)
	}
	pods := map[string]*corev1.Pod{}
	for _, p := range []kubetesting.Pod{
		{Name: "reviews-v1-a", ServiceAccount: "reviews", Labels: map[string]string{"mesh.weft.dev/service": "reviews", "version": "v1"}, IP: "10.1.0.1"},
		{Name: "reviews-v2-a", ServiceAccount: "reviews", Labels: map[string]string{"mesh.weft.dev/service": "reviews", "version": "v2"}, IP: "10.1.0.2"},
		{Name: "reviews-pending", ServiceAccount: "reviews", Labels: map[string]string{"mesh.weft.dev/service": "reviews", "version": "v1"}, Node: "-"},
		{Name: "reviews-done", ServiceAccount: "reviews", Labels: map[string]string{"mesh.weft.dev/service": "reviews", "version": "v1"}, IP: "10.1.0.3"},
		{Name: "reviews-v9", ServiceAccount: "reviews", Labels: map[string]string{"mesh.weft.dev/service": "reviews", "version": "v9"}, IP: "10.1.0.4"},
		{Name: "frontend-v1-a", ServiceAccount: "frontend", Labels: map[string]string{"mesh.weft.dev/service": "frontend", "version": "v1"}, IP: "10.1.0.5"},
	} {
		p.Namespace = "shop"
		pods[p.Name] = kubetesting.CreatePod(t, cs, p)
	}
	kubetesting.SetPodPhase(t, cs, "shop", "reviews-done", corev1.PodSucceeded)

	var co cache.Options
	serving.CacheOptions(&co)
	mgr := kubetesting.NewManager(t, env.Config, co, "", "")
	// The pods the authorizer reads come from the informer, trimmed.
	if _, err := mgr.GetCache().GetInformer(ctx, &corev1.Pod{}); err != nil {
		t.Fatal(err)
	}
	kubetesting.Run(t, mgr)

	m := kubetesting.LoadMesh(t, kubetesting.ShopMesh("strict", 9080), "r1")
	c := newCA(t)
	cl := caServer(t, env, c, nil)
	xdsTLS, err := c.ServerTLS(id("weft-system", "weft-controller"), []string{"weft-controller.weft-system.svc"}, nil, tls.RequireAndVerifyClientCert)
	if err != nil {
		t.Fatal(err)
	}
	auth := &identity.PodAuthorizer{Pods: mgr.GetCache(), Live: mgr.GetAPIReader(), Definition: func() *mesh.Model { return m }}
	srv := xds.New(xds.Options{TLS: xdsTLS, Authorizer: auth, Logger: quietLogger()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	res := kubetesting.Compile(t, m, nil)
	if err := srv.Publish("r1", res); err != nil {
		t.Fatal(err)
	}

	// A workload certificate per service account, through the CA with
	// a token bound to one of its pods.
	certs := map[string]*tls.Certificate{}
	for sa, pod := range map[string]string{"reviews": "reviews-v1-a", "frontend": "frontend-v1-a"} {
		tok := kubetesting.Token(t, cs, "shop", sa, "weft", pods[pod])
		cert, _, err := kubetesting.Sign(ctx, t, cl, tok, id("shop", sa).String())
		if err != nil {
			t.Fatal(err)
		}
		certs[sa] = cert
	}
	dial := func(sa string, node *corev3.Node) error {
		return xdsOnce(ctx, ln.Addr().String(), kubetesting.MTLS(certs[sa], c.TrustBundlePEM(), "weft-controller.weft-system.svc"), node)
	}

	for _, tc := range []struct {
		name  string
		sa    string
		node  *corev3.Node
		class string   // served
		want  []string // refused, with these in the reason
	}{
		{name: "a v1 pod is served reviews-v1", sa: "reviews", node: &corev3.Node{Id: "reviews-v1-a.shop"}, class: "reviews-v1"},
		{name: "the class comes from the pod's labels", sa: "reviews", node: &corev3.Node{Id: "reviews-v2-a.shop"}, class: "reviews-v2"},
		{name: "a claimed class is checked", sa: "reviews", node: &corev3.Node{Id: "reviews-v2-a.shop", Cluster: "reviews-v1"},
			want: []string{`pod shop/reviews-v2-a is of class reviews-v2 of service reviews, the stream claims "reviews-v1"`}},
		{name: "node.cluster may be the service (the injected agent's)", sa: "reviews", node: &corev3.Node{Id: "reviews-v2-a.shop", Cluster: "reviews"}, class: "reviews-v2"},
		{name: "a claimed weft.class is checked", sa: "reviews", node: &corev3.Node{Id: "reviews-v2-a.shop", Cluster: "reviews", Metadata: classMeta("reviews-v1")},
			want: []string{`pod shop/reviews-v2-a is of class reviews-v2, the stream claims class "reviews-v1"`}},
		{name: "another service account's pod", sa: "frontend", node: &corev3.Node{Id: "reviews-v1-a.shop"},
			want: []string{"pod shop/reviews-v1-a runs as spiffe://shop.example/ns/shop/sa/reviews; the client certificate is spiffe://shop.example/ns/shop/sa/frontend"}},
		{name: "no such pod", sa: "reviews", node: &corev3.Node{Id: "reviews-ghost.shop"}, want: []string{"no pod reviews-ghost in namespace shop"}},
		{name: "a node id that is no pod", sa: "reviews", node: &corev3.Node{Id: "reviews"}, want: []string{`node id "reviews" is not <pod>.<namespace>`}},
		{name: "an unscheduled pod", sa: "reviews", node: &corev3.Node{Id: "reviews-pending.shop"}, want: []string{"pod shop/reviews-pending is not scheduled"}},
		{name: "a terminated pod", sa: "reviews", node: &corev3.Node{Id: "reviews-done.shop"}, want: []string{"pod shop/reviews-done has terminated (Succeeded)"}},
		{name: "a pod of no version", sa: "reviews", node: &corev3.Node{Id: "reviews-v9.shop"},
			want: []string{"its labels match no version of service reviews (v1: version=v1; v2: version=v2)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := dial(tc.sa, tc.node)
			if len(tc.want) > 0 {
				wantRefused(t, err, codes.PermissionDenied, tc.want...)
				for _, r := range srv.Status().RefusedStreams {
					if r.NodeID == tc.node.GetId() && strings.Contains(r.Reason, tc.want[0]) {
						return
					}
				}
				t.Fatalf("the refusal is not in the status's refused streams: %+v", srv.Status().RefusedStreams)
			}
			if err != nil {
				t.Fatal(err)
			}
			var got string
			for _, p := range srv.Status().Proxies {
				if p.NodeID == tc.node.GetId() {
					got = p.Class
				}
			}
			if got != tc.class {
				t.Fatalf("node %s served as class %q, want %q", tc.node.GetId(), got, tc.class)
			}
		})
	}

	// A pod created after the cache synced is found (cache, or the live
	// read while the informer catches up).
	kubetesting.CreatePod(t, cs, kubetesting.Pod{Namespace: "shop", Name: "reviews-v2-b", ServiceAccount: "reviews",
		Labels: map[string]string{"mesh.weft.dev/service": "reviews", "version": "v2"}, IP: "10.1.0.6"})
	if err := dial("reviews", &corev3.Node{Id: "reviews-v2-b.shop"}); err != nil {
		t.Fatalf("a new pod: %v", err)
	}
	if !errors.Is(workloadErr(m, pods["reviews-v9"]), workload.ErrNotInMesh) {
		t.Error("workload.Of accepted a pod of no version")
	}
}

func workloadErr(m *mesh.Model, p *corev1.Pod) error {
	_, _, err := workload.Of(m, p)
	return err
}

// xdsOnce opens a delta ADS stream as node and waits for its first
// listener response (nil) or the stream's end (its error).
func xdsOnce(ctx context.Context, addr string, cfg *tls.Config, node *corev3.Node) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	defer conn.Close()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return err
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ListenerType}); err != nil {
		return err
	}
	resp, err := st.Recv()
	if err != nil {
		return err
	}
	if resp.GetTypeUrl() != resource.ListenerType || len(resp.GetResources()) == 0 {
		return errors.New("the first response is not the listeners")
	}
	return nil
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func classMeta(class string) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{xds.ClassMetadataKey: structpb.NewStringValue(class)}}
}
