package workload

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/schema/mesh"
)

func TestParseNodeID(t *testing.T) {
	for _, tc := range []struct{ id, name, ns, err string }{
		{id: "orders-7d9f-x2x.shop", name: "orders-7d9f-x2x", ns: "shop"},
		{id: "web.v2.shop", name: "web.v2", ns: "shop"}, // pod names may hold dots
		{id: "orders", err: `node id "orders" is not <pod>.<namespace>`},
		{id: "orders.", err: "is not <pod>.<namespace>"},
		{id: ".shop", err: "is not <pod>.<namespace>"},
		{id: "orders.Shop", err: `namespace "Shop"`},
		{id: "Orders.shop", err: `pod name "Orders"`},
	} {
		name, ns, err := ParseNodeID(tc.id)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseNodeID(%q): %v, want an error containing %q", tc.id, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name || ns != tc.ns || NodeID(name, ns) != tc.id {
			t.Errorf("ParseNodeID(%q) = %q, %q, %v; want %q, %q", tc.id, name, ns, err, tc.name, tc.ns)
		}
	}
}

func shop() *mesh.Model {
	return &mesh.Model{Name: "shop", TrustDomain: "shop.example", Services: map[string]*mesh.Service{
		"orders": {Name: "orders", Namespace: "shop", ServiceAccount: "orders", Versions: map[string]*mesh.Version{
			"v1": {Labels: map[string]string{"version": "v1"}},
			"v2": {Labels: map[string]string{"version": "v2"}},
		}},
		"overlap": {Name: "overlap", Namespace: "shop", ServiceAccount: "overlap", Versions: map[string]*mesh.Version{
			"stable": {Labels: map[string]string{"app": "overlap"}},
			"canary": {Labels: map[string]string{"app": "overlap", "track": "canary"}},
		}},
	}}
}

func pod(ns, name, sa string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Spec: corev1.PodSpec{ServiceAccountName: sa}}
}

func TestOf(t *testing.T) {
	m := shop()
	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		class string
		err   string
	}{
		{"a v2 pod", pod("shop", "orders-1", "orders", map[string]string{"mesh.weft.dev/service": "orders", "version": "v2", "pod-template-hash": "x"}), "orders-v2", ""},
		{"no service label", pod("shop", "orders-1", "orders", map[string]string{"version": "v1"}), "", "has no label mesh.weft.dev/service"},
		{"an unknown service", pod("shop", "x-1", "orders", map[string]string{"mesh.weft.dev/service": "x"}), "", `mesh shop has no service "x"`},
		{"another namespace", pod("other", "orders-1", "orders", map[string]string{"mesh.weft.dev/service": "orders", "version": "v1"}), "", "service orders is in namespace shop"},
		{"another service account", pod("shop", "orders-1", "payments", map[string]string{"mesh.weft.dev/service": "orders", "version": "v1"}), "", "runs as service account payments; service orders runs as orders"},
		{"the default service account", pod("shop", "orders-1", "", map[string]string{"mesh.weft.dev/service": "orders", "version": "v1"}), "", "runs as service account default"},
		{"no version", pod("shop", "orders-1", "orders", map[string]string{"mesh.weft.dev/service": "orders", "version": "v3"}), "", "match no version of service orders (v1: version=v1; v2: version=v2)"},
		{"two versions", pod("shop", "overlap-1", "overlap", map[string]string{"mesh.weft.dev/service": "overlap", "app": "overlap", "track": "canary"}), "", "match versions canary and stable of service overlap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, class, err := Of(m, tc.pod)
			if tc.err != "" {
				if !errors.Is(err, ErrNotInMesh) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Of: %v, want ErrNotInMesh containing %q", err, tc.err)
				}
				return
			}
			if err != nil || class != tc.class {
				t.Fatalf("Of = %q, %v; want %q", class, err, tc.class)
			}
		})
	}
	if id := Identity("shop.example", pod("shop", "o", "", nil)); id != (cav1.Identity{TrustDomain: "shop.example", Namespace: "shop", ServiceAccount: "default"}) {
		t.Errorf("identity %v", id)
	}
}
