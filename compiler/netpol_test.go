package compiler

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// netpolCases are small meshes for the NetworkPolicy goldens
// (testdata/netpol/<name>.yaml).
func netpolCases() []testCase {
	return []testCase{
		{"calls", model(
			calls(svc("frontend", 8080), "reviews", "ratings"),
			calls(svc("reviews", 9080, "v1", "v2"), "ratings"),
			svc("ratings", 9090),
			svc("lonely", 7070),
		)},
		{"cross-namespace", func() (*mesh.Model, Endpoints) {
			pay := svc("payments", 9090)
			pay.Namespace = "payments"
			pay.Ports = map[string]mesh.Port{"grpc": {Name: "grpc", Port: 9090, Protocol: mesh.GRPC}}
			return newModel(calls(svc("orders", 8083), "payments"), pay), nil
		}},
		{"edge", func() (*mesh.Model, Endpoints) {
			fe := calls(withPorts(svc("frontend", 8080),
				mesh.Port{Name: "http", Port: 8080, Protocol: mesh.HTTP},
				mesh.Port{Name: "https", Port: 8443, Protocol: mesh.TCP}), "catalog")
			fe.Edge = true
			return newModel(fe, svc("catalog", 8081)), nil
		}},
		{"authz-ports", func() (*mesh.Model, Endpoints) {
			// HTTP and TCP ports of one service: a method-restricted allow
			// admits its callers on the HTTP port only; a deny of some
			// methods removes nobody from HTTP, and its caller from TCP.
			cart := withPorts(svc("cart", 8082),
				mesh.Port{Name: "http", Port: 8082, Protocol: mesh.HTTP},
				mesh.Port{Name: "redis", Port: 6379, Protocol: mesh.TCP})
			cart.Authz = &mesh.Authz{AllowSet: true,
				Allow: []mesh.AuthzRule{
					{From: []string{"frontend"}, Methods: []string{"GET"}},
					{From: []string{"orders", "audit"}},
				},
				Deny: []mesh.AuthzRule{{From: []string{"audit"}, Methods: []string{"DELETE"}}},
			}
			return newModel(calls(svc("frontend", 8080), "cart"), calls(svc("orders", 8083), "cart"),
				calls(svc("audit", 8090), "cart"), cart), nil
		}},
		{"authz-any-but", func() (*mesh.Model, Endpoints) {
			health := svc("health", 8088)
			health.Authz = &mesh.Authz{AllowSet: true,
				Allow: []mesh.AuthzRule{{From: []string{"*"}, Paths: []string{"/healthz"}}},
				Deny:  []mesh.AuthzRule{{From: []string{"batch"}}},
			}
			return newModel(health, svc("batch", 8089), svc("web", 8080)), nil
		}},
		{"authz-deny-all", func() (*mesh.Model, Endpoints) {
			vault := svc("vault", 8200)
			vault.Authz = &mesh.Authz{Deny: []mesh.AuthzRule{{From: []string{"*"}}}}
			return newModel(calls(svc("app", 8080), "vault"), vault), nil
		}},
		{"mirror", func() (*mesh.Model, Endpoints) {
			// frontend's requests to orders are mirrored to orders-shadow
			// by frontend's proxy: frontend must reach orders-shadow.
			orders := svc("orders", 8083)
			orders.Routes = []mesh.Route{{Name: "create", Match: prefix("/orders"), Mirror: &mesh.Mirror{To: "orders-shadow", Percent: 10}}}
			return newModel(calls(svc("frontend", 8080), "orders"), orders, svc("orders-shadow", 8085, "v2")), nil
		}},
		{"mtls-disable", func() (*mesh.Model, Endpoints) {
			legacy := svc("legacy", 8080)
			legacy.MTLS = mesh.MTLSDisable
			return newModel(calls(svc("app", 8081), "legacy"), legacy), nil
		}},
	}
}

// TestNetworkPoliciesGolden compares the policies of each case, and of the
// example shop mesh in prod, with testdata/netpol/ (-update rewrites).
func TestNetworkPoliciesGolden(t *testing.T) {
	type namedModel struct {
		name string
		m    *mesh.Model
	}
	var all []namedModel
	for _, tc := range netpolCases() {
		m, _ := tc.build()
		all = append(all, namedModel{tc.name, m})
	}
	all = append(all, namedModel{"shop-prod", loadShop(t, "prod")})

	dir := filepath.Join("testdata", "netpol")
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, nm := range all {
		t.Run(nm.name, func(t *testing.T) {
			nps, err := NetworkPolicies(nm.m, NetworkPolicyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := NetworkPoliciesYAML(nps)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, nm.name+".yaml")
			if *update {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test ./compiler -run TestNetworkPoliciesGolden -update)", err)
			}
			if d := cmp.Diff(string(want), string(got)); d != "" {
				t.Errorf("%s differs (-want +got; -update to accept):\n%s", file, d)
			}
		})
	}
}

func loadShop(t *testing.T, env string) *mesh.Model {
	t.Helper()
	m, err := schema.Load(filepath.Join(tooltest.RepoRoot(), "environments"), schema.Options{Env: env, Revision: testRevision})
	if err != nil {
		t.Fatalf("loading the example mesh (%s): %v", env, err)
	}
	return m
}

// What a reader of the shop's policies must find: who reaches payments
// (another namespace), that the frontend is open, that nobody but the
// control plane reaches a service nobody calls, and no port 15006.
func TestNetworkPoliciesShop(t *testing.T) {
	m := loadShop(t, "prod")
	nps, err := NetworkPolicies(m, NetworkPolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*networkingv1.NetworkPolicy{}
	for _, np := range nps {
		byName[np.Namespace+"/"+np.Name] = np
		if np.Labels[ManagedByLabel] != "weft" || np.Labels[MeshLabel] != "shop" {
			t.Errorf("%s/%s labels %v: want managed-by weft and mesh shop (pruning selects them)", np.Namespace, np.Name, np.Labels)
		}
		for _, r := range np.Spec.Ingress {
			for _, p := range r.Ports {
				if p.Port.IntValue() == DefaultInboundPort {
					t.Errorf("%s/%s opens the proxy's inbound port %d, which no NetworkPolicy ever sees", np.Namespace, np.Name, DefaultInboundPort)
				}
			}
		}
	}
	if len(nps) != len(m.Services) {
		t.Errorf("%d policies for %d services", len(nps), len(m.Services))
	}

	// payments lets any mesh identity call its health check (authz.allow
	// from "*"), so any meshed pod, in any namespace, may connect.
	pay := byName["payments/weft-payments"]
	if pay == nil {
		t.Fatalf("no payments/weft-payments in %v", keysOf(byName))
	}
	if got := peerStrings(pay.Spec.Ingress[0]); !cmp.Equal(got, []string{"ns=*,mesh.weft.dev/service Exists "}) || portsOf(pay.Spec.Ingress[0]) != "9090" {
		t.Errorf("payments admits %v on %s, want any meshed pod on 9090", got, portsOf(pay.Spec.Ingress[0]))
	}
	// orders' only allowed caller is frontend (its authz.allow).
	if got := peerStrings(byName["shop/weft-orders"].Spec.Ingress[0]); !cmp.Equal(got, []string{"svc=frontend"}) {
		t.Errorf("orders admits %v, want frontend", got)
	}

	fe := byName["shop/weft-frontend"]
	if r := fe.Spec.Ingress[0]; len(r.From) != 0 || portsOf(r) != "8080" {
		t.Errorf("frontend (edge) rule %+v: want every source on 8080", r)
	}

	// orders-shadow: nobody calls it, but orders mirrors frontend's
	// requests to it and its authz allows frontend.
	sh := byName["shop/weft-orders-shadow"]
	if got := peerStrings(sh.Spec.Ingress[0]); !cmp.Equal(got, []string{"svc=frontend"}) {
		t.Errorf("orders-shadow admits %v, want frontend (mirror source)", got)
	}
	// The last rule of every policy is the control plane's.
	for _, np := range nps {
		last := np.Spec.Ingress[len(np.Spec.Ingress)-1]
		if got := peerStrings(last); !cmp.Equal(got, []string{"ns=weft-system,app.kubernetes.io/component=controller,app.kubernetes.io/name=weft"}) || portsOf(last) != "15021" {
			t.Errorf("%s: last rule %v on %s, want the control plane on 15021", np.Name, got, portsOf(last))
		}
	}
}

// A caller in another namespace is selected by namespace and service.
func TestNetworkPoliciesCrossNamespace(t *testing.T) {
	m := newModel(calls(svc("orders", 8083), "payments"), func() *mesh.Service {
		p := svc("payments", 9090)
		p.Namespace = "payments"
		return p
	}())
	nps, err := NetworkPolicies(m, NetworkPolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nps[0].Namespace != "payments" || nps[0].Name != "weft-payments" {
		t.Fatalf("first policy %s/%s, want payments/weft-payments (sorted by namespace)", nps[0].Namespace, nps[0].Name)
	}
	if got := peerStrings(nps[0].Spec.Ingress[0]); !cmp.Equal(got, []string{"ns=shop,svc=orders"}) || portsOf(nps[0].Spec.Ingress[0]) != "9090" {
		t.Errorf("payments admits %v on %s, want orders of namespace shop on 9090", got, portsOf(nps[0].Spec.Ingress[0]))
	}
}

// The same mesh with its maps filled in another order gives the same bytes.
func TestNetworkPoliciesDeterministic(t *testing.T) {
	m := loadShop(t, "dev")
	want := mustNetpolYAML(t, m)
	r := rand.New(rand.NewSource(7))
	for i := range 20 {
		if got := mustNetpolYAML(t, shuffled(m, r)); string(got) != string(want) {
			t.Fatalf("shuffle %d changed the output:\n%s", i, cmp.Diff(string(want), string(got)))
		}
	}
}

// Every policy is valid for the API server: the validation of
// networking/v1 NetworkPolicy in k8s.io/kubernetes is not importable, so
// this checks what it checks that weft could get wrong: DNS names, label
// keys and values, selector operators, port ranges.
func TestNetworkPoliciesAreValidObjects(t *testing.T) {
	for _, tc := range append(netpolCases(), testCase{"shop-prod", func() (*mesh.Model, Endpoints) { return loadShop(t, "prod"), nil }}) {
		m, _ := tc.build()
		nps, err := NetworkPolicies(m, NetworkPolicyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, np := range nps {
			if errs := validateNetworkPolicy(np); len(errs) > 0 {
				t.Errorf("%s: %s/%s: %v", tc.name, np.Namespace, np.Name, errs.ToAggregate())
			}
			// Round trip through YAML: what kubectl reads back is the object.
			y, err := yaml.Marshal(np)
			if err != nil {
				t.Fatal(err)
			}
			var back networkingv1.NetworkPolicy
			if err := yaml.UnmarshalStrict(y, &back); err != nil {
				t.Errorf("%s: %s does not read back strictly: %v", tc.name, np.Name, err)
			}
			if !cmp.Equal(&back, np) {
				t.Errorf("%s: %s changes through YAML:\n%s", tc.name, np.Name, cmp.Diff(np, &back))
			}
		}
	}
}

func TestNetworkPolicyOptions(t *testing.T) {
	m := newModel(calls(svc("a", 8080), "b"), svc("b", 8081))
	nps, err := NetworkPolicies(m, NetworkPolicyOptions{
		ControlPlaneNamespace: "mesh-system",
		ControlPlaneLabels:    map[string]string{"app": "weft"},
		ControlPlanePorts:     []int32{15021, 15090},
	})
	if err != nil {
		t.Fatal(err)
	}
	last := nps[1].Spec.Ingress[len(nps[1].Spec.Ingress)-1]
	if got := peerStrings(last); !cmp.Equal(got, []string{"ns=mesh-system,app=weft"}) || portsOf(last) != "15021,15090" {
		t.Errorf("control plane rule %v on %s", got, portsOf(last))
	}
	if got := PruneSelector("shop"); got != "app.kubernetes.io/managed-by=weft,mesh.weft.dev/mesh=shop" {
		t.Errorf("PruneSelector = %q", got)
	}
}

func TestNetworkPoliciesUnknownService(t *testing.T) {
	b := svc("b", 8081)
	b.Authz = &mesh.Authz{Allow: []mesh.AuthzRule{{From: []string{"ghost"}}}}
	_, err := NetworkPolicies(newModel(svc("a", 8080), b), NetworkPolicyOptions{})
	if err == nil || !strings.Contains(err.Error(), `network policy of b: port http: authz.allow: from: unknown service "ghost"`) {
		t.Errorf("err = %v, want the service, port and unknown name", err)
	}
}

func mustNetpolYAML(t *testing.T, m *mesh.Model) []byte {
	t.Helper()
	nps, err := NetworkPolicies(m, NetworkPolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	y, err := NetworkPoliciesYAML(nps)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// peerStrings renders a rule's peers as "ns=<ns>,<k>=<v>..." ("svc=" for
// ServiceLabel), in order.
func peerStrings(r networkingv1.NetworkPolicyIngressRule) []string {
	var out []string
	for _, p := range r.From {
		var parts []string
		if p.NamespaceSelector != nil {
			if ns, ok := p.NamespaceSelector.MatchLabels[NamespaceNameLabel]; ok {
				parts = append(parts, "ns="+ns)
			} else {
				parts = append(parts, "ns=*")
			}
		}
		if p.PodSelector != nil {
			for _, k := range mesh.SortedKeys(p.PodSelector.MatchLabels) {
				if k == ServiceLabel {
					parts = append(parts, "svc="+p.PodSelector.MatchLabels[k])
				} else {
					parts = append(parts, k+"="+p.PodSelector.MatchLabels[k])
				}
			}
			for _, e := range p.PodSelector.MatchExpressions {
				parts = append(parts, e.Key+" "+string(e.Operator)+" "+strings.Join(e.Values, "|"))
			}
		}
		out = append(out, strings.Join(parts, ","))
	}
	return out
}

func portsOf(r networkingv1.NetworkPolicyIngressRule) string {
	var ps []string
	for _, p := range r.Ports {
		ps = append(ps, p.Port.String())
	}
	return strings.Join(ps, ",")
}

func keysOf[V any](m map[string]V) []string { return mesh.SortedKeys(m) }

// validateNetworkPolicy checks what the API server's validation of a
// networking/v1 NetworkPolicy checks about names, labels, selectors and
// ports (k8s.io/kubernetes/pkg/apis/networking/validation is not an
// importable module; these are the apimachinery functions it calls).
func validateNetworkPolicy(np *networkingv1.NetworkPolicy) field.ErrorList {
	var errs field.ErrorList
	md := field.NewPath("metadata")
	for _, msg := range validation.IsDNS1123Subdomain(np.Name) {
		errs = append(errs, field.Invalid(md.Child("name"), np.Name, msg))
	}
	for _, msg := range validation.IsDNS1123Label(np.Namespace) {
		errs = append(errs, field.Invalid(md.Child("namespace"), np.Namespace, msg))
	}
	errs = append(errs, metav1validation.ValidateLabels(np.Labels, md.Child("labels"))...)
	opts := metav1validation.LabelSelectorValidationOptions{}
	spec := field.NewPath("spec")
	errs = append(errs, metav1validation.ValidateLabelSelector(&np.Spec.PodSelector, opts, spec.Child("podSelector"))...)
	for i, r := range np.Spec.Ingress {
		rp := spec.Child("ingress").Index(i)
		for j, p := range r.From {
			pp := rp.Child("from").Index(j)
			if p.PodSelector == nil && p.NamespaceSelector == nil && p.IPBlock == nil {
				errs = append(errs, field.Required(pp, "must specify a peer"))
			}
			if p.PodSelector != nil {
				errs = append(errs, metav1validation.ValidateLabelSelector(p.PodSelector, opts, pp.Child("podSelector"))...)
			}
			if p.NamespaceSelector != nil {
				errs = append(errs, metav1validation.ValidateLabelSelector(p.NamespaceSelector, opts, pp.Child("namespaceSelector"))...)
			}
		}
		for j, p := range r.Ports {
			pp := rp.Child("ports").Index(j)
			if p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP {
				errs = append(errs, field.NotSupported(pp.Child("protocol"), p.Protocol, []string{"TCP"}))
			}
			if p.Port == nil || p.Port.Type != intstr.Int {
				errs = append(errs, field.Required(pp.Child("port"), "a port number"))
				continue
			}
			for _, msg := range validation.IsValidPortNum(p.Port.IntValue()) {
				errs = append(errs, field.Invalid(pp.Child("port"), p.Port.IntValue(), msg))
			}
		}
		if len(r.Ports) == 0 {
			errs = append(errs, field.Required(rp.Child("ports"), "weft always names the ports"))
		}
	}
	if len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
		errs = append(errs, field.NotSupported(spec.Child("policyTypes"), np.Spec.PolicyTypes, []string{"Ingress"}))
	}
	return errs
}

// TestNetworkPolicyYAMLDirect: every policy of the golden cases is written
// by the direct writer (it never falls back) with exactly the bytes of
// sigs.k8s.io/yaml.Marshal; and the writer's fallbacks give errSlow.
func TestNetworkPolicyYAMLDirect(t *testing.T) {
	models := []*mesh.Model{loadShop(t, "prod")}
	for _, tc := range netpolCases() {
		m, _ := tc.build()
		models = append(models, m)
	}
	n := 0
	for _, m := range models {
		nps, err := NetworkPolicies(m, NetworkPolicyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, np := range nps {
			want, err := yaml.Marshal(np)
			if err != nil {
				t.Fatal(err)
			}
			j, err := json.Marshal(np)
			if err != nil {
				t.Fatal(err)
			}
			got, err := jsonAsYAML(j)
			if err != nil {
				t.Fatalf("%s/%s: the direct writer gave up: %v", np.Namespace, np.Name, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s/%s differs from sigs.k8s.io/yaml:\n%s", np.Namespace, np.Name, lineDiff(string(want), string(got)))
			}
			n++
		}
	}
	if n < 10 {
		t.Fatalf("only %d policies compared", n)
	}
	for _, j := range []string{`{"a":1.5}`, `{"a":[[1]]}`, `[1]`, `{}`, `{"a":"line\nbreak"}`} {
		if _, err := jsonAsYAML([]byte(j)); !errors.Is(err, errSlow) {
			t.Errorf("%s: err = %v, want errSlow", j, err)
		}
	}
}
