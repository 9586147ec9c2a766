package controller

import (
	"context"
	"fmt"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/compiler"
	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/pipeline"
)

// Labels the controller adds to the NetworkPolicies it applies, beside
// the compiler's (compiler.ManagedByLabel, compiler.MeshLabel): the Mesh
// object that applied them, as Flux labels what a Kustomization applied
// (kustomize.toolkit.fluxcd.io/name, /namespace). NetworkPolicies live in
// the services' namespaces, where an ownerReference to the Mesh is not
// allowed; the finalizer deletes them by these labels.
const (
	OwnerNameLabel      = "mesh.weft.dev/owner-name"
	OwnerNamespaceLabel = "mesh.weft.dev/owner-namespace"
)

// applyNetworkPolicies applies the NetworkPolicies of the applied
// revision (server-side, field manager weft, forced) and prunes the
// mesh's others, when the revision changed since the last apply, when
// an interval passed (drift is corrected) or on a requested reconcile.
// The leader only.
func (r *MeshReconciler) applyNetworkPolicies(ctx context.Context, obj *meshv1.Mesh, sm *servedMesh, a *pipeline.Applied) error {
	if !r.leader() {
		return nil
	}
	if sm.npRevision == a.Revision && time.Since(sm.npAt) < obj.GetInterval() && !requested(obj) {
		return nil
	}
	nps, err := compiler.NetworkPolicies(a.Model, r.NetworkPolicies)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, np := range nps {
		np = np.DeepCopy()
		np.TypeMeta.APIVersion, np.TypeMeta.Kind = networkingv1.SchemeGroupVersion.String(), "NetworkPolicy"
		np.Labels[OwnerNameLabel], np.Labels[OwnerNamespaceLabel] = obj.Name, obj.Namespace
		np.ManagedFields, np.ResourceVersion = nil, ""
		if err := r.Patch(ctx, np, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying NetworkPolicy %s/%s: %w", np.Namespace, np.Name, err)
		}
		keep[np.Namespace+"/"+np.Name] = true
	}
	selectors := []string{compiler.PruneSelector(a.Model.Name)}
	if sm.npMeshName != "" && sm.npMeshName != a.Model.Name {
		selectors = append(selectors, compiler.PruneSelector(sm.npMeshName))
	}
	for _, sel := range selectors {
		if _, err := r.prune(ctx, sel, keep); err != nil {
			return err
		}
	}
	sm.npRevision, sm.npMeshName, sm.npAt = a.Revision, a.Model.Name, time.Now()
	return nil
}

// deleteNetworkPolicies deletes every NetworkPolicy the Mesh applied.
func (r *MeshReconciler) deleteNetworkPolicies(ctx context.Context, obj *meshv1.Mesh) (int, error) {
	sel := labels.SelectorFromSet(labels.Set{
		compiler.ManagedByLabel: compiler.ManagedBy,
		OwnerNameLabel:          obj.Name,
		OwnerNamespaceLabel:     obj.Namespace,
	})
	return r.prune(ctx, sel.String(), nil)
}

// prune deletes the NetworkPolicies that selector finds (every
// namespace) and keep does not hold ("namespace/name"); it returns how
// many it deleted.
func (r *MeshReconciler) prune(ctx context.Context, selector string, keep map[string]bool) (int, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return 0, err
	}
	var list networkingv1.NetworkPolicyList
	if err := r.APIReader.List(ctx, &list, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return 0, fmt.Errorf("listing NetworkPolicies %s: %w", selector, err)
	}
	n := 0
	for i := range list.Items {
		np := &list.Items[i]
		if keep[np.Namespace+"/"+np.Name] {
			continue
		}
		if err := r.Delete(ctx, np); err != nil && !apierrors.IsNotFound(err) {
			return n, fmt.Errorf("pruning NetworkPolicy %s/%s: %w", np.Namespace, np.Name, err)
		}
		n++
		r.Log.Info("NetworkPolicy pruned", "networkPolicy", np.Namespace+"/"+np.Name)
	}
	return n, nil
}
