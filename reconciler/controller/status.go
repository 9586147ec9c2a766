package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/weft-dev/weft/compiler"
	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/pipeline/source/flux"
	"github.com/weft-dev/weft/reconciler/xds"
)

// rolloutRequeue is how soon a Mesh whose revision is rolling out is
// looked at again when no proxy event comes first.
const rolloutRequeue = 30 * time.Second

// summarize sets obj's status from the last run and the xDS server's
// status: revisions, proxies (the leader's with the other replicas'
// reports), failure and conditions.
func (r *MeshReconciler) summarize(ctx context.Context, obj *meshv1.Mesh, sm *servedMesh) outcome {
	st := r.XDS.Status()
	obj.Status.LastAttemptedRevision = sm.runRev
	applied := sm.pipeline.Published(st.LastAppliedRevision)
	obj.Status.LastAppliedRevision, obj.Status.SnapshotVersion = "", ""
	if applied != nil {
		obj.Status.LastAppliedRevision = applied.Revision
		obj.Status.SnapshotVersion = SnapshotVersion(applied.Revision, applied.Result)
	}
	obj.Status.Proxies = proxiesStatus(r.withReplicas(ctx, st), sm.positions)
	obj.Status.Failure = sm.failure
	switch {
	case sm.runErr != nil && pipeline.IsRetryable(sm.runErr):
		out := r.retry(obj, reasonOf(sm.runErr), "%s", failureMessage(sm.failure, sm.runErr))
		out.revision = sm.runRev
		return out
	case sm.runErr != nil:
		var rej *xds.RejectedError
		if errors.As(sm.runErr, &rej) && rej.NACK != nil {
			// Published again (a requested reconcile): the proxies
			// rejected this version before; say where, as the rollout did.
			a := &status.Attempt{Revision: sm.runRev, Step: status.StepRollout, NACK: rej.NACK, RolledBackTo: st.LastAppliedRevision}
			obj.Status.Failure = rolloutFailure(a, sm.positions)
			return stalled(obj, meshv1.ProxyRejectedReason, rolloutMessage(a, sm.positions), sm.runRev)
		}
		return stalled(obj, reasonOf(sm.runErr), failureMessage(sm.failure, sm.runErr), sm.runRev)
	}
	if a := st.LastAttempt; a != nil && a.Revision == sm.runRev && a.Step == status.StepRollout {
		obj.Status.Failure = rolloutFailure(a, sm.positions)
		return stalled(obj, meshv1.ProxyRejectedReason, rolloutMessage(a, sm.positions), sm.runRev)
	}
	if applied == nil || applied.Revision != sm.runRev {
		return progressing(obj, st, sm.runRev)
	}
	if err := r.applyNetworkPolicies(ctx, obj, sm, applied); err != nil {
		out := r.retry(obj, meshv1.NetworkPoliciesFailedReason, "revision %s is served, but its NetworkPolicies: %v", applied.Revision, err)
		out.revision = applied.Revision
		return out
	}
	r.storeApplied(ctx, obj, sm, applied.Revision)
	msg := "Applied revision: " + applied.Revision
	conditions.MarkTrue(obj, meta.ReadyCondition, meta.SucceededReason, "%s", msg)
	conditions.Delete(obj, meta.ReconcilingCondition)
	conditions.Delete(obj, meta.StalledCondition)
	return outcome{
		result: ctrl.Result{RequeueAfter: obj.GetInterval()}, metric: resultApplied,
		eventType: corev1.EventTypeNormal, reason: meta.ReconciliationSucceededReason,
		message:  fmt.Sprintf("Applied revision %s (snapshot %s) to %s proxies", applied.Revision, obj.Status.SnapshotVersion, obj.Status.Proxies.Summary),
		revision: applied.Revision, token: obj.Status.SnapshotVersion,
	}
}

// progressing marks a revision that is published and rolling out.
func progressing(obj *meshv1.Mesh, st status.Status, rev string) outcome {
	msg := fmt.Sprintf("Rolling out revision %s", rev)
	if st.Rollout != nil && st.Rollout.Revision == rev {
		msg += fmt.Sprintf(": waiting for %d proxies to ACK it (%s)", st.Rollout.WaitingCount, strings.Join(st.Rollout.Waiting, ", "))
	}
	conditions.MarkUnknown(obj, meta.ReadyCondition, meta.ProgressingReason, "%s", msg)
	conditions.MarkReconciling(obj, meta.ProgressingReason, "%s", msg)
	conditions.Delete(obj, meta.StalledCondition)
	return outcome{result: ctrl.Result{RequeueAfter: min(rolloutRequeue, obj.GetInterval())}, metric: resultProgressing}
}

// reasonOf is the Ready reason of a failed step.
func reasonOf(err error) string {
	var rej *xds.RejectedError
	if errors.As(err, &rej) {
		return meshv1.ProxyRejectedReason
	}
	var te *pipeline.TimeoutError
	if errors.As(err, &te) {
		return meta.ReconciliationFailedReason
	}
	switch pipeline.StepOf(err) {
	case status.StepFetch, status.StepExport:
		return meta.ArtifactFailedReason
	case status.StepLoad:
		return meshv1.LoadFailedReason
	case status.StepVet:
		return meshv1.PolicyDeniedReason
	case status.StepCompile, status.StepAccept:
		return meshv1.CompileFailedReason
	case status.StepPublish:
		return meshv1.PublishFailedReason
	}
	return meta.ReconciliationFailedReason
}

// failureOf is the status.failure of a failed run, its positions named
// by pos.
func failureOf(err error, rev string, pos func(string) string) *meshv1.Failure {
	step := pipeline.StepOf(err)
	if step == status.StepExport || step == "" {
		step = status.StepFetch
	}
	ps := xds.Problems(err)
	for i := range ps {
		ps[i].File = pos(ps[i].File)
		ps[i].Message = relPaths(ps[i].Message)
	}
	if len(ps) == 0 {
		ps = []status.Problem{{Message: relPaths(innermost(err))}}
	}
	problems, truncated := meshv1.FromStatusProblems(ps)
	return &meshv1.Failure{Revision: rev, Step: step, Problems: problems, Truncated: truncated}
}

// relPaths rewrites the artifact paths in a message.
func relPaths(s string) string { return flux.RelPaths(s) }

// innermost is err's text without the pipeline's "revision R: step: "
// prefix (the failure names both).
func innermost(err error) string {
	var se *pipeline.StallingError
	if errors.As(err, &se) && se.Err != nil {
		return se.Err.Error()
	}
	var re *pipeline.RetryableError
	if errors.As(err, &re) && re.Err != nil {
		return re.Err.Error()
	}
	return err.Error()
}

// maxMessageProblems is how many problems the Ready message lists.
const maxMessageProblems = 3

// failureMessage is the Ready message of a failure: the step, the
// revision and the first problems as file:line:column: message.
func failureMessage(f *meshv1.Failure, err error) string {
	if f == nil {
		return relPaths(err.Error())
	}
	var lines []string
	for i, p := range f.Problems {
		if i == maxMessageProblems {
			break
		}
		lines = append(lines, problemText(p))
	}
	more := len(f.Problems) - len(lines) + int(f.Truncated)
	msg := fmt.Sprintf("%s failed for revision %s: %s", f.Step, f.Revision, strings.Join(lines, "; "))
	if more > 0 {
		msg += fmt.Sprintf(" (and %d more: kubectl get mesh -o yaml shows status.failure)", more)
	}
	return msg
}

// problemText is "file:line:column: path: message".
func problemText(p meshv1.Problem) string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
			if p.Column > 0 {
				fmt.Fprintf(&b, ":%d", p.Column)
			}
		}
		b.WriteString(": ")
	}
	if p.Path != "" && !strings.HasPrefix(p.Message, p.Path) {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// rolloutFailure is the status.failure of a revision a proxy rejected.
func rolloutFailure(a *status.Attempt, pos func(string) string) *meshv1.Failure {
	f := &meshv1.Failure{Revision: a.Revision, Step: meshv1.StepRollout}
	if n := a.NACK; n != nil {
		p := meshv1.Problem{Message: nackReason(n)}
		if n.Provenance != nil {
			p.File, p.Line = relate(pos, n.Provenance.File), int32(n.Provenance.Line)
			if n.Provenance.Service != "" {
				p.Path = "mesh.services." + n.Provenance.Service
			}
		}
		f.Problems = []meshv1.Problem{p}
	}
	return f
}

// rolloutMessage is the Ready message of a revision a proxy rejected.
func rolloutMessage(a *status.Attempt, pos func(string) string) string {
	back := "nothing was applied before: the proxies are held until a revision is accepted"
	if a.RolledBackTo != "" {
		back = "every proxy was rolled back to " + a.RolledBackTo
	}
	n := a.NACK
	if n == nil {
		return fmt.Sprintf("revision %s was rejected by a proxy (%s); %s", a.Revision, a.Error, back)
	}
	where := ""
	if n.Provenance != nil && n.Provenance.File != "" {
		where = fmt.Sprintf(" (defined at %s:%d)", relate(pos, n.Provenance.File), n.Provenance.Line)
	}
	res := ""
	if n.Resource != "" {
		res = " " + n.Resource
	}
	return fmt.Sprintf("revision %s was rejected by proxy %s: %s%s%s: %s; %s",
		a.Revision, n.NodeID, shortType(n.TypeURL), res, where, nackReason(n), back)
}

// relate names a provenance file with pos (nil: as it is, artifact
// paths rewritten).
func relate(pos func(string) string, file string) string {
	if pos == nil {
		return relPaths(file)
	}
	return pos(file)
}

func nackReason(n *status.NACK) string {
	if n.Reason != "" {
		return n.Reason
	}
	return n.Message
}

// shortType is the last part of a type URL ("Listener").
func shortType(t string) string { return t[strings.LastIndex(t, ".")+1:] }

// proxiesStatus counts the proxies and keeps their last NACKs.
func proxiesStatus(st status.Status, pos func(string) string) *meshv1.ProxiesStatus {
	connected, inSync, nacking := st.ProxyCounts()
	p := &meshv1.ProxiesStatus{}
	p.SetCounts(int32(connected), int32(inSync), int32(nacking))
	type nack struct {
		p status.Proxy
		n *status.NACK
	}
	var ns []nack
	for _, pr := range st.Proxies {
		if pr.Connected && pr.LastNACK != nil {
			ns = append(ns, nack{pr, pr.LastNACK})
		}
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i].n.At.After(ns[j].n.At) })
	for i, x := range ns {
		if i == meshv1.MaxNACKs {
			break
		}
		pn := meshv1.ProxyNACK{Proxy: x.p.NodeID, Class: x.p.Class, Version: x.n.Version, TypeURL: x.n.TypeURL,
			Resource: x.n.Resource, Message: cutMessage(x.n.Message)}
		if x.n.Provenance != nil {
			pn.File, pn.Line = relate(pos, x.n.Provenance.File), int32(x.n.Provenance.Line)
		}
		p.NACKs = append(p.NACKs, pn)
	}
	return p
}

// cutMessage keeps a NACK message within what a status should hold.
func cutMessage(s string) string {
	const max = 1024
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// SnapshotVersion identifies the configuration of a revision:
// "<revision>/<12 hex>", the hash over every class's snapshot version
// (each "<revision>/<hash>"), so that it changes exactly when what some
// proxy receives changes.
func SnapshotVersion(rev string, res *compiler.Result) string {
	if res == nil {
		return ""
	}
	h := sha256.New()
	for _, c := range res.Classes {
		fmt.Fprintf(h, "%s=%s\n", c.Name, c.SnapshotVersion)
	}
	return rev + "/" + hex.EncodeToString(h.Sum(nil))[:12]
}

// conditionOrUnknown is obj's condition t, or an Unknown one (for the
// metrics of an absent abnormal-true condition: False).
func conditionOrUnknown(obj *meshv1.Mesh, t string) metav1.Condition {
	if c := conditions.Get(obj, t); c != nil {
		return *c
	}
	return metav1.Condition{Type: t, Status: metav1.ConditionFalse}
}

// objectRef is obj as the Flux metrics name it.
func objectRef(obj *meshv1.Mesh) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: meshv1.MeshKind, Namespace: obj.Namespace, Name: obj.Name}
}
