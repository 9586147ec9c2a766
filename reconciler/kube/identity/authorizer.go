package identity

import (
	"context"
	"errors"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/reconciler/kube/workload"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema/mesh"
)

// PodAuthorizer binds an xDS stream to the pod its node id names. It
// implements xds.Authorizer.
type PodAuthorizer struct {
	// Pods reads pods (the manager's informer cache).
	Pods client.Reader
	// Live reads a pod the cache has not seen yet (the manager's API
	// reader); nil: the cache only.
	Live client.Reader
	// Definition is the served mesh definition (nil before the first
	// revision).
	Definition func() *mesh.Model
}

// Authorize implements xds.Authorizer: the stream is served as the pod's
// node id and the class its labels select under the served definition,
// when the client certificate's SPIFFE id is the pod's service account
// (and the service's), the pod is scheduled and not terminated, and any
// class the client claims is that class: node metadata weft.class must
// be the class; node.cluster may be the class or the pod's mesh service
// (what the injected agent sends: it cannot know the version, which is
// decided here from the pod's labels; docs/kubernetes.md, "Contracts").
func (a *PodAuthorizer) Authorize(ctx context.Context, p xds.Peer, claimed *corev3.Node) (xds.Binding, error) {
	if !p.Verified() {
		why := p.IdentityError
		if why == "" {
			why = "no verified client certificate"
		}
		return xds.Binding{}, fmt.Errorf("no SPIFFE identity: %s", why)
	}
	id := claimed.GetId()
	name, ns, err := workload.ParseNodeID(id)
	if err != nil {
		return xds.Binding{}, err
	}
	m := a.definition()
	if m == nil {
		return xds.Binding{}, errors.New("no mesh definition is served yet")
	}
	pod, err := a.pod(ctx, ns, name)
	if err != nil {
		return xds.Binding{}, err
	}
	switch {
	case pod.Spec.NodeName == "":
		return xds.Binding{}, fmt.Errorf("pod %s/%s is not scheduled on a node", ns, name)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return xds.Binding{}, fmt.Errorf("pod %s/%s has terminated (%s)", ns, name, pod.Status.Phase)
	}
	if want := workload.Identity(m.TrustDomain, pod); want != p.Identity {
		return xds.Binding{}, fmt.Errorf("pod %s/%s runs as %s; the client certificate is %s", ns, name, want, p.Identity)
	}
	svc, class, err := workload.Of(m, pod)
	if err != nil {
		return xds.Binding{}, err
	}
	if c := claimed.GetCluster(); c != "" && c != class && c != svc.Name {
		return xds.Binding{}, fmt.Errorf("pod %s/%s is of class %s of service %s, the stream claims %q", ns, name, class, svc.Name, c)
	}
	if v := claimed.GetMetadata().GetFields()[xds.ClassMetadataKey]; v != nil {
		if c := v.GetStringValue(); c != "" && c != class {
			return xds.Binding{}, fmt.Errorf("pod %s/%s is of class %s, the stream claims class %q", ns, name, class, c)
		}
	}
	return xds.Binding{NodeID: id, Class: class}, nil
}

func (a *PodAuthorizer) definition() *mesh.Model {
	if a.Definition == nil {
		return nil
	}
	return a.Definition()
}

// pod reads the pod from the cache, else (a pod created since the cache
// last synced) from the apiserver.
func (a *PodAuthorizer) pod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	err := a.Pods.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod)
	if apierrors.IsNotFound(err) && a.Live != nil {
		err = a.Live.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod)
	}
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("no pod %s in namespace %s", name, ns)
	}
	if err != nil {
		return nil, fmt.Errorf("looking up pod %s/%s: %w", ns, name, err)
	}
	return pod, nil
}
