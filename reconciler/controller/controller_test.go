package controller_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/compiler"
	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/controller"
)

func ready(rev string) func(*meshv1.Mesh) bool {
	return func(m *meshv1.Mesh) bool {
		return conditions.IsReady(m) && m.Status.LastAppliedRevision == rev && m.Status.ObservedGeneration == m.Generation
	}
}

// stalled is a Mesh that stalled on revision rev with reason.
func stalled(rev, reason string) func(*meshv1.Mesh) bool {
	return func(m *meshv1.Mesh) bool {
		return conditions.IsFalse(m, meta.ReadyCondition) && conditions.IsStalled(m) &&
			conditions.GetReason(m, meta.ReadyCondition) == reason && m.Status.LastAttemptedRevision == rev
	}
}

// TestGitOpsFlow is the flow on real components: a real
// kube-apiserver + etcd, Flux's source-controller fetching from a real
// git server, `weft controller` in-process, and two real Envoys (SotW
// and delta) connected to its xDS server.
//
//   - a commit becomes a GitRepository artifact, the Mesh becomes Ready
//     with it as lastAppliedRevision, the Envoys ACK it; the time from
//     the push (+ requestedAt on the GitRepository) to both ACKs is
//     logged;
//   - a commit with a CUE error, then one with a policy deny: Ready=False,
//     Stalled, the reason and file:line in the message and in
//     status.failure, lastAppliedRevision unchanged, the Envoys still
//     hold the last good revision; a fixing commit is Ready again;
//   - the NetworkPolicies of the services exist, and the one of a service
//     that a commit removes is pruned;
//   - events with Flux's annotations; metrics from the metrics endpoint.
func TestGitOpsFlow(t *testing.T) {
	p := startPlane(t, controller.Options{})
	rev1 := p.commit(fixture{route: "one", ratings: true}.files(), "first")
	// The Mesh first: its source does not exist yet, which is retried
	// (spec.retryInterval) until the GitRepository's artifact arrives,
	// through the watch of the source.
	if err := p.c.Create(p.ctx, newMesh("shop")); err != nil {
		t.Fatal(err)
	}
	m := p.waitMesh("shop", "waiting for its source", func(m *meshv1.Mesh) bool {
		return conditions.IsFalse(m, meta.ReadyCondition) && conditions.GetReason(m, meta.ReadyCondition) == meta.ArtifactFailedReason &&
			conditions.IsReconciling(m) && !conditions.IsStalled(m)
	})
	if msg := conditions.GetMessage(m, meta.ReadyCondition); msg != "Source 'GitRepository/weft-system/shop' not found" {
		t.Errorf("Ready message %q", msg)
	}
	p.gitRepository(rev1)
	m = p.waitMesh("shop", "Ready with the first revision", ready(rev1))
	if !strings.HasPrefix(m.Status.SnapshotVersion, rev1+"/") || conditions.GetMessage(m, meta.ReadyCondition) != "Applied revision: "+rev1 {
		t.Errorf("snapshot %q, Ready message %q", m.Status.SnapshotVersion, conditions.GetMessage(m, meta.ReadyCondition))
	}
	frontend := p.startEnvoy("frontend-1", "frontend-v1", false)
	reviews := p.startEnvoy("reviews-1", "reviews-v1", true)
	p.waitXDS("both Envoys ACK the first revision", acked(rev1, frontend.id, reviews.id))
	p.waitMesh("shop", "2/2 proxies in sync", func(m *meshv1.Mesh) bool {
		return m.Status.Proxies != nil && m.Status.Proxies.Summary == "2/2"
	})

	t.Run("NetworkPolicies", func(t *testing.T) {
		got := networkPolicies(t, p)
		if want := "shop/weft-frontend shop/weft-ratings shop/weft-reviews"; got != want {
			t.Fatalf("NetworkPolicies %q, want %q", got, want)
		}
		var np networkingv1.NetworkPolicy
		if err := p.c.Get(p.ctx, client.ObjectKey{Namespace: meshNS, Name: "weft-reviews"}, &np); err != nil {
			t.Fatal(err)
		}
		if np.Labels[controller.OwnerNameLabel] != "shop" || np.Labels[compiler.MeshLabel] != "shop" {
			t.Errorf("labels %v: want the owner and the mesh", np.Labels)
		}
		managers := []string{}
		for _, f := range np.ManagedFields {
			managers = append(managers, f.Manager+"/"+string(f.Operation))
		}
		if strings.Join(managers, ",") != "weft/Apply" {
			t.Errorf("managed fields %v: want one server-side apply by weft", managers)
		}
	})

	var rev2 string
	t.Run("CommitToACK", func(t *testing.T) {
		pushed := time.Now()
		rev2 = p.commit(fixture{route: "two", ratings: true}.files(), "route two")
		p.fetch()
		p.waitXDS("both Envoys ACK the second revision", acked(rev2, frontend.id, reviews.id))
		took := time.Since(pushed)
		t.Logf("commit pushed + requestedAt on the GitRepository -> both Envoys ACKed %s: %s", rev2, took.Round(time.Millisecond))
		p.waitMesh("shop", "Ready with the second revision", ready(rev2))
		if dump := frontend.configDump(t, "dynamic_route_configs"); !strings.Contains(dump, `"two"`) || strings.Contains(dump, `"one"`) {
			t.Errorf("frontend's route configuration does not set x-mesh-route two:\n%s", dump)
		}
	})

	t.Run("CUEErrorStalls", func(t *testing.T) {
		bad := p.commit(fixture{route: "bad", ratings: true, broken: true}.files(), "a CUE error")
		p.fetch()
		m := p.waitMesh("shop", "Stalled on the CUE error", func(m *meshv1.Mesh) bool {
			return stalled(bad, meshv1.LoadFailedReason)(m) && m.Status.Failure != nil && m.Status.Failure.Revision == bad
		})
		msg := conditions.GetMessage(m, meta.ReadyCondition)
		want := fmt.Sprintf("load failed for revision %s: mesh/mesh.cue:%d:", bad, brokenLine)
		if !strings.HasPrefix(msg, want) || !strings.Contains(msg, "mesh.services.frontend.ports.http.port") {
			t.Errorf("Ready message %q, want it to start with %q and name the field", msg, want)
		}
		if m.Status.LastAppliedRevision != rev2 || conditions.IsReconciling(m) {
			t.Errorf("applied %q, reconciling %v: want %s still applied, not reconciling", m.Status.LastAppliedRevision, conditions.IsReconciling(m), rev2)
		}
		f := m.Status.Failure
		if f == nil || f.Step != meshv1.StepLoad || f.Revision != bad || len(f.Problems) == 0 || f.Problems[0].File != "mesh/mesh.cue" || f.Problems[0].Line != brokenLine {
			t.Errorf("failure %+v: want step load at mesh/mesh.cue:%d", f, brokenLine)
		}
		st := p.ctrl.XDS.Status()
		if !acked(rev2, frontend.id, reviews.id)(st) || st.Revision != rev2 {
			t.Errorf("the Envoys should still hold %s:\n%s", rev2, describeStatus(st))
		}
	})

	t.Run("PolicyDenyStalls", func(t *testing.T) {
		denied := p.commit(fixture{route: "retry", ratings: true, retries: 9}.files(), "9 retries")
		p.fetch()
		m := p.waitMesh("shop", "Stalled on the policy deny", func(m *meshv1.Mesh) bool {
			return stalled(denied, meshv1.PolicyDeniedReason)(m) && m.Status.Failure != nil && m.Status.Failure.Revision == denied
		})
		msg := conditions.GetMessage(m, meta.ReadyCondition)
		if !regexp.MustCompile(`^vet failed for revision \S+: mesh/mesh\.cue:2[0-9]:\d+: .*retry_budget: route "all" of service reviews retries 9 times, more than 5`).MatchString(msg) {
			t.Errorf("Ready message %q: want the retry_budget deny at mesh/mesh.cue:line", msg)
		}
		if m.Status.LastAppliedRevision != rev2 || m.Status.Failure == nil || m.Status.Failure.Problems[0].Fix == "" {
			t.Errorf("applied %q failure %+v: want %s still applied and the deny's fix", m.Status.LastAppliedRevision, m.Status.Failure, rev2)
		}
		if !acked(rev2, frontend.id, reviews.id)(p.ctrl.XDS.Status()) {
			t.Errorf("the Envoys should still hold %s", rev2)
		}
		// The organisation's rule of spec.policies denies too.
		org := p.commit(fixture{route: "forbidden", ratings: true}.files(), "a forbidden route")
		p.fetch()
		m = p.waitMesh("shop", "Stalled on the organisation's rule", func(m *meshv1.Mesh) bool {
			return stalled(org, meshv1.PolicyDeniedReason)(m) && m.Status.Failure != nil && m.Status.Failure.Revision == org
		})
		if msg := conditions.GetMessage(m, meta.ReadyCondition); !regexp.MustCompile(`mesh/mesh\.cue:\d+:\d+: .*no_forbidden_route: the reviews route may not set x-mesh-route to "forbidden"`).MatchString(msg) {
			t.Errorf("Ready message %q: want the rule of spec.policies at mesh/mesh.cue:line", msg)
		}
	})

	var rev3 string
	t.Run("FixAndPrune", func(t *testing.T) {
		rev3 = p.commit(fixture{route: "three"}.files(), "fixed; ratings removed")
		p.fetch()
		p.waitXDS("both Envoys ACK the fix", acked(rev3, frontend.id, reviews.id))
		m := p.waitMesh("shop", "Ready with the fix", ready(rev3))
		if m.Status.Failure != nil || conditions.IsStalled(m) {
			t.Errorf("failure %+v stalled %v after the fix", m.Status.Failure, conditions.IsStalled(m))
		}
		deadline := time.Now().Add(30 * time.Second)
		for networkPolicies(t, p) != "shop/weft-frontend shop/weft-reviews" {
			if time.Now().After(deadline) {
				t.Fatalf("NetworkPolicies %q: weft-ratings not pruned", networkPolicies(t, p))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("Events", func(t *testing.T) {
		var evs corev1.EventList
		if err := p.c.List(p.ctx, &evs, client.InNamespace(controlNS)); err != nil {
			t.Fatal(err)
		}
		seen := map[string]string{} // reason -> revision annotation
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == meshv1.MeshKind && e.InvolvedObject.Name == "shop" {
				seen[e.Reason+"/"+e.Annotations[controller.RevisionAnnotation]] = e.Annotations[controller.TokenAnnotation]
			}
		}
		for _, want := range []string{meta.ReconciliationSucceededReason + "/" + rev1, meta.ReconciliationSucceededReason + "/" + rev3,
			meshv1.LoadFailedReason + "/", meshv1.PolicyDeniedReason + "/"} {
			found := false
			for k := range seen {
				if strings.HasPrefix(k, want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no event %s (reason/revision annotation); events: %v", want, seen)
			}
		}
		if tok := seen[meta.ReconciliationSucceededReason+"/"+rev3]; !strings.HasPrefix(tok, rev3+"/") {
			t.Errorf("token of the success event %q: want the snapshot version", tok)
		}
	})

	t.Run("Metrics", func(t *testing.T) {
		body := p.scrape()
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`(?m)^gotk_reconcile_duration_seconds_count\{kind="Mesh",name="shop",namespace="weft-system"\} [1-9]`),
			regexp.MustCompile(`(?m)^gotk_reconcile_condition\{kind="Mesh",name="shop",namespace="weft-system",status="True",type="Ready"\} 1`),
			regexp.MustCompile(`(?m)^weft_served_revision_info\{revision="` + regexp.QuoteMeta(rev3) + `"\} 1`),
			regexp.MustCompile(`(?m)^weft_xds_proxies\{state="in_sync"\} 2`),
			regexp.MustCompile(`(?m)^weft_revisions_failed_total\{step="load"\} 1`),
			regexp.MustCompile(`(?m)^weft_revisions_failed_total\{step="vet"\} 2`),
			regexp.MustCompile(`(?m)^weft_mesh_reconciles_total\{result="applied"\} [1-9]`),
			regexp.MustCompile(`(?m)^weft_xds_pushes_total\{type="type.googleapis.com/envoy.config.listener.v3.Listener"\} [1-9]`),
			regexp.MustCompile(`(?m)^controller_runtime_reconcile_total\{controller="mesh",result="success"\} [1-9]`),
		} {
			if !want.MatchString(body) {
				t.Errorf("/metrics has no line matching %s", want)
			}
		}
	})
}

// networkPolicies lists the NetworkPolicies weft manages, sorted.
func networkPolicies(t *testing.T, p *plane) string {
	t.Helper()
	var list networkingv1.NetworkPolicyList
	if err := p.c.List(p.ctx, &list, client.MatchingLabels{compiler.ManagedByLabel: compiler.ManagedBy}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, np := range list.Items {
		names = append(names, np.Namespace+"/"+np.Name)
	}
	return strings.Join(names, " ")
}

var _ = apierrors.IsNotFound
var _ status.Status
