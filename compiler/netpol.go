package compiler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/weft-dev/weft/schema/mesh"
)

// Labels of the NetworkPolicies weft writes, and of the pods they select.
const (
	// ManagedByLabel marks every object weft writes (value ManagedBy).
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "weft"
	// MeshLabel names the mesh an object belongs to; with ManagedByLabel
	// it selects what the controller prunes (PruneSelector).
	MeshLabel = "mesh.weft.dev/mesh"
	// ServiceLabel on a pod names the mesh service the pod runs; the
	// NetworkPolicies select pods, callers and callees, by it.
	ServiceLabel = "mesh.weft.dev/service"
	// NamespaceNameLabel is the label the API server sets on every
	// namespace to its name.
	NamespaceNameLabel = "kubernetes.io/metadata.name"
)

// Defaults of NetworkPolicyOptions: the control plane as environments/deploy
// installs it.
const (
	DefaultControlPlaneNamespace = "weft-system"
	// DefaultAgentHealthPort is the sidecar agent's health and status port
	// (sidecar/agent's DefaultHealthAddress).
	DefaultAgentHealthPort = 15021
)

// DefaultControlPlaneLabels are the labels of the controller's pods.
func DefaultControlPlaneLabels() map[string]string {
	return map[string]string{"app.kubernetes.io/name": "weft", "app.kubernetes.io/component": "controller"}
}

// NetworkPolicyOptions are the inputs of NetworkPolicies that are not in
// the model.
type NetworkPolicyOptions struct {
	// ControlPlaneNamespace is the namespace of weft's controller
	// (default weft-system).
	ControlPlaneNamespace string
	// ControlPlaneLabels select the controller's pods (default
	// DefaultControlPlaneLabels).
	ControlPlaneLabels map[string]string
	// ControlPlanePorts are the ports of a meshed pod the control plane
	// may reach (default: the agent's health port, 15021).
	ControlPlanePorts []int32
}

func (o NetworkPolicyOptions) withDefaults() NetworkPolicyOptions {
	if o.ControlPlaneNamespace == "" {
		o.ControlPlaneNamespace = DefaultControlPlaneNamespace
	}
	if len(o.ControlPlaneLabels) == 0 {
		o.ControlPlaneLabels = DefaultControlPlaneLabels()
	}
	if len(o.ControlPlanePorts) == 0 {
		o.ControlPlanePorts = []int32{DefaultAgentHealthPort}
	}
	return o
}

// NetworkPolicyName is the name of a service's NetworkPolicy:
// "weft-<service>", in the service's namespace.
func NetworkPolicyName(service string) string { return "weft-" + service }

// PruneSelector is the label selector of every NetworkPolicy weft wrote
// for a mesh, e.g. "app.kubernetes.io/managed-by=weft,mesh.weft.dev/mesh=shop":
// those not in the latest NetworkPolicies are stale.
func PruneSelector(meshName string) string {
	return ManagedByLabel + "=" + ManagedBy + "," + MeshLabel + "=" + meshName
}

// NetworkPolicies is the L3 firewall of a mesh, compiled from the same
// definitions as its L7 authorization: one networking.k8s.io/v1
// NetworkPolicy per service, "weft-<service>" in the service's namespace,
// selecting the service's pods (ServiceLabel=<service>), Ingress only.
// It is pure and deterministic (sorted by namespace and name; peers and
// ports in a fixed order). The controller applies them and prunes what
// PruneSelector finds that is not in the list; `weft build` writes them.
//
// Who may connect, per service port:
//
//   - An edge service's ports are open to every source.
//   - Otherwise the services whose identities the inbound RBAC filter
//     admits on that port (see authz in doc.go): with authz.allow, the
//     services of its rules' from (a rule restricted to methods or paths
//     still admits its callers at L3 on HTTP ports; on TCP ports such a
//     rule never matches and is left out); without it, the services that
//     call this one and those that call a service mirroring to it. A
//     deny rule that applies to every connection (no methods, no paths;
//     on TCP ports every deny rule) removes its services ("*" or no from:
//     all of them). An allow from "*" (or with no from) is any pod of the
//     mesh: one carrying ServiceLabel, in any namespace, minus the denied
//     services (a NotIn expression).
//   - mtls permissive or disable opens nothing more: a plaintext chain
//     admits anyone at L7 because it cannot tell who calls, but at L3 the
//     pod tells, and only those callers get through.
//   - The control plane's pods may reach ControlPlanePorts.
//
// A caller in another namespace is selected by namespaceSelector
// kubernetes.io/metadata.name=<namespace> and podSelector
// ServiceLabel=<caller>.
//
// The ports are the service ports, never the proxy's inbound port 15006.
// A NetworkPolicy is enforced by the CNI on the packet as it reaches the
// pod (host side of the pod's interface), before the pod's own netfilter
// hooks run; the iptables REDIRECT to 15006 happens in the pod's network
// namespace, afterwards. So the port the policy sees is the destination
// the caller's proxy dialled: the endpoint's port, which is the model's
// port (the app listens on it in the pod; the inbound cluster sends to
// 127.0.0.1:<port>). 15006 is never seen, and opening it would only open a
// port nothing legitimate uses. The kubelet's probes need no rule: traffic
// from a pod's own node is always allowed.
func NetworkPolicies(m *mesh.Model, opts NetworkPolicyOptions) ([]*networkingv1.NetworkPolicy, error) {
	if m == nil {
		return nil, fmt.Errorf("compiler: nil model")
	}
	opts = opts.withDefaults()
	svcs := resolve(m)
	var out []*networkingv1.NetworkPolicy
	for _, name := range m.ServiceNames() {
		s := svcs[name]
		if s == nil {
			continue
		}
		np, err := networkPolicy(m, svcs, s, opts)
		if err != nil {
			return nil, fmt.Errorf("compiler: network policy of %s: %w", name, err)
		}
		out = append(out, np)
	}
	slices.SortFunc(out, func(a, b *networkingv1.NetworkPolicy) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

func networkPolicy(m *mesh.Model, svcs map[string]*mesh.Service, s *mesh.Service, opts NetworkPolicyOptions) (*networkingv1.NetworkPolicy, error) {
	np := &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      NetworkPolicyName(s.Name),
			Namespace: s.Namespace,
			Labels:    map[string]string{ManagedByLabel: ManagedBy, MeshLabel: m.Name, ServiceLabel: s.Name},
		},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{ServiceLabel: s.Name}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{},
		},
	}
	rules, err := serviceRules(m, svcs, s)
	if err != nil {
		return nil, err
	}
	np.Spec.Ingress = append(np.Spec.Ingress, rules...)
	np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
		From: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: namespaceSelector(opts.ControlPlaneNamespace),
			PodSelector:       &metav1.LabelSelector{MatchLabels: clone(opts.ControlPlaneLabels)},
		}},
		Ports: tcpPorts(opts.ControlPlanePorts),
	})
	return np, nil
}

// sources are who may connect to one port: everyone, any pod of the mesh
// but the excluded services', or the pods of the named services.
type sources struct {
	everyone bool
	anyMesh  bool
	excluded []string // with anyMesh: sorted, unique
	services []string // sorted, unique
}

func (a sources) equal(b sources) bool {
	return a.everyone == b.everyone && a.anyMesh == b.anyMesh &&
		slices.Equal(a.excluded, b.excluded) && slices.Equal(a.services, b.services)
}

func (a sources) none() bool { return !a.everyone && !a.anyMesh && len(a.services) == 0 }

// serviceRules are the ingress rules of s's ports: one rule per distinct
// set of sources, holding the ports (in port order) that share it. A port
// nobody may reach gets no rule.
func serviceRules(m *mesh.Model, svcs map[string]*mesh.Service, s *mesh.Service) ([]networkingv1.NetworkPolicyIngressRule, error) {
	type group struct {
		src   sources
		ports []int32
	}
	var groups []*group
	for _, p := range s.PortList() {
		src, err := portSources(m, svcs, s, isHTTP(p))
		if err != nil {
			return nil, fmt.Errorf("port %s: %w", p.Name, err)
		}
		if src.none() {
			continue
		}
		i := slices.IndexFunc(groups, func(g *group) bool { return g.src.equal(src) })
		if i < 0 {
			groups = append(groups, &group{src: src})
			i = len(groups) - 1
		}
		groups[i].ports = append(groups[i].ports, int32(p.Port))
	}
	var rules []networkingv1.NetworkPolicyIngressRule
	for _, g := range groups {
		rules = append(rules, networkingv1.NetworkPolicyIngressRule{From: peers(svcs, s, g.src), Ports: tcpPorts(g.ports)})
	}
	return rules, nil
}

// portSources mirrors rbacRules (authz.go) at the granularity of a pod:
// who may open a connection to one port of s (an HTTP/gRPC one when http).
func portSources(m *mesh.Model, svcs map[string]*mesh.Service, s *mesh.Service, http bool) (sources, error) {
	if s.Edge {
		return sources{everyone: true}, nil
	}
	var src sources
	allowed := map[string]bool{}
	az := s.Authz
	if az != nil && (az.AllowSet || len(az.Allow) > 0) {
		for _, r := range az.Allow {
			if !http && (len(r.Methods) > 0 || hasPathCondition(r.Paths)) {
				continue // never matches a connection
			}
			if len(r.From) == 0 {
				src.anyMesh = true // any principal; at L3, any pod of the mesh
			}
			for _, from := range r.From {
				if from == "*" {
					src.anyMesh = true
					continue
				}
				if svcs[from] == nil {
					return sources{}, fmt.Errorf("authz.allow: from: unknown service %q", from)
				}
				allowed[from] = true
			}
		}
	} else {
		for _, name := range callersOf(m, svcs, s) {
			allowed[name] = true
		}
	}
	denied := map[string]bool{}
	if az != nil {
		for _, r := range az.Deny {
			if http && (len(r.Methods) > 0 || hasPathCondition(r.Paths)) {
				continue // denies some requests only: the caller still connects
			}
			if len(r.From) == 0 || slices.Contains(r.From, "*") {
				return sources{}, nil // every mesh identity is refused
			}
			for _, from := range r.From {
				if svcs[from] == nil {
					return sources{}, fmt.Errorf("authz.deny: from: unknown service %q", from)
				}
				denied[from] = true
			}
		}
	}
	if src.anyMesh {
		src.excluded = mesh.SortedKeys(denied)
		return src, nil
	}
	for name := range denied {
		delete(allowed, name)
	}
	src.services = mesh.SortedKeys(allowed)
	return src, nil
}

// callersOf are the services admitted by default: those that list s in
// their calls and those that call a service whose routes mirror to s (a
// mirrored request leaves the caller's proxy). The same set as
// classBuilder.defaultCallers.
func callersOf(m *mesh.Model, svcs map[string]*mesh.Service, s *mesh.Service) []string {
	set := map[string]bool{}
	for _, name := range m.Callers(s) {
		set[name] = true
	}
	for _, name := range mesh.SortedKeys(svcs) {
		for _, dep := range svcs[name].Calls {
			d := svcs[dep]
			if d == nil {
				continue
			}
			for _, r := range d.Routes {
				if r.Mirror != nil && r.Mirror.To == s.Name {
					set[name] = true
				}
			}
		}
	}
	return mesh.SortedKeys(set)
}

// peers turns sources into NetworkPolicy peers; everyone is no peer at all
// (a rule without from admits every source).
func peers(svcs map[string]*mesh.Service, s *mesh.Service, src sources) []networkingv1.NetworkPolicyPeer {
	switch {
	case src.everyone:
		return nil
	case src.anyMesh:
		sel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: ServiceLabel, Operator: metav1.LabelSelectorOpExists,
		}}}
		if len(src.excluded) > 0 {
			sel.MatchExpressions = append(sel.MatchExpressions, metav1.LabelSelectorRequirement{
				Key: ServiceLabel, Operator: metav1.LabelSelectorOpNotIn, Values: src.excluded,
			})
		}
		return []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: sel}}
	}
	out := make([]networkingv1.NetworkPolicyPeer, 0, len(src.services))
	for _, name := range src.services {
		c := svcs[name]
		p := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{ServiceLabel: name}}}
		if c.Namespace != s.Namespace {
			p.NamespaceSelector = namespaceSelector(c.Namespace)
		}
		out = append(out, p)
	}
	return out
}

func namespaceSelector(ns string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{NamespaceNameLabel: ns}}
}

func tcpPorts(ports []int32) []networkingv1.NetworkPolicyPort {
	out := make([]networkingv1.NetworkPolicyPort, 0, len(ports))
	for _, p := range ports {
		port := intstr.FromInt32(p)
		out = append(out, networkingv1.NetworkPolicyPort{Protocol: ptrTo(corev1.ProtocolTCP), Port: &port})
	}
	return out
}

func ptrTo[T any](v T) *T { return &v }

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// NetworkPoliciesFile is the name of the NetworkPolicies in `weft build`'s
// output.
const NetworkPoliciesFile = "networkpolicies.yaml"

// NetworkPoliciesYAML writes the policies as one multi-document YAML
// stream (kubectl apply -f), in the given order. The same policies give
// the same bytes (sigs.k8s.io/yaml sorts keys).
func NetworkPoliciesYAML(nps []*networkingv1.NetworkPolicy) ([]byte, error) {
	var b bytes.Buffer
	for _, np := range nps {
		y, err := networkPolicyYAML(np)
		if err != nil {
			return nil, fmt.Errorf("network policy %s/%s: %w", np.Namespace, np.Name, err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes(), nil
}

// networkPolicyYAML is sigs.k8s.io/yaml.Marshal(np), written directly
// from the JSON when the direct writer can promise the same bytes (every
// policy weft makes): the JSON to YAML round trip allocated ~175 KB per
// policy, 16% of weft build's allocations at 1,000 services.
func networkPolicyYAML(np *networkingv1.NetworkPolicy) ([]byte, error) {
	j, err := json.Marshal(np)
	if err != nil {
		return nil, err
	}
	if y, err := jsonAsYAML(j); err == nil {
		return y, nil
	}
	return yaml.JSONToYAML(j)
}
