package controller

import (
	"context"
	"sort"

	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/pipeline"
)

// serve decides whether obj is the Mesh this control plane serves: the
// oldest of the Meshes not being deleted (creationTimestamp, then
// namespace/name). It returns obj's served state, or the Mesh served
// instead.
func (r *MeshReconciler) serve(ctx context.Context, obj *meshv1.Mesh) (*servedMesh, *meshv1.Mesh, error) {
	var list meshv1.MeshList
	if err := r.List(ctx, &list); err != nil {
		return nil, nil, err
	}
	if oldest := Oldest(list.Items); oldest != nil && oldest.UID != obj.UID {
		return nil, oldest, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.served == nil || r.served.uid != obj.UID {
		var pub pipeline.Publisher = r.XDS
		if r.Publisher != nil {
			pub = r.Publisher
		}
		r.served = &servedMesh{uid: obj.UID, key: client.ObjectKeyFromObject(obj),
			pipeline: &pipeline.Pipeline{Gate: r.Gate, Publisher: pub, Endpoints: r.Endpoints, Check: r.Check, Observe: r.metrics.shared.ObserveStep}}
	}
	return r.served, nil, nil
}

// Oldest is the Mesh a control plane serves among ms: the oldest that is
// not being deleted (ties: namespace/name); nil when there is none.
func Oldest(ms []meshv1.Mesh) *meshv1.Mesh {
	var live []*meshv1.Mesh
	for i := range ms {
		if ms[i].DeletionTimestamp.IsZero() {
			live = append(live, &ms[i])
		}
	}
	if len(live) == 0 {
		return nil
	}
	sort.Slice(live, func(i, j int) bool {
		a, b := live[i], live[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return live[0]
}

// Served is the revision being served (nil before the first): its model
// and compiled result.
func (r *MeshReconciler) Served() *pipeline.Applied {
	r.mu.Lock()
	sm := r.served
	r.mu.Unlock()
	if sm == nil {
		return nil
	}
	return sm.pipeline.Published(r.XDS.Revision())
}

// servedKey is the Mesh being served, if any.
func (r *MeshReconciler) servedKey() (client.ObjectKey, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.served == nil {
		return client.ObjectKey{}, false
	}
	return r.served.key, true
}

// sourceKey is the key of obj's source.
func sourceKey(obj *meshv1.Mesh) client.ObjectKey {
	return client.ObjectKey{Namespace: obj.SourceNamespace(), Name: obj.Spec.SourceRef.Name}
}

// sourceName is "Kind/namespace/name", as Flux names a source in
// messages, and the value of the source index.
func sourceName(obj *meshv1.Mesh) string {
	return obj.Spec.SourceRef.Kind + "/" + obj.SourceNamespace() + "/" + obj.Spec.SourceRef.Name
}
