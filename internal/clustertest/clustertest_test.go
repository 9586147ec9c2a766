package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-dev/weft/internal/clustertest"
	"github.com/weft-dev/weft/internal/images"
	"github.com/weft-dev/weft/internal/tooltest"
)

// cluster is shared by the tests of this package; TestTeardownAfterKill
// starts its own.
var cluster clustertest.Shared

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }

// TestDNS asks the cluster DNS (on the node address, over TCP through
// the netns proxy) what a pod's resolver asks: a Service's name gives its
// ClusterIP, a headless Service's its ready endpoints, and a name that
// does not exist NXDOMAIN.
func TestDNS(t *testing.T) {
	c := cluster.Get(t)
	ctx := context.Background()
	ns := "dns"
	if _, err := c.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	port := []corev1.ServicePort{{Name: "http", Port: 80}}
	svc, err := c.Clientset.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "orders"}, Spec: corev1.ServiceSpec{Ports: port},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Clientset.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: port},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready, notReady := true, false
	if _, err := c.Clientset.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "db-1", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.0.99"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			{Addresses: []string{"10.244.0.98"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			{Addresses: []string{"10.244.0.97"}, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		// A stream connection: Go's resolver then speaks DNS over TCP.
		return c.DialContext(ctx, "tcp", net.JoinHostPort(clustertest.NodeIP, "53"))
	}}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"orders.dns.svc.cluster.local.", []string{svc.Spec.ClusterIP}},
		{"ORDERS.dns.svc.cluster.local.", []string{svc.Spec.ClusterIP}},
		{"db.dns.svc.cluster.local.", []string{"10.244.0.98", "10.244.0.99"}},
		{"kubernetes.default.svc.cluster.local.", []string{clustertest.APIServiceIP}},
	} {
		got, err := r.LookupHost(ctx, tc.name)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	for _, name := range []string{"payments.dns.svc.cluster.local.", "orders.nowhere.svc.cluster.local.", "example.com."} {
		_, err := r.LookupHost(ctx, name)
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			t.Errorf("%s: %v, want not found", name, err)
		}
	}
}

// TestHostKubeconfig: a process outside the netns (kubectl here) reaches
// the apiserver through the 127.0.0.1 forward.
func TestHostKubeconfig(t *testing.T) {
	c := cluster.Get(t)
	kc := c.HostKubeconfig(t)
	out, err := exec.Command(filepath.Join(tooltest.BinDir(), "kubectl"), "--kubeconfig", kc, "get", "node", clustertest.NodeName, "-o", "name").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "node/"+clustertest.NodeName {
		t.Errorf("kubectl on the host: %v: %s", err, out)
	}
	if !strings.Contains(mustRead(t, kc), "server: https://127.0.0.1:") {
		t.Errorf("host kubeconfig:\n%s", mustRead(t, kc))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := c.Kubectl(ctx, nil, "auth", "can-i", "create", "pods"); err != nil || strings.TrimSpace(string(out)) != "yes" {
		t.Errorf("kubectl in the netns as admin: %v: %s", err, out)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestListen: a server of the test process, put inside the netns with
// Listen and behind a selector-less Service, answers a pod that calls the
// Service by name, and a connection to its ClusterIP from the netns.
func TestListen(t *testing.T) {
	c := cluster.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ln, addr := c.Listen(t, clustertest.NodeIP+":0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "from the test, path %s\n", r.URL.Path)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	if port == 0 {
		t.Fatalf("Listen returned %q", addr)
	}

	ns := "listen"
	cs := c.Clientset
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "tester"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(int32(port))}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ready := true
	if _, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "tester-1", Labels: map[string]string{discoveryv1.LabelServiceName: "tester"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{clustertest.NodeIP}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(port))}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// From the netns to the ClusterIP (kube-proxy's rules, once synced).
	var body string
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := c.HTTPClient().Get("http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/cluster-ip")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET the ClusterIP: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if body != "from the test, path /cluster-ip\n" {
		t.Errorf("through the ClusterIP: %q", body)
	}

	// From a pod, by the Service's name.
	out, err := c.Kubectl(ctx, nil, "-n", ns, "run", "caller", "--image="+images.Ref(images.TestAppName, images.DefaultTag),
		"--image-pull-policy=Never", "--restart=Never", "--command", "--", "wget", "-q", "-O", "-", "http://tester/from-a-pod")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, nil, "-n", ns, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/caller", "--timeout=90s"); err != nil {
		t.Fatal(err)
	}
	out, err = c.Kubectl(ctx, nil, "-n", ns, "logs", "caller")
	if err != nil || string(out) != "from the test, path /from-a-pod\n" {
		t.Errorf("a pod calling http://tester: %v: %q", err, out)
	}
}

func ptr[T any](v T) *T { return &v }
