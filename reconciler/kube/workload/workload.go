package workload

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/weft-dev/weft/compiler"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/schema/mesh"
)

// NodeID is the xDS node id of the sidecar of pod name in namespace:
// "<name>.<namespace>".
func NodeID(name, namespace string) string { return name + "." + namespace }

// ParseNodeID splits a node id made by NodeID. Errors: no dot, a
// namespace that is not a DNS label or a pod name that is not a DNS
// subdomain.
func ParseNodeID(id string) (name, namespace string, err error) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 || i == len(id)-1 {
		return "", "", fmt.Errorf("node id %q is not <pod>.<namespace>", id)
	}
	name, namespace = id[:i], id[i+1:]
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return "", "", fmt.Errorf("node id %q is not <pod>.<namespace>: namespace %q: %s", id, namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", "", fmt.Errorf("node id %q is not <pod>.<namespace>: pod name %q: %s", id, name, strings.Join(errs, "; "))
	}
	return name, namespace, nil
}

// ServiceAccount is the service account a pod runs as ("default" when
// the spec names none, as the apiserver defaults it).
func ServiceAccount(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName == "" {
		return "default"
	}
	return pod.Spec.ServiceAccountName
}

// Identity is the SPIFFE identity of a pod in trust domain td.
func Identity(td string, pod *corev1.Pod) cav1.Identity {
	return cav1.Identity{TrustDomain: td, Namespace: pod.Namespace, ServiceAccount: ServiceAccount(pod)}
}

// Version is the version of svc whose labels are all among labels. It
// fails when none or several match, naming the versions and their
// labels.
func Version(svc *mesh.Service, labels map[string]string) (string, error) {
	var match []string
	for _, v := range svc.VersionNames() {
		if selects(svc.Versions[v].Labels, labels) {
			match = append(match, v)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return "", fmt.Errorf("its labels match no version of service %s (%s)", svc.Name, versionLabels(svc))
	}
	return "", fmt.Errorf("its labels match versions %s of service %s (%s): the version labels must tell them apart",
		strings.Join(match, " and "), svc.Name, versionLabels(svc))
}

// selects: every label of sel is in labels (a version without labels
// selects every pod, as an empty Kubernetes label selector does).
func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// versionLabels is "v1: version=v1; v2: version=v2".
func versionLabels(svc *mesh.Service) string {
	var parts []string
	for _, v := range svc.VersionNames() {
		var kv []string
		for k, val := range svc.Versions[v].Labels {
			kv = append(kv, k+"="+val)
		}
		sort.Strings(kv)
		parts = append(parts, v+": "+strings.Join(kv, ","))
	}
	return strings.Join(parts, "; ")
}

// ErrNotInMesh is wrapped by Of's errors for a pod that is no workload of
// the definition.
var ErrNotInMesh = errors.New("not a workload of the mesh")

// Of is the service and class of a pod under definition m: the service
// named by its mesh.weft.dev/service label, in the pod's namespace, run
// by the pod's service account, and the version its labels select.
func Of(m *mesh.Model, pod *corev1.Pod) (svc *mesh.Service, class string, err error) {
	name := pod.Labels[compiler.ServiceLabel]
	if name == "" {
		return nil, "", fmt.Errorf("%w: pod %s/%s has no label %s", ErrNotInMesh, pod.Namespace, pod.Name, compiler.ServiceLabel)
	}
	svc = m.Services[name]
	switch {
	case svc == nil:
		return nil, "", fmt.Errorf("%w: pod %s/%s is labelled %s=%s, and mesh %s has no service %q", ErrNotInMesh, pod.Namespace, pod.Name, compiler.ServiceLabel, name, m.Name, name)
	case svc.Namespace != pod.Namespace:
		return nil, "", fmt.Errorf("%w: pod %s/%s is labelled %s=%s, and service %s is in namespace %s", ErrNotInMesh, pod.Namespace, pod.Name, compiler.ServiceLabel, name, name, svc.Namespace)
	case svc.ServiceAccount != ServiceAccount(pod):
		return nil, "", fmt.Errorf("%w: pod %s/%s runs as service account %s; service %s runs as %s", ErrNotInMesh, pod.Namespace, pod.Name, ServiceAccount(pod), name, svc.ServiceAccount)
	}
	v, err := Version(svc, pod.Labels)
	if err != nil {
		return nil, "", fmt.Errorf("%w: pod %s/%s: %v", ErrNotInMesh, pod.Namespace, pod.Name, err)
	}
	return svc, compiler.ClassName(name, v), nil
}
