package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/compiler"
	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/pipeline/source/flux"
)

// The last applied revision survives the controller: source-controller
// offers only its latest artifact, so a controller that starts (a
// restart, a new replica) while the latest revision is broken would have
// nothing good to serve. The leader keeps the artifact of each revision
// that becomes applied in a ConfigMap of the controller's namespace
// (KeptArtifactName), with the spec it was applied with; a controller
// that starts serving a Mesh whose lastAppliedRevision is not the
// source's current revision publishes the kept one first, then tries the
// current one — which, if it fails, leaves the kept one serving.
const (
	// keptArtifactKey is the ConfigMap's binaryData key of the tarball.
	keptArtifactKey = "artifact.tar.gz"
	// keptSpecKey holds the spec the revision was applied with.
	keptSpecKey = "spec.json"
	// maxKeptBytes bounds a kept tarball (a ConfigMap holds 1 MiB).
	maxKeptBytes = 900 << 10
	// maxKept bounds the tarballs kept in memory until their revision is
	// applied (as pipeline.Pipeline keeps its last published results).
	maxKept = 4
)

// keptSpec is what a revision was applied with.
type keptSpec struct {
	Revision    string   `json:"revision"`
	Path        string   `json:"path,omitempty"`
	Environment string   `json:"environment,omitempty"`
	Policies    []string `json:"policies,omitempty"`
}

// kept is a published revision's packed artifact.
type kept struct {
	spec    keptSpec
	tarball []byte
}

// KeptArtifactName is the ConfigMap keeping the last applied artifact of
// Mesh namespace/name, in the controller's namespace.
func KeptArtifactName(namespace, name string) string {
	n := "weft-applied-" + namespace + "." + name
	if len(n) <= 253 {
		return n
	}
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	return "weft-applied-" + hex.EncodeToString(sum[:8])
}

// keep packs the artifact of a revision that was just published, until
// it is applied.
func (r *MeshReconciler) keep(obj *meshv1.Mesh, sm *servedMesh, rev pipeline.Revision) {
	b, err := flux.Pack(rev, maxKeptBytes)
	if err != nil {
		r.Log.Warn("the revision's artifact is not kept: a controller that starts while a later revision fails will serve nothing until one passes",
			"mesh", obj.Namespace+"/"+obj.Name, "revision", rev.Name, "error", err)
		return
	}
	sm.kept = append(sm.kept, kept{spec: keptSpec{Revision: rev.Name, Path: obj.Spec.Path, Environment: obj.Spec.Environment,
		Policies: obj.Spec.Policies}, tarball: b})
	if len(sm.kept) > maxKept {
		sm.kept = sm.kept[len(sm.kept)-maxKept:]
	}
}

// storeApplied writes the artifact of the applied revision into its
// ConfigMap (the leader, once per revision). A failure is logged: it
// costs only the fallback of a later start.
func (r *MeshReconciler) storeApplied(ctx context.Context, obj *meshv1.Mesh, sm *servedMesh, rev string) {
	if !r.leader() || sm.stored == rev {
		return
	}
	var k *kept
	for i := range sm.kept {
		if sm.kept[i].spec.Revision == rev {
			k = &sm.kept[i]
		}
	}
	if k == nil {
		return
	}
	spec, _ := json.Marshal(k.spec)
	cm := &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: KeptArtifactName(obj.Namespace, obj.Name),
			Labels: map[string]string{compiler.ManagedByLabel: compiler.ManagedBy, OwnerNameLabel: obj.Name, OwnerNamespaceLabel: obj.Namespace}},
		Data:       map[string]string{keptSpecKey: string(spec)},
		BinaryData: map[string][]byte{keptArtifactKey: k.tarball},
	}
	if err := r.Patch(ctx, cm, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		r.Log.Warn("keeping the applied revision's artifact", "configMap", r.Namespace+"/"+cm.Name, "error", err)
		return
	}
	sm.stored = rev
}

// restore publishes the kept artifact of obj's lastAppliedRevision when
// this controller starts serving obj and the source's current revision
// is another one. It runs once per served Mesh.
func (r *MeshReconciler) restore(ctx context.Context, obj *meshv1.Mesh, sm *servedMesh, current string) {
	if sm.restoreTried {
		return
	}
	sm.restoreTried = true
	want := obj.Status.LastAppliedRevision
	if want == "" || want == current {
		return
	}
	cm := &corev1.ConfigMap{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: KeptArtifactName(obj.Namespace, obj.Name)}, cm); err != nil {
		if !apierrors.IsNotFound(err) {
			r.Log.Warn("reading the kept artifact", "mesh", obj.Namespace+"/"+obj.Name, "error", err)
		}
		return
	}
	var spec keptSpec
	if err := json.Unmarshal([]byte(cm.Data[keptSpecKey]), &spec); err != nil || spec.Revision != want {
		return
	}
	rev, err := r.Fetcher.Unpack(bytes.NewReader(cm.BinaryData[keptArtifactKey]), spec.Revision, flux.Ref{Path: spec.Path, Policies: spec.Policies})
	if err != nil {
		r.Log.Warn("unpacking the kept artifact", "mesh", obj.Namespace+"/"+obj.Name, "error", err)
		return
	}
	defer rev.Done()
	sm.pipeline.Env = spec.Environment
	if _, err := sm.pipeline.Reconcile(ctx, rev); err != nil {
		r.Log.Warn("the kept revision no longer passes", "mesh", obj.Namespace+"/"+obj.Name, "revision", want, "error", err)
		return
	}
	sm.positions = flux.Positions(rev)
	sm.stored = want
	r.Log.Info("serving the last applied revision, kept from before this controller started, while the source's revision is tried",
		"mesh", obj.Namespace+"/"+obj.Name, "revision", want, "current", current)
}
