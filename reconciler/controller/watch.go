package controller

import (
	"context"
	"time"

	"github.com/fluxcd/pkg/runtime/predicates"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/pipeline/source/flux"
)

// sourceIndex is the field index of Meshes by source,
// "Kind/namespace/name".
const sourceIndex = ".spec.sourceRef"

// watch registers the reconciler's watches: Meshes (a new generation, a
// reconcile request, a deletion), the Flux sources they refer to (a new
// artifact: at once, through the source index), the deletion of the
// served Mesh (the others are requeued), the xDS server's status
// changes (the served Mesh, debounced) and the other replicas' proxies
// reports (the served Mesh: the leader counts their proxies). The
// controller runs on every replica (NeedLeaderElection false).
func (c *Controller) watch() error {
	r := c.Reconciler
	ctx := context.Background()
	if err := c.Manager.GetFieldIndexer().IndexField(ctx, &meshv1.Mesh{}, sourceIndex, func(o client.Object) []string {
		return []string{sourceName(o.(*meshv1.Mesh))}
	}); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(c.Manager).
		Named("mesh").
		For(&meshv1.Mesh{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicates.ReconcileRequestedPredicate{}, deletionStarted{}))).
		Watches(&meshv1.Mesh{}, handler.EnqueueRequestsFromMapFunc(r.otherMeshes), builder.WithPredicates(deletionStarted{}, predicate.Funcs{
			CreateFunc: func(event.CreateEvent) bool { return false },
		})).
		WatchesRawSource(source.Channel(c.changes, &handler.EnqueueRequestForObject{})).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.servedRequest),
			builder.WithPredicates(otherReports(c.opts.Namespace, c.opts.PodName))).
		WithOptions(controller.Options{NeedLeaderElection: ptrTo(false), SkipNameValidation: ptrTo(true)})
	for kind, newObj := range flux.SourceKinds() {
		if !c.installed(kind) {
			c.sourceKindsSkipped = append(c.sourceKindsSkipped, kind)
			continue
		}
		c.sourceKindsWatched = append(c.sourceKindsWatched, kind)
		b = b.Watches(newObj(), handler.EnqueueRequestsFromMapFunc(r.meshesOfSource(kind)),
			builder.WithPredicates(artifactChanged{}))
	}
	return b.Complete(r)
}

func ptrTo[T any](v T) *T { return &v }

// meshesOfSource maps a source object of kind to the Meshes naming it.
func (r *MeshReconciler) meshesOfSource(kind string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var list meshv1.MeshList
		key := kind + "/" + o.GetNamespace() + "/" + o.GetName()
		if err := r.List(ctx, &list, client.MatchingFields{sourceIndex: key}); err != nil {
			r.Log.Error("listing the Meshes of a source", "source", key, "error", err)
			return nil
		}
		reqs := make([]reconcile.Request, len(list.Items))
		for i, m := range list.Items {
			reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&m)}
		}
		return reqs
	}
}

// otherMeshes maps a Mesh being deleted to every other Mesh: one of them
// may be served next.
func (r *MeshReconciler) otherMeshes(ctx context.Context, o client.Object) []reconcile.Request {
	var list meshv1.MeshList
	if err := r.List(ctx, &list); err != nil {
		r.Log.Error("listing Meshes", "error", err)
		return nil
	}
	var reqs []reconcile.Request
	for _, m := range list.Items {
		if m.UID != o.GetUID() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&m)})
		}
	}
	return reqs
}

// refreshOnChange requeues the served Mesh when the xDS server's status
// changes (a proxy connects, ACKs, NACKs; a rollout ends), at most once
// per Options.StatusInterval, and writes this replica's proxies report
// (proxies.go) then. With a pod name it also reports and requeues every
// proxiesHeartbeat: the report stays fresh, and the leader drops the
// reports that went stale.
func (c *Controller) refreshOnChange(ctx context.Context) error {
	ch := c.XDS.Changed()
	c.reportProxies(ctx)
	for {
		var heartbeat <-chan time.Time
		hb := time.NewTimer(proxiesHeartbeat)
		if c.opts.PodName != "" {
			heartbeat = hb.C
		}
		select {
		case <-ctx.Done():
			hb.Stop()
			return nil
		case <-ch:
			// The next change, from now on, wakes the next round, even
			// one that happens while this round waits out the interval.
			ch = c.XDS.Changed()
		case <-heartbeat:
		}
		hb.Stop()
		c.requeueServed()
		c.reportProxies(ctx)
		t := time.NewTimer(c.opts.StatusInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// requeueServed requeues the served Mesh, unless one is queued already.
func (c *Controller) requeueServed() {
	if key, ok := c.Reconciler.servedKey(); ok {
		select {
		case c.changes <- event.GenericEvent{Object: &meshv1.Mesh{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}}:
		default: // one is queued already
		}
	}
}

// requeueAll requeues every Mesh once this replica is elected: the
// reconciler ran on it as a follower (it compiles and serves) without
// writing, and the new leader writes their finalizers and status at once
// rather than at their next interval.
func (c *Controller) requeueAll(ctx context.Context) error {
	// controller-runtime starts the leader's runnables before it closes
	// Elected: a Mesh requeued before then would be reconciled by a
	// replica that does not know yet that it leads, and not written.
	select {
	case <-c.Manager.Elected():
	case <-ctx.Done():
		return nil
	}
	var list meshv1.MeshList
	if err := c.Manager.GetClient().List(ctx, &list); err != nil {
		// Not fatal: the status is then written at the next event.
		if ctx.Err() == nil {
			c.opts.Logger.Error("listing the Meshes to requeue on election", "error", err)
		}
		<-ctx.Done()
		return nil
	}
	c.opts.Logger.Info("elected leader: requeueing every Mesh to write its status", "meshes", len(list.Items))
	for i := range list.Items {
		m := &list.Items[i]
		select {
		case c.changes <- event.GenericEvent{Object: &meshv1.Mesh{ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Name}}}:
		case <-ctx.Done():
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

// artifactChanged passes a source object whose artifact changed
// (revision or digest), as Flux's consumers watch their sources.
type artifactChanged struct{ predicate.Funcs }

func (artifactChanged) Update(e event.UpdateEvent) bool {
	o, okO := e.ObjectOld.(flux.Object)
	n, okN := e.ObjectNew.(flux.Object)
	if !okO || !okN || n.GetArtifact() == nil {
		return false
	}
	a, b := o.GetArtifact(), n.GetArtifact()
	return a == nil || a.Revision != b.Revision || a.Digest != b.Digest
}

func (artifactChanged) Create(event.CreateEvent) bool   { return true }
func (artifactChanged) Delete(event.DeleteEvent) bool   { return true }
func (artifactChanged) Generic(event.GenericEvent) bool { return false }

// deletionStarted passes the update that sets a deletionTimestamp, and
// deletions.
type deletionStarted struct{ predicate.Funcs }

func (deletionStarted) Update(e event.UpdateEvent) bool {
	return e.ObjectOld.GetDeletionTimestamp().IsZero() && !e.ObjectNew.GetDeletionTimestamp().IsZero()
}
func (deletionStarted) Create(event.CreateEvent) bool   { return false }
func (deletionStarted) Delete(event.DeleteEvent) bool   { return true }
func (deletionStarted) Generic(event.GenericEvent) bool { return false }
