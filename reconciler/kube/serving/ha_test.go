package serving_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/kube/kubetesting"
	"github.com/weft-dev/weft/reconciler/kube/workload"
)

const serverName = "weft-controller.weft-system.svc"

// workloadPod is a pod of the shop mesh: service svc, version v, at ip.
type workloadPod struct{ name, svc, version, ip string }

var shopPods = []workloadPod{
	{"frontend-0", "frontend", "v1", "10.3.0.1"},
	{"reviews-v1-0", "reviews", "v1", "10.3.1.1"},
	{"reviews-v2-0", "reviews", "v2", "10.3.2.1"},
}

// shopCluster creates the shop's namespace, service accounts, pods and
// EndpointSlices, and returns the pods by name.
func shopCluster(t *testing.T, env *kubetest.Env) map[string]*corev1.Pod {
	t.Helper()
	cs := env.Clientset
	kubetesting.Namespace(t, cs, "shop")
	kubetesting.ServiceAccount(t, cs, "shop", "frontend")
	kubetesting.ServiceAccount(t, cs, "shop", "reviews")
	pods := map[string]*corev1.Pod{}
	for _, p := range shopPods {
		pods[p.name] = kubetesting.CreatePod(t, cs, kubetesting.Pod{Namespace: "shop", Name: p.name, ServiceAccount: p.svc, IP: p.ip,
			Labels: map[string]string{"mesh.weft.dev/service": p.svc, "version": p.version}})
	}
	kubetesting.ApplySlice(t, cs, kubetesting.Slice("shop", "reviews", "reviews-a",
		kubetesting.Endpoint{IP: "10.3.1.1", Pod: "reviews-v1-0"}, kubetesting.Endpoint{IP: "10.3.2.1", Pod: "reviews-v2-0"}))
	kubetesting.ApplySlice(t, cs, kubetesting.Slice("shop", "frontend", "frontend-a", kubetesting.Endpoint{IP: "10.3.0.1", Pod: "frontend-0"}))
	return pods
}

// TestTwoReplicasFailover: two controller replicas (processes) serve one
// mesh; the proxies reach them through a TCP proxy standing for the
// Service. The first replica is the leader and creates the CA root; the
// second waits for it and serves the same snapshot versions. Killing the
// replica the proxies are connected to (SIGKILL) sends them to the other,
// where they are in sync at once with the version they had; the survivor
// signs CSRs from the same root, becomes the leader when the lease
// expires, and serves endpoint changes.
func TestTwoReplicasFailover(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	pods := shopCluster(t, env)
	dir := t.TempDir()
	kubetesting.WriteMesh(t, dir, kubetesting.ShopMesh("strict", 9080))
	cfg := replicaConfig{Kubeconfig: kubetesting.ControllerKubeconfig(t, env), Namespace: "weft-system", TrustDomain: "shop.example", MeshDir: dir, Revision: "r1"}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	cfg.Name = "a"
	a := startReplica(t, cfg)
	stA := a.waitState(t, 2*time.Minute, "leader, root created, r1 served", func(st replicaState) bool {
		return st.Leader && st.Ready && st.CreatedRoot && st.Reconciled == "r1"
	})
	cfg.Name = "b"
	b := startReplica(t, cfg)
	stB := b.waitState(t, 2*time.Minute, "ready with r1", func(st replicaState) bool { return st.Ready && st.Reconciled == "r1" })
	if stB.Leader || stB.CreatedRoot || stB.OnElected || !stA.OnElected {
		t.Fatalf("replica b: leader %v, created the root %v, OnElected ran %v (a: %v); want neither on b, OnElected on a",
			stB.Leader, stB.CreatedRoot, stB.OnElected, stA.OnElected)
	}
	if len(stA.XDS.Classes) != 3 || !maps.Equal(stA.XDS.Classes, stB.XDS.Classes) {
		t.Fatalf("the replicas serve different versions:\na %v\nb %v", stA.XDS.Classes, stB.XDS.Classes)
	}

	root := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "weft-system", Name: "weft-ca-root"}, root); err != nil {
		t.Fatal(err)
	}
	bundle := root.Data["tls.crt"]
	xdsProxy, caProxy := startProxy(t, a.xds, b.xds), startProxy(t, a.ca, b.ca)
	caClient := kubetesting.CAClient(t, caProxy.addr(), bundle, serverName)

	// Three workloads: a certificate from the CA (a token bound to the
	// pod), then delta ADS as the pod.
	clients := map[string]*kubetesting.XDSClient{}
	classOf := map[string]string{}
	for _, p := range shopPods {
		tok := kubetesting.Token(t, env.Clientset, "shop", p.svc, "weft", pods[p.name])
		cert, _, err := kubetesting.Sign(ctx, t, caClient, tok, fmt.Sprintf("spiffe://shop.example/ns/shop/sa/%s", p.svc))
		if err != nil {
			t.Fatalf("CSR of %s: %v", p.name, err)
		}
		c := kubetesting.NewXDSClient(xdsProxy.addr(), credentials.NewTLS(kubetesting.MTLS(cert, bundle, serverName)),
			&corev3.Node{Id: workload.NodeID(p.name, "shop")})
		go c.Run(ctx)
		clients[p.name] = c
		classOf[p.name] = compiler.ClassName(p.svc, p.version)
	}
	for name, c := range clients {
		v := stA.XDS.Classes[classOf[name]]
		if err := c.Wait(ctx, "every type at "+v, func(st kubetesting.ClientState) bool { return allAt(st, v) }); err != nil {
			t.Fatal(err)
		}
	}
	if v := clients["frontend-0"].State().Versions[resource.EndpointType]; v != stA.XDS.Classes["frontend-v1"] {
		t.Fatalf("frontend-0 holds load assignments of %q, want %s", v, stA.XDS.Classes["frontend-v1"])
	}
	a.waitState(t, 30*time.Second, "the three proxies in sync", inSync(3, stA.XDS.Classes))
	if st, _ := b.state(); len(st.XDS.Proxies) != 0 {
		t.Fatalf("replica b has proxies before the failover: %+v", st.XDS.Proxies)
	}

	killed := time.Now()
	a.kill()
	var reconnects []time.Duration
	for name, c := range clients {
		v := stA.XDS.Classes[classOf[name]]
		err := c.Wait(ctx, "reconnected with "+v, func(st kubetesting.ClientState) bool {
			return st.Connects >= 2 && st.Connected.After(killed) && allAt(st, v)
		})
		if err != nil {
			t.Fatal(err)
		}
		reconnects = append(reconnects, c.State().Connected.Sub(killed))
	}
	synced := b.waitState(t, 30*time.Second, "the three proxies in sync with the versions they had", inSync(3, stA.XDS.Classes))
	inSyncAt := time.Since(killed)
	for _, p := range synced.XDS.Proxies {
		if p.Class != classOf[p.NodeID[:len(p.NodeID)-len(".shop")]] {
			t.Errorf("proxy %s served as class %s by the survivor", p.NodeID, p.Class)
		}
	}

	// The survivor signs from the same root.
	tok := kubetesting.Token(t, env.Clientset, "shop", "reviews", "weft", pods["reviews-v1-0"])
	cert, _, err := kubetesting.Sign(ctx, t, caClient, tok, "spiffe://shop.example/ns/shop/sa/reviews")
	if err != nil {
		t.Fatalf("CSR after the failover: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the survivor's certificate does not verify with the root: %v", err)
	}

	b.waitState(t, 30*time.Second, "leader, OnElected run", func(st replicaState) bool { return st.Leader && st.OnElected })
	leader := time.Since(killed)

	// The survivor serves endpoint changes.
	before := clients["frontend-0"].State().Responses[resource.EndpointType]
	kubetesting.ApplySlice(t, env.Clientset, kubetesting.Slice("shop", "reviews", "reviews-a",
		kubetesting.Endpoint{IP: "10.3.1.1", Pod: "reviews-v1-0"}, kubetesting.Endpoint{IP: "10.3.2.1", Pod: "reviews-v2-0"},
		kubetesting.Endpoint{IP: "10.3.1.2", Pod: "frontend-0"})) // frontend-0 matches reviews' v1 labels, but runs as frontend
	kubetesting.CreatePod(t, env.Clientset, kubetesting.Pod{Namespace: "shop", Name: "reviews-v2-1", ServiceAccount: "reviews", IP: "10.3.2.2",
		Labels: map[string]string{"mesh.weft.dev/service": "reviews", "version": "v2"}})
	kubetesting.ApplySlice(t, env.Clientset, kubetesting.Slice("shop", "reviews", "reviews-b", kubetesting.Endpoint{IP: "10.3.2.2", Pod: "reviews-v2-1"}))
	err = clients["frontend-0"].Wait(ctx, "the new reviews endpoint", func(st kubetesting.ClientState) bool {
		return st.Responses[resource.EndpointType] > before && st.Versions[resource.EndpointType] != stA.XDS.Classes["frontend-v1"]
	})
	if err != nil {
		t.Fatal(err)
	}

	slices.Sort(reconnects)
	t.Logf("failover: proxies reconnected to the survivor %s..%s after the kill, all in sync by %s (polled); survivor leader after %s (lease 4s)",
		reconnects[0].Round(time.Millisecond), reconnects[len(reconnects)-1].Round(time.Millisecond), inSyncAt.Round(time.Millisecond), leader.Round(time.Millisecond))
}

// allAt: the client holds listeners, clusters and routes at version v,
// and load assignments too if it subscribed to any (reviews calls
// nothing: no EDS cluster).
func allAt(st kubetesting.ClientState, v string) bool {
	for _, typ := range compiler.ResourceTypes {
		if st.Versions[typ] != v && (typ != resource.EndpointType || st.Versions[typ] != "") {
			return false
		}
	}
	return true
}

// inSync: n proxies connected and in sync with the versions given per
// class.
func inSync(n int, versions map[string]string) func(replicaState) bool {
	return func(st replicaState) bool {
		count := 0
		for _, p := range st.XDS.Proxies {
			if p.Connected && p.InSync && p.AckedVersion == versions[p.Class] && p.Transport == status.TransportDelta {
				count++
			}
		}
		return count == n
	}
}
