package serving

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions trims what the manager's informer cache keeps of pods and
// EndpointSlices, the two kinds the serving side watches in every
// namespace: managedFields are dropped from both, and a pod keeps only
// its name, namespace, UID, labels, deletion timestamp, owner references,
// spec.serviceAccountName, spec.nodeName and status.phase/podIP(s) —
// what the endpoints feed and the pod authorizer read. A 10,000-pod
// cluster then costs the controller a few MB instead of hundreds. Anything
// else in the controller that reads pods from the cache sees these
// trimmed pods (read them with the APIReader instead).
func CacheOptions(o *cache.Options) {
	if o.ByObject == nil {
		o.ByObject = map[client.Object]cache.ByObject{}
	}
	o.ByObject[&corev1.Pod{}] = cache.ByObject{Transform: trimPod}
	o.ByObject[&discoveryv1.EndpointSlice{}] = cache.ByObject{Transform: cache.TransformStripManagedFields()}
}

// trimPod is the Transform of cached pods.
func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: metav1ObjectMeta(p),
		Spec:       corev1.PodSpec{ServiceAccountName: p.Spec.ServiceAccountName, NodeName: p.Spec.NodeName},
		Status:     corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}, nil
}

// metav1ObjectMeta is the part of a pod's metadata that is kept.
func metav1ObjectMeta(p *corev1.Pod) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
		Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp, OwnerReferences: p.OwnerReferences,
	}
}
