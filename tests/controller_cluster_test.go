package tests

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	"google.golang.org/grpc/credentials"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/weft-dev/weft/internal/fluxtest"
	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/internal/tooltest"
	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/controller"
	"github.com/weft-dev/weft/reconciler/kube/kubetesting"
	"github.com/weft-dev/weft/reconciler/kube/workload"
	"github.com/weft-dev/weft/sidecar/agent"
	"github.com/weft-dev/weft/sidecar/inject"
	"github.com/weft-dev/weft/sidecar/webhook"
)

// controllerServerName is the name the agents verify the controller's
// serving certificate with (the Service's).
const controllerServerName = "weft-controller.weft-system.svc"

// TestControllerInCluster runs the weft binary as the Deployment runs it
// (its flags, leader election, the service account and RBAC of
// environments/deploy) against a real apiserver + etcd and Flux
// source-controller, as the whole control plane: the Mesh shop becomes
// Ready from its GitRepository; pods created through the apiserver in the
// namespace labelled for injection come back with the sidecar and the
// mesh CA's trust bundle (the injector webhook of webhook.yaml, called by
// the apiserver); a workload holding a certificate signed by the CA for
// its projected token gets its class's listeners, clusters, routes and
// load assignments over mTLS from the one xDS server; the Mesh status
// counts the proxies; an EndpointSlice change reaches the proxy's load
// assignment without a new revision; a revision with another trust
// domain is refused with the reason, and the last one keeps serving.
func TestControllerInCluster(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{Scheme: controller.Scheme()})
	env.InstallCRDs(t, filepath.Join(tooltest.RepoRoot(), "environments", "deploy", "crd"))
	kubeconfig := kubetesting.ControllerKubeconfig(t, env) // weft-system, the RBAC, the controller's token
	cs := env.Clientset
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The shop namespace, labelled for injection; the webhook
	// configuration of the manifest, called by URL on the controller's
	// webhook port (no Service in this cluster).
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Labels: map[string]string{inject.InjectKey: inject.Enabled}}}); err != nil {
		t.Fatal(err)
	}
	kubetesting.ServiceAccount(t, cs, "shop", "frontend")
	kubetesting.ServiceAccount(t, cs, "shop", "reviews")
	webhookAddr := fmt.Sprintf("127.0.0.1:%d", tooltest.FreePorts(t, 1)[0])
	createWebhookConfiguration(t, env, "https://"+webhookAddr+webhook.Path)

	// The mesh in git, its GitRepository, the controller, the Mesh.
	srv := fluxtest.StartGitServer(t)
	sc := fluxtest.StartSourceController(t, env)
	repo := srv.CreateRepo(t, "shop")
	shopFiles := func(trustDomain string) map[string]string {
		src := strings.Replace(kubetesting.ShopMesh("strict", 9080), `"shop.example"`, `"`+trustDomain+`"`, 1)
		// Timeouts, as the default policies require.
		src = strings.Replace(src, "\t\t\tcalls: [\"reviews\"]\n", "\t\t\tcalls: [\"reviews\"]\n\t\t\ttimeout: \"3s\"\n", 1)
		src = strings.Replace(src, "\t\t\t\tto: {v1: 50, v2: 50}\n", "\t\t\t\tto: {v1: 50, v2: 50}\n\t\t\t\ttimeout: \"2s\"\n", 1)
		return map[string]string{"cue.mod/module.cue": "module: \"example.com/shop\"\nlanguage: version: \"v0.17.0\"\n", "mesh.cue": src}
	}
	rev := fluxtest.Revision(fluxtest.Branch, repo.Commit(t, shopFiles("shop.example"), "shop"))
	sc.CreateGitRepository(t, "weft-system", "shop", repo.URL)
	sc.WaitForArtifact(t, client.ObjectKey{Namespace: "weft-system", Name: "shop"}, rev, 2*time.Minute)
	rc := startControllerWith(t, kubeconfig, map[string]string{"webhook-address": webhookAddr, "webhook-extra-hosts": "127.0.0.1"})
	waitReadyz(t, rc, 2*time.Minute)
	if err := env.Client.Create(ctx, &meshv1.Mesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: "shop"},
		Spec: meshv1.MeshSpec{SourceRef: meshv1.SourceReference{Kind: meshv1.GitRepositoryKind, Name: "shop"},
			Interval: metav1.Duration{Duration: time.Hour}, RetryInterval: &metav1.Duration{Duration: time.Second}},
	}); err != nil {
		t.Fatal(err)
	}
	waitMesh(t, env, "Ready with "+rev, func(m *meshv1.Mesh) bool {
		return conditions.IsReady(m) && m.Status.LastAppliedRevision == rev
	})

	// The mesh CA's root, as the controller's leader stored it.
	root := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "weft-system", Name: "weft-ca-root"}, root); err != nil {
		t.Fatal(err)
	}
	bundle := root.Data["tls.crt"]

	// Pods created through the apiserver are injected by the webhook.
	pods := map[string]*corev1.Pod{}
	for _, p := range []kubetesting.Pod{
		{Namespace: "shop", Name: "frontend-0", ServiceAccount: "frontend", IP: "10.3.0.1", Labels: workloadLabels("frontend", "v1")},
		{Namespace: "shop", Name: "reviews-v1-0", ServiceAccount: "reviews", IP: "10.3.1.1", Labels: workloadLabels("reviews", "v1")},
		{Namespace: "shop", Name: "reviews-v2-0", ServiceAccount: "reviews", IP: "10.3.2.1", Labels: workloadLabels("reviews", "v2")},
	} {
		pods[p.Name] = kubetesting.CreatePod(t, cs, p)
	}
	checkInjected(t, pods["frontend-0"], bundle)
	kubetesting.ApplySlice(t, cs, kubetesting.Slice("shop", "reviews", "reviews-a",
		kubetesting.Endpoint{IP: "10.3.1.1", Pod: "reviews-v1-0"}, kubetesting.Endpoint{IP: "10.3.2.1", Pod: "reviews-v2-0"}))
	kubetesting.ApplySlice(t, cs, kubetesting.Slice("shop", "frontend", "frontend-a", kubetesting.Endpoint{IP: "10.3.0.1", Pod: "frontend-0"}))

	// Two workloads: a certificate from the CA for their projected
	// token, then delta ADS over mTLS as their pods.
	caClient := kubetesting.CAClient(t, rc.ca, bundle, controllerServerName)
	clients := map[string]*kubetesting.XDSClient{}
	for name, sa := range map[string]string{"frontend-0": "frontend", "reviews-v1-0": "reviews"} {
		tok := kubetesting.Token(t, cs, "shop", sa, "weft", pods[name])
		cert, _, err := kubetesting.Sign(ctx, t, caClient, tok, "spiffe://shop.example/ns/shop/sa/"+sa)
		if err != nil {
			t.Fatalf("CSR of %s: %v", name, err)
		}
		c := kubetesting.NewXDSClient(rc.xds, credentials.NewTLS(kubetesting.MTLS(cert, bundle, controllerServerName)),
			&corev3.Node{Id: workload.NodeID(name, "shop")})
		go c.Run(ctx)
		clients[name] = c
	}
	frontend := clients["frontend-0"]
	reviewsV2 := "outbound|9080|v2|reviews.shop"
	err := frontend.Wait(ctx, "the frontend's class with reviews' endpoints", func(st kubetesting.ClientState) bool {
		return st.Versions[resource.ListenerType] != "" && st.Versions[resource.RouteType] != "" &&
			slices.Equal(endpointIPs(t, frontend, reviewsV2), []string{"10.3.2.1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	clusters := slices.Sorted(maps.Keys(frontend.Held(resource.ClusterType)))
	for _, want := range []string{"outbound|9080|v1|reviews.shop", reviewsV2} {
		if !slices.Contains(clusters, want) {
			t.Errorf("frontend-0 holds clusters %q: want %s (frontend calls reviews)", clusters, want)
		}
	}
	if err := clients["reviews-v1-0"].Wait(ctx, "the reviews v1 class", func(st kubetesting.ClientState) bool {
		return st.Versions[resource.ListenerType] != "" && st.Versions[resource.ClusterType] != ""
	}); err != nil {
		t.Fatal(err)
	}
	if held := clients["reviews-v1-0"].Held(resource.ClusterType); held[reviewsV2] != "" {
		t.Errorf("reviews-v1-0 holds %s: reviews calls nothing (scoping)", reviewsV2)
	}
	m := waitMesh(t, env, "2 proxies in sync", func(m *meshv1.Mesh) bool {
		return m.Status.Proxies != nil && m.Status.Proxies.Total == 2 && m.Status.Proxies.InSync == 2
	})
	if m.Status.Proxies.Summary != "2/2" {
		t.Errorf("proxies summary %q, want 2/2", m.Status.Proxies.Summary)
	}
	waitProxiesReport(t, env, "weft-controller-0", 2)

	// An EndpointSlice change reaches the proxy, without a new revision.
	edsBefore := frontend.State().Versions[resource.EndpointType]
	pods["reviews-v2-1"] = kubetesting.CreatePod(t, cs, kubetesting.Pod{Namespace: "shop", Name: "reviews-v2-1", ServiceAccount: "reviews",
		IP: "10.3.2.2", Labels: workloadLabels("reviews", "v2")})
	kubetesting.ApplySlice(t, cs, kubetesting.Slice("shop", "reviews", "reviews-b", kubetesting.Endpoint{IP: "10.3.2.2", Pod: "reviews-v2-1"}))
	if err := frontend.Wait(ctx, "the new reviews v2 endpoint", func(kubetesting.ClientState) bool {
		return slices.Equal(endpointIPs(t, frontend, reviewsV2), []string{"10.3.2.1", "10.3.2.2"})
	}); err != nil {
		t.Fatal(err)
	}
	if v := frontend.State().Versions[resource.EndpointType]; v == edsBefore || !strings.HasPrefix(v, rev+"/") {
		t.Errorf("load assignments at %q after the change (before %q): want a new version of revision %s", v, edsBefore, rev)
	}
	m = waitMesh(t, env, "2 proxies in sync with the new endpoints", func(m *meshv1.Mesh) bool {
		return m.Status.Proxies != nil && m.Status.Proxies.Total == 2 && m.Status.Proxies.InSync == 2
	})
	if m.Status.LastAppliedRevision != rev || m.Status.LastAttemptedRevision != rev {
		t.Errorf("revisions applied %s, attempted %s after an endpoint change: want %s (no new revision)",
			m.Status.LastAppliedRevision, m.Status.LastAttemptedRevision, rev)
	}
	if _, body := get(t, "http://"+rc.metrics+"/metrics"); !strings.Contains(body, "weft_ca_certificates_signed_total 2\n") ||
		!strings.Contains(body, `weft_xds_proxies{state="in_sync"} 2`) {
		t.Errorf("/metrics does not count 2 certificates signed and 2 proxies in sync:\n%s", grepLines(body, "weft_ca_certificates_signed_total", "weft_xds_proxies"))
	}

	// A revision with another trust domain is refused; the last good one
	// keeps serving.
	bad := fluxtest.Revision(fluxtest.Branch, repo.Commit(t, shopFiles("other.example"), "another trust domain"))
	sc.RequestReconcile(t, client.ObjectKey{Namespace: "weft-system", Name: "shop"})
	m = waitMesh(t, env, "the revision with another trust domain stalled", func(m *meshv1.Mesh) bool {
		return m.Status.LastAttemptedRevision == bad && conditions.IsStalled(m)
	})
	if msg := conditions.GetMessage(m, meta.ReadyCondition); !strings.Contains(msg, `trustDomain is "other.example"; this controller's mesh CA signs for "shop.example" (--trust-domain)`) ||
		m.Status.LastAppliedRevision != rev {
		t.Errorf("Ready: %s; applied %s: want the trust domain refused and %s still applied", msg, m.Status.LastAppliedRevision, rev)
	}
	if v := frontend.State().Versions[resource.ListenerType]; !strings.HasPrefix(v, rev+"/") {
		t.Errorf("frontend-0 holds listeners at %s after the refused revision: want %s's", v, rev)
	}
}

// createWebhookConfiguration creates environments/deploy's
// MutatingWebhookConfiguration with its client at url.
func createWebhookConfiguration(t *testing.T, env *kubetest.Env, url string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(tooltest.RepoRoot(), "environments", "deploy", "webhook.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := yaml.UnmarshalStrict(raw, mwc); err != nil {
		t.Fatal(err)
	}
	mwc.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
	if err := env.Client.Create(context.Background(), mwc); err != nil {
		t.Fatal(err)
	}
}

// waitReadyz waits until the controller's /readyz answers 200 (xDS and
// the CA serve, the webhook certificate is loaded).
func waitReadyz(t testing.TB, rc *runningController, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := tryGet("http://" + rc.health + "/readyz?verbose")
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 within %s: %d %s", timeout, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitMesh waits until cond holds for the Mesh weft-system/shop.
func waitMesh(t *testing.T, env *kubetest.Env, what string, cond func(*meshv1.Mesh) bool) *meshv1.Mesh {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m := &meshv1.Mesh{}
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: "weft-system", Name: "shop"}, m)
		if err == nil && cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("Mesh shop: %s: not within 2m (get: %v): Ready %s: %s; proxies %+v", what, err,
				conditions.GetReason(m, meta.ReadyCondition), conditions.GetMessage(m, meta.ReadyCondition), m.Status.Proxies)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkInjected checks that the webhook gave pod the sidecar with the
// mesh CA's trust bundle and the controller's addresses.
func checkInjected(t *testing.T, pod *corev1.Pod, bundle []byte) {
	t.Helper()
	i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == inject.ProxyContainerName })
	if i < 0 {
		t.Fatalf("pod %s was not injected: init containers %d", pod.Name, len(pod.Spec.InitContainers))
	}
	proxy := pod.Spec.InitContainers[i]
	for _, want := range []string{"--ca-address=weft-controller.weft-system.svc:15012", "--xds-address=weft-controller.weft-system.svc:15010", "--trust-domain=shop.example"} {
		if !slices.Contains(proxy.Args, want) {
			t.Errorf("injected proxy args %q lack %s", proxy.Args, want)
		}
	}
	j := slices.IndexFunc(proxy.Env, func(e corev1.EnvVar) bool { return e.Name == agent.EnvTrustBundle })
	if j < 0 || proxy.Env[j].Value != string(bundle) {
		t.Errorf("injected proxy's %s is not the mesh CA's root of Secret weft-ca-root", agent.EnvTrustBundle)
	}
}

// endpointIPs are the addresses of the load assignment name that c holds,
// sorted.
func endpointIPs(t *testing.T, c *kubetesting.XDSClient, name string) []string {
	a := c.Resource(resource.EndpointType, name)
	if a == nil {
		return nil
	}
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := a.UnmarshalTo(cla); err != nil {
		t.Errorf("load assignment %s: %v", name, err)
		return nil
	}
	var ips []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			ips = append(ips, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	slices.Sort(ips)
	return ips
}

// workloadLabels are the labels of a pod of service svc, version v.
func workloadLabels(svc, v string) map[string]string {
	return map[string]string{"mesh.weft.dev/service": svc, "version": v}
}

// tryGet is GET url's status and body (0 and the error when it fails).
func tryGet(url string) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// grepLines are the lines of s that contain one of subs.
func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// waitProxiesReport waits until the controller of pod, under its Role,
// reports n connected proxies in its ConfigMap (no such pod here: the
// report has no owner).
func waitProxiesReport(t *testing.T, env *kubetest.Env, pod string, n int) {
	t.Helper()
	key := client.ObjectKey{Namespace: "weft-system", Name: controller.ProxiesReportName(pod)}
	deadline := time.Now().Add(time.Minute)
	for {
		cm := &corev1.ConfigMap{}
		err := env.Client.Get(context.Background(), key, cm)
		var ps []struct {
			NodeID    string `json:"nodeID"`
			Connected bool   `json:"connected"`
		}
		if err == nil {
			err = yaml.Unmarshal([]byte(cm.Data[controller.ProxiesKey]), &ps)
		}
		if err == nil && len(ps) == n && len(cm.OwnerReferences) == 0 && cm.Labels[controller.ProxiesLabel] == "true" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxies report %s: want %d proxies, no owner: get/parse: %v, report %+v", key, n, err, cm)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
