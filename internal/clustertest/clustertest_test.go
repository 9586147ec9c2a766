package clustertest_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weft-dev/weft/internal/clustertest"
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
