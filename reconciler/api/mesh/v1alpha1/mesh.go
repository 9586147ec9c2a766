package v1alpha1

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weft-dev/weft/reconciler/api/status"
)

// Reasons of the Mesh's conditions, beside the generic ones of
// github.com/fluxcd/pkg/apis/meta (Succeeded, Progressing,
// ProgressingWithRetry, Suspended, ArtifactFailed, ReconciliationFailed...).
// A failed step sets Ready=False with the step's reason and keeps serving
// LastAppliedRevision.
const (
	// LoadFailedReason: the mesh repository does not load (CUE syntax,
	// schema, cross references); Failure.Problems has the positions.
	LoadFailedReason = "LoadFailed"
	// PolicyDeniedReason: a deny policy refused the revision.
	PolicyDeniedReason = "PolicyDenied"
	// CompileFailedReason: the compiler or its acceptance gate refused it.
	CompileFailedReason = "CompileFailed"
	// PublishFailedReason: the snapshot could not be served.
	PublishFailedReason = "PublishFailed"
	// ProxyRejectedReason: a proxy NACKed the revision, which was rolled
	// back on every proxy.
	ProxyRejectedReason = "ProxyRejected"
	// OtherMeshServedReason: the control plane serves one Mesh, and it is
	// another one (the oldest); this one is Stalled until that one is
	// deleted.
	OtherMeshServedReason = "OtherMeshServed"
	// NetworkPoliciesFailedReason: the revision is served, but its
	// NetworkPolicies could not be applied or pruned (retried).
	NetworkPoliciesFailedReason = "NetworkPoliciesFailed"
)

// Finalizer is the finalizer the controller puts on a Mesh: it deletes
// the Mesh's NetworkPolicies before the Mesh goes.
const Finalizer = "mesh.weft.dev/finalizer"

// GetConditions returns the status conditions (meta.ObjectWithConditions).
func (in *Mesh) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions replaces the status conditions
// (meta.ObjectWithConditionsSetter).
func (in *Mesh) SetConditions(c []metav1.Condition) { in.Status.Conditions = c }

// GetLastHandledReconcileRequest is the last reconcile.fluxcd.io/requestedAt
// value handled (meta.ObjectWithAnnotationRequests).
func (in *Mesh) GetLastHandledReconcileRequest() string {
	return in.Status.GetLastHandledReconcileRequest()
}

// GetInterval is spec.interval, DefaultInterval when unset or not
// positive (an object that skipped the API server's defaulting).
func (in *Mesh) GetInterval() time.Duration {
	if in.Spec.Interval.Duration <= 0 {
		return DefaultInterval
	}
	return in.Spec.Interval.Duration
}

// GetRequeueAfter is how long after a successful reconciliation the next
// one is due: the interval.
func (in *Mesh) GetRequeueAfter() time.Duration { return in.GetInterval() }

// GetRetryInterval is spec.retryInterval, else the interval.
func (in *Mesh) GetRetryInterval() time.Duration {
	if in.Spec.RetryInterval != nil && in.Spec.RetryInterval.Duration > 0 {
		return in.Spec.RetryInterval.Duration
	}
	return in.GetInterval()
}

// GetTimeout is spec.timeout, else the interval.
func (in *Mesh) GetTimeout() time.Duration {
	if in.Spec.Timeout != nil && in.Spec.Timeout.Duration > 0 {
		return in.Spec.Timeout.Duration
	}
	return in.GetInterval()
}

// SourceNamespace is the namespace of the source: spec.sourceRef.namespace,
// else the Mesh's own.
func (in *Mesh) SourceNamespace() string {
	if in.Spec.SourceRef.Namespace != "" {
		return in.Spec.SourceRef.Namespace
	}
	return in.Namespace
}

// SetCounts sets the counts and the Summary shown by `kubectl get meshes`:
// "2/3" (in sync / total), "2/3, 1 NACKing".
func (p *ProxiesStatus) SetCounts(total, inSync, nacking int32) {
	p.Total, p.InSync, p.NACKing = total, inSync, nacking
	p.Summary = fmt.Sprintf("%d/%d", inSync, total)
	if nacking > 0 {
		p.Summary += fmt.Sprintf(", %d NACKing", nacking)
	}
}

// maxText is the longest Message or Fix the CRD accepts (MaxLength).
const maxText = 4096

// FromStatusProblems converts the control plane's problems
// (reconciler/api/status) into at most MaxProblems Problems, cutting
// messages and fixes longer than the CRD allows; truncated is how many
// were left out.
func FromStatusProblems(ps []status.Problem) (out []Problem, truncated int32) {
	for i, p := range ps {
		if i == MaxProblems {
			return out, int32(len(ps) - MaxProblems)
		}
		out = append(out, Problem{
			File:    p.File,
			Line:    int32(p.Line),
			Column:  int32(p.Column),
			Path:    p.Path,
			Message: cut(p.Message),
			Fix:     cut(p.Fix),
		})
	}
	return out, 0
}

// cut shortens s to maxText bytes without splitting a UTF-8 sequence.
func cut(s string) string {
	if len(s) <= maxText {
		return s
	}
	const ellipsis = "…"
	n := maxText - len(ellipsis)
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + ellipsis
}
