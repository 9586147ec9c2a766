package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/fluxcd/pkg/runtime/events"
	"github.com/fluxcd/pkg/runtime/patch"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/weft-dev/weft/compiler"
	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/pipeline/source/flux"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema/mesh"
)

// MeshReconciler reconciles Meshes (see the package doc for the steps,
// conditions and requeues).
type MeshReconciler struct {
	// Client reads from the manager's cache and writes to the API server.
	client.Client
	// APIReader reads the API server directly (the NetworkPolicies to
	// prune, which are not cached).
	APIReader client.Reader
	// XDS serves what the pipeline publishes; the proxies' status is
	// read from it.
	XDS *xds.Server
	// Publisher is the pipeline's Publisher in front of XDS (nil: XDS):
	// the EndpointSlice feed in a cluster.
	Publisher pipeline.Publisher
	// Check, when set, is the pipeline's Check (the trust domain of the
	// mesh CA).
	Check func(*mesh.Model) error
	// Gate is the gate of every revision; its Limits' time limit is
	// replaced by each Mesh's spec.timeout.
	Gate *pipeline.Gate
	// Limits are the revision limits without a Mesh's spec.timeout.
	Limits pipeline.Limits
	// Fetcher downloads the artifacts.
	Fetcher *flux.Fetcher
	// Endpoints, when set, gives the endpoints to compile with.
	Endpoints func(*mesh.Model) (compiler.Endpoints, error)
	// NetworkPolicies are the options of the compiled NetworkPolicies.
	NetworkPolicies compiler.NetworkPolicyOptions
	// Events records Kubernetes events (and Flux notifications).
	Events events.Recorder
	// Namespace is the controller's own: the kept artifacts' ConfigMaps
	// live there.
	Namespace string
	// PodName is this replica's pod ("" when unknown): the leader counts
	// every proxies report but its own (proxies.go); StatusInterval
	// tells when a report is stale (staleAfter).
	PodName        string
	StatusInterval time.Duration
	// Leader reports whether this replica writes (nil: always).
	Leader  func() bool
	Log     *slog.Logger
	metrics *metrics

	mu     sync.Mutex
	served *servedMesh
}

// servedMesh is the Mesh this control plane serves, with its pipeline
// and what the last run of it found.
type servedMesh struct {
	uid      types.UID
	key      types.NamespacedName
	pipeline *pipeline.Pipeline

	// runKey is what the last run saw (artifact digest, generation);
	// runRev the revision it tried, runErr how it ended, failure its
	// status.failure (paths relative to the repository).
	runKey, runRev string
	runErr         error
	failure        *meshv1.Failure
	// positions names the files of the last published revision
	// relative to the repository (for the NACKs of its rollout).
	positions func(string) string
	// npRevision is the revision whose NetworkPolicies were applied at
	// npAt; npMeshName the mesh name they were labelled with.
	npRevision, npMeshName string
	npAt                   time.Time
	// event is the key of the last event recorded (one per change).
	event string
	// kept are the packed artifacts of the last revisions published;
	// stored is the revision whose artifact the ConfigMap holds;
	// restoreTried: the kept artifact was looked at (lastgood.go).
	kept         []kept
	stored       string
	restoreTried bool
}

// Reconcile runs the steps of the package doc for one Mesh.
func (r *MeshReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	start := time.Now()
	obj := &meshv1.Mesh{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ref := objectRef(obj)
	defer r.metrics.flux.RecordDuration(ref, start)
	if !obj.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, obj)
	}
	if err := r.addFinalizer(ctx, obj); err != nil {
		return ctrl.Result{}, err
	}
	r.metrics.flux.RecordSuspend(ref, obj.Spec.Suspend)
	if obj.Spec.Suspend {
		r.Log.Info("reconciliation is suspended for this Mesh", "mesh", req.NamespacedName)
		r.metrics.reconciles.WithLabelValues(resultSkipped).Inc()
		return ctrl.Result{}, nil
	}
	patcher := patch.NewSerialPatcher(obj, r.Client)
	out := r.reconcile(ctx, obj)
	r.metrics.reconciles.WithLabelValues(out.metric).Inc()
	if v, ok := meta.ReconcileAnnotationValue(obj.GetAnnotations()); ok {
		obj.Status.SetLastHandledReconcileRequest(v)
	}
	obj.Status.ObservedGeneration = obj.Generation
	if !r.leader() {
		return out.result, nil
	}
	if err := patcher.Patch(ctx, obj, patch.WithOwnedConditions{Conditions: ownedConditions},
		patch.WithFieldOwner(FieldManager)); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("patching the status of Mesh %s: %w", req.NamespacedName, err)
	}
	for _, t := range ownedConditions {
		r.metrics.flux.RecordCondition(ref, conditionOrUnknown(obj, t))
	}
	r.event(obj, out)
	return out.result, nil
}

// ownedConditions are the conditions the reconciler writes.
var ownedConditions = []string{meta.ReadyCondition, meta.ReconcilingCondition, meta.StalledCondition}

// outcome is how one reconcile ended: when to come back, the metric's
// result, and the event to record (eventType "" : none).
type outcome struct {
	result    ctrl.Result
	metric    string
	eventType string
	reason    string
	message   string
	revision  string
	token     string
}

// reconcile decides which Mesh is served, reads its source, runs the
// pipeline when something changed, and sets the status.
func (r *MeshReconciler) reconcile(ctx context.Context, obj *meshv1.Mesh) outcome {
	sm, other, err := r.serve(ctx, obj)
	if err != nil {
		return r.retry(obj, meta.ReconciliationFailedReason, "listing Meshes: %v", err)
	}
	if other != nil {
		return notServed(obj, other)
	}
	src, art, err := flux.GetArtifact(ctx, r.Client, obj.Spec.SourceRef.Kind, sourceKey(obj))
	switch {
	case apierrors.IsNotFound(err):
		return r.retry(obj, meta.ArtifactFailedReason, "Source '%s' not found", sourceName(obj))
	case err != nil:
		return r.retry(obj, meta.ArtifactFailedReason, "Source '%s': %v", sourceName(obj), err)
	case art == nil:
		return r.retry(obj, meta.ArtifactFailedReason, "Source '%s' is not ready, artifact not found", sourceName(obj))
	}
	_ = src
	r.restore(ctx, obj, sm, art.Revision)
	key := fmt.Sprintf("%s|%d", art.Digest, obj.Generation)
	if requested(obj) || key != sm.runKey || pipeline.IsRetryable(sm.runErr) {
		r.run(ctx, obj, sm, art, key)
	}
	return r.summarize(ctx, obj, sm)
}

// run fetches the artifact and runs it through the pipeline, within
// spec.timeout; it records the outcome in sm.
func (r *MeshReconciler) run(ctx context.Context, obj *meshv1.Mesh, sm *servedMesh, art *meta.Artifact, key string) {
	timeout := obj.GetTimeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	limits := r.Limits
	limits.Timeout, limits.TimeoutSetting = timeout, "the Mesh's spec.timeout"
	r.Gate.SetLimits(limits)
	sm.runKey, sm.runRev, sm.failure = key, art.Revision, nil
	rev, err := r.Fetcher.Fetch(ctx, art, flux.Ref{Path: obj.Spec.Path, Policies: obj.Spec.Policies})
	if err != nil {
		if !pipeline.IsStalling(err) && !pipeline.IsRetryable(err) {
			err = pipeline.Retryable(art.Revision, status.StepFetch, overrun(ctx, err, limits))
		}
		sm.runErr = err
		sm.pipeline.RecordFailure(art.Revision, pipeline.StepOf(err), errors.Unwrap(err))
		sm.failure = failureOf(err, art.Revision, flux.RelPaths)
		r.metrics.shared.RevisionFailed(stepOr(err)) // the pipeline counts its own steps
		return
	}
	defer rev.Done()
	pos := flux.Positions(rev)
	sm.pipeline.Env = obj.Spec.Environment
	_, err = sm.pipeline.Reconcile(ctx, rev)
	if err != nil && !pipeline.IsStalling(err) && !pipeline.IsRetryable(err) {
		// The reconcile's context ended (the controller stops, or
		// spec.timeout ran out before a step could say so): try again.
		err = pipeline.Retryable(rev.Name, status.StepLoad, overrun(ctx, err, limits))
	}
	sm.runErr = err
	if err != nil {
		sm.failure = failureOf(err, rev.Name, pos)
		return
	}
	sm.positions = pos
	r.keep(obj, sm, rev)
}

// overrun names the end of the revision's time limit (ctx's deadline)
// as such; any other error is returned as it is.
func overrun(ctx context.Context, err error, l pipeline.Limits) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &pipeline.TimeoutError{Limit: l.Timeout, Setting: l.TimeoutSetting}
	}
	return err
}

// stepOr is the step of a pipeline error, else fetch.
func stepOr(err error) string {
	if s := pipeline.StepOf(err); s != "" {
		return s
	}
	return meshv1.StepFetch
}

// retry marks a failure that a later attempt may not have.
func (r *MeshReconciler) retry(obj *meshv1.Mesh, reason, format string, args ...any) outcome {
	msg := fmt.Sprintf(format, args...)
	conditions.MarkFalse(obj, meta.ReadyCondition, reason, "%s", msg)
	conditions.MarkReconciling(obj, meta.ProgressingWithRetryReason, "%s", msg)
	conditions.Delete(obj, meta.StalledCondition)
	return outcome{result: ctrl.Result{RequeueAfter: obj.GetRetryInterval()}, metric: resultRetrying,
		eventType: corev1.EventTypeWarning, reason: reason, message: msg, revision: obj.Status.LastAttemptedRevision}
}

// stalled marks a failure that only a new artifact or spec can change.
func stalled(obj *meshv1.Mesh, reason, msg, revision string) outcome {
	conditions.MarkFalse(obj, meta.ReadyCondition, reason, "%s", msg)
	conditions.MarkStalled(obj, reason, "%s", msg)
	conditions.Delete(obj, meta.ReconcilingCondition)
	return outcome{metric: resultStalled, eventType: corev1.EventTypeWarning, reason: reason, message: msg, revision: revision}
}

// notServed marks a Mesh that another one keeps from being served.
func notServed(obj, other *meshv1.Mesh) outcome {
	msg := fmt.Sprintf("this control plane serves one Mesh: %s/%s (the oldest) is served; delete it to serve this one, or run another control plane for this mesh",
		other.Namespace, other.Name)
	out := stalled(obj, meshv1.OtherMeshServedReason, msg, "")
	out.metric = resultNotServed
	return out
}

// requested reports a reconcile.fluxcd.io/requestedAt not handled yet.
func requested(obj *meshv1.Mesh) bool {
	v, ok := meta.ReconcileAnnotationValue(obj.GetAnnotations())
	return ok && v != obj.Status.GetLastHandledReconcileRequest()
}

// addFinalizer puts the finalizer on obj (the leader only).
func (r *MeshReconciler) addFinalizer(ctx context.Context, obj *meshv1.Mesh) error {
	if !r.leader() || controllerutil.ContainsFinalizer(obj, meshv1.Finalizer) {
		return nil
	}
	base := obj.DeepCopy()
	controllerutil.AddFinalizer(obj, meshv1.Finalizer)
	if err := r.Patch(ctx, obj, client.MergeFrom(base), client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("adding the finalizer to Mesh %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	return nil
}

// finalize deletes the Mesh's NetworkPolicies and lets it go; the
// proxies keep what they are served (package doc).
func (r *MeshReconciler) finalize(ctx context.Context, obj *meshv1.Mesh) (ctrl.Result, error) {
	r.mu.Lock()
	if r.served != nil && r.served.uid == obj.UID {
		r.served = nil
	}
	r.mu.Unlock()
	ref := objectRef(obj)
	r.metrics.flux.DeleteDuration(ref)
	r.metrics.flux.DeleteSuspend(ref)
	for _, t := range ownedConditions {
		r.metrics.flux.DeleteCondition(ref, t)
	}
	if !r.leader() || !controllerutil.ContainsFinalizer(obj, meshv1.Finalizer) {
		return ctrl.Result{}, nil
	}
	n, err := r.deleteNetworkPolicies(ctx, obj)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("finalizing Mesh %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	kept := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: KeptArtifactName(obj.Namespace, obj.Name)}}
	if err := r.Delete(ctx, kept); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("finalizing Mesh %s/%s: deleting its kept artifact: %w", obj.Namespace, obj.Name, err)
	}
	base := obj.DeepCopy()
	controllerutil.RemoveFinalizer(obj, meshv1.Finalizer)
	if err := r.Patch(ctx, obj, client.MergeFrom(base), client.FieldOwner(FieldManager)); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.Log.Info("Mesh finalized: its NetworkPolicies deleted, the proxies keep their configuration",
		"mesh", obj.Namespace+"/"+obj.Name, "networkPolicies", n)
	return ctrl.Result{}, nil
}

func (r *MeshReconciler) leader() bool { return r.Leader == nil || r.Leader() }

// event records out's event once per change (Flux's annotations:
// <group>/revision and <group>/token).
func (r *MeshReconciler) event(obj *meshv1.Mesh, out outcome) {
	if out.eventType == "" || r.Events == nil {
		return
	}
	key := out.eventType + "\x00" + out.reason + "\x00" + out.message + "\x00" + out.revision
	r.mu.Lock()
	sm := r.served
	if sm != nil && sm.uid == obj.UID {
		if sm.event == key {
			r.mu.Unlock()
			return
		}
		sm.event = key
	}
	r.mu.Unlock()
	ann := map[string]string{}
	if out.revision != "" {
		ann[RevisionAnnotation] = out.revision
	}
	if out.token != "" {
		ann[TokenAnnotation] = out.token
	}
	r.Events.AnnotatedEventf(obj, nil, ann, out.eventType, out.reason, "Reconcile", "%s", out.message)
}

// Event annotations, as Flux's notification-controller reads them
// (github.com/fluxcd/pkg/apis/event: <api group>/revision, /token).
const (
	RevisionAnnotation = "mesh.weft.dev/revision"
	TokenAnnotation    = "mesh.weft.dev/token"
)
