package controller_test

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	"google.golang.org/protobuf/proto"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/compiler"
	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/controller"
	"github.com/weft-dev/weft/reconciler/meshctl"
	"github.com/weft-dev/weft/reconciler/xds"
)

// nackRevision is the revision whose frontend route the test hook
// breaks (a regex Envoy cannot compile) after every check of weft: a
// NACK a real Envoy sends, which weft's gate would otherwise prevent.
var nackRevision atomic.Value // string

func breakFrontendRoute(rev string, res *compiler.Result) *compiler.Result {
	if v, _ := nackRevision.Load().(string); v != rev {
		return res
	}
	out := &compiler.Result{}
	for _, c := range res.Classes {
		if c.Name == "frontend-v1" {
			cp := *c
			cp.SnapshotVersion += "-broken"
			cp.Resources = map[resource.Type][]types.Resource{}
			for t, rs := range c.Resources {
				cp.Resources[t] = rs
			}
			var rs []types.Resource
			for _, r := range c.Resources[resource.RouteType] {
				rc := r.(*routev3.RouteConfiguration)
				if strings.HasPrefix(rc.Name, "outbound") && len(rc.VirtualHosts) > 0 && len(rc.VirtualHosts[0].Routes) > 0 {
					rc = proto.Clone(rc).(*routev3.RouteConfiguration)
					rc.VirtualHosts[0].Routes[0].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(unclosed"}}
				}
				rs = append(rs, rc)
			}
			cp.Resources[resource.RouteType] = rs
			c = &cp
		}
		out.Classes = append(out.Classes, c)
	}
	return out
}

// TestMeshLifecycle: a revision a real Envoy rejects (Ready=False,
// ProxyRejected, rolled back, with the file:line of the route), `weft
// reconcile mesh --with-source` and requestedAt, `weft get meshes` and
// `weft status` against the cluster, suspend and resume, a second Mesh
// (not served: Stalled, OtherMeshServed) and the deletion of the first
// (finalizer: its NetworkPolicies deleted, the Envoy keeps its
// configuration; the second is served once resumed).
func TestMeshLifecycle(t *testing.T) {
	p := startPlane(t, controller.Options{Components: []controller.Component{{Name: "test-nack", XDS: func(o *xds.Options) error {
		o.TestOnlyBeforePublish = breakFrontendRoute
		return nil
	}}}})
	rev1 := p.commit(fixture{route: "one"}.files(), "first")
	p.gitRepository(rev1)
	if err := p.c.Create(p.ctx, newMesh("shop")); err != nil {
		t.Fatal(err)
	}
	m := p.waitMesh("shop", "Ready with the first revision", ready(rev1))
	if len(m.Finalizers) != 1 || m.Finalizers[0] != meshv1.Finalizer {
		t.Errorf("finalizers %v, want %s", m.Finalizers, meshv1.Finalizer)
	}
	frontend := p.startEnvoy("frontend-1", "frontend-v1", false)
	p.waitXDS("the Envoy ACKs the first revision", acked(rev1, frontend.id))
	kube := meshctl.KubeFlags{Kubeconfig: p.env.Kubeconfig, Namespace: controlNS}
	cli, ns, err := kube.Client()
	if err != nil || ns != controlNS {
		t.Fatalf("client from %s: %v (namespace %q)", p.env.Kubeconfig, err, ns)
	}

	t.Run("ProxyRejected", func(t *testing.T) {
		nackRevision.Store("")
		bad := fixture{route: "nack"}.files()
		rev := p.commit(bad, "Envoy rejects this")
		nackRevision.Store(rev)
		p.fetch()
		m := p.waitMesh("shop", "Ready=False, ProxyRejected, a rollout failure", func(m *meshv1.Mesh) bool {
			// The status and its conditions are two patches: wait for both.
			return stalled(rev, meshv1.ProxyRejectedReason)(m) && m.Status.Failure != nil
		})
		msg := conditions.GetMessage(m, meta.ReadyCondition)
		for _, want := range []string{"was rejected by proxy frontend-1", "RouteConfiguration", "mesh/mesh.cue:", "every proxy was rolled back to " + rev1} {
			if !strings.Contains(msg, want) {
				t.Errorf("Ready message %q: want %q in it", msg, want)
			}
		}
		if m.Status.LastAppliedRevision != rev1 || m.Status.Failure == nil || m.Status.Failure.Step != meshv1.StepRollout {
			t.Errorf("applied %q failure %+v: want %s applied and a rollout failure", m.Status.LastAppliedRevision, m.Status.Failure, rev1)
		}
		p.waitMesh("shop", "the NACK in status.proxies", func(m *meshv1.Mesh) bool {
			ps := m.Status.Proxies
			return ps != nil && len(ps.NACKs) == 1 && ps.NACKs[0].Proxy == "frontend-1" && ps.NACKs[0].File == "mesh/mesh.cue"
		})
		p.waitXDS("the Envoy is back on the first revision", acked(rev1, frontend.id))

		var out bytes.Buffer
		err := meshctl.ReconcileMesh(p.ctx, cli, client.ObjectKey{Namespace: controlNS, Name: "shop"}, meshctl.ReconcileOptions{Poll: 50 * time.Millisecond, Timeout: time.Minute}, &out)
		if err == nil || !strings.Contains(err.Error(), "ProxyRejected") {
			t.Errorf("weft reconcile mesh on a rejected revision: %v, want the ProxyRejected failure\n%s", err, out.String())
		}
		matchLines(t, "weft reconcile mesh (rejected)", out.String(), `► annotating Mesh shop in weft-system namespace
✔ Mesh annotated
◎ waiting for Mesh reconciliation
✗ Mesh reconciliation failed: ProxyRejected: revision main@sha1:[0-9a-f]{40} was rejected by proxy frontend-1: RouteConfiguration .*`)
	})

	var rev2 string
	t.Run("ReconcileWithSource", func(t *testing.T) {
		rev2 = p.commit(fixture{route: "two"}.files(), "fixed")
		var out bytes.Buffer
		err := meshctl.ReconcileMesh(p.ctx, cli, client.ObjectKey{Namespace: controlNS, Name: "shop"},
			meshctl.ReconcileOptions{WithSource: true, Poll: 50 * time.Millisecond, Timeout: 2 * time.Minute}, &out)
		if err != nil {
			t.Fatalf("weft reconcile mesh --with-source: %v\n%s", err, out.String())
		}
		matchLines(t, "weft reconcile mesh --with-source", out.String(), `► annotating GitRepository shop in weft-system namespace
✔ GitRepository annotated
◎ waiting for GitRepository reconciliation
✔ fetched revision `+regexp.QuoteMeta(rev2)+`
► annotating Mesh shop in weft-system namespace
✔ Mesh annotated
◎ waiting for Mesh reconciliation
✔ applied revision `+regexp.QuoteMeta(rev2))
		m := p.mesh("shop")
		if v, _ := meta.ReconcileAnnotationValue(m.Annotations); v == "" || m.Status.LastHandledReconcileAt != v {
			t.Errorf("requestedAt %q, lastHandledReconcileAt %q: want the request handled", v, m.Status.LastHandledReconcileAt)
		}
		p.waitXDS("the Envoy ACKs the fix", acked(rev2, frontend.id))
	})

	t.Run("Timeout", func(t *testing.T) {
		m := p.mesh("shop")
		base := m.DeepCopy()
		m.Spec.Timeout = &metav1.Duration{Duration: time.Millisecond}
		if err := p.c.Patch(p.ctx, m, client.MergeFrom(base)); err != nil {
			t.Fatal(err)
		}
		m = p.waitMesh("shop", "over spec.timeout: retried", func(m *meshv1.Mesh) bool {
			return m.Status.ObservedGeneration == m.Generation && conditions.IsFalse(m, meta.ReadyCondition) &&
				conditions.GetReason(m, meta.ReadyCondition) == meta.ReconciliationFailedReason && conditions.IsReconciling(m)
		})
		if msg := conditions.GetMessage(m, meta.ReadyCondition); !strings.Contains(msg, "did not finish within the revision time limit of 1ms (the Mesh's spec.timeout)") ||
			m.Status.LastAppliedRevision != rev2 || conditions.IsStalled(m) {
			t.Errorf("Ready message %q, applied %q, stalled %v: want the time limit named, %s still applied, retried", msg, m.Status.LastAppliedRevision, conditions.IsStalled(m), rev2)
		}
		base = m.DeepCopy()
		m.Spec.Timeout = nil
		if err := p.c.Patch(p.ctx, m, client.MergeFrom(base)); err != nil {
			t.Fatal(err)
		}
		p.waitMesh("shop", "Ready again with the default time limit", ready(rev2))
	})

	t.Run("GetAndStatus", func(t *testing.T) {
		var out bytes.Buffer
		if err := meshctl.GetMeshes(p.ctx, cli, controlNS, false, &out); err != nil {
			t.Fatal(err)
		}
		short := meshctl.ShortRevision(rev2)
		matchLines(t, "weft get meshes", out.String(), `NAME  REVISION +SUSPENDED  READY  MESSAGE
shop  `+regexp.QuoteMeta(short)+`  False +True   Applied revision: `+regexp.QuoteMeta(rev2))
		out.Reset()
		if err := meshctl.Status(p.ctx, cli, controlNS, "shop", time.Now(), &out); err != nil {
			t.Fatal(err)
		}
		matchLines(t, "weft status --namespace weft-system shop", out.String(), `Mesh weft-system/shop: GitRepository/weft-system/shop, path ./mesh, environment dev
  Ready: +True Succeeded \(\d+s ago\): Applied revision: `+regexp.QuoteMeta(rev2)+`
  applied: +`+regexp.QuoteMeta(rev2)+`
  snapshot: +`+regexp.QuoteMeta(rev2)+`/[0-9a-f]{12}
  proxies: +1 connected, 1 in sync, 0 NACKing
    NACK frontend-1 \(frontend-v1\) of RouteConfiguration outbound\S* \(mesh/mesh.cue:\d+\): .*`)
	})

	var rev3 string
	t.Run("Suspend", func(t *testing.T) {
		setSuspend(t, p, "shop", true)
		skipped := metricValue(t, p.scrape(), `weft_mesh_reconciles_total{result="skipped"}`)
		rev3 = p.commit(fixture{route: "three"}.files(), "while suspended")
		p.fetch()
		p.sc.WaitForArtifact(p.t, client.ObjectKey{Namespace: controlNS, Name: "shop"}, rev3, time.Minute)
		deadline := time.Now().Add(30 * time.Second)
		for metricValue(t, p.scrape(), `weft_mesh_reconciles_total{result="skipped"}`) <= skipped {
			if time.Now().After(deadline) {
				t.Fatal("the new artifact did not reach the suspended Mesh's reconciler")
			}
			time.Sleep(50 * time.Millisecond)
		}
		m := p.mesh("shop")
		if m.Status.LastAttemptedRevision != rev2 || p.ctrl.XDS.Status().Revision != rev2 {
			t.Errorf("suspended Mesh attempted %q, serving %q: want %s", m.Status.LastAttemptedRevision, p.ctrl.XDS.Status().Revision, rev2)
		}
		var out bytes.Buffer
		_ = meshctl.GetMeshes(p.ctx, cli, controlNS, false, &out)
		if !regexp.MustCompile(`(?m)^shop +\S+ +True +True`).MatchString(out.String()) {
			t.Errorf("weft get meshes does not show SUSPENDED True:\n%s", out.String())
		}
		if err := meshctl.ReconcileMesh(p.ctx, cli, client.ObjectKey{Namespace: controlNS, Name: "shop"}, meshctl.ReconcileOptions{}, &out); err == nil || !strings.Contains(err.Error(), "is suspended") {
			t.Errorf("weft reconcile mesh on a suspended Mesh: %v, want a refusal", err)
		}
		setSuspend(t, p, "shop", false)
		p.waitMesh("shop", "Ready with the commit made while suspended", ready(rev3))
		p.waitXDS("the Envoy ACKs it", acked(rev3, frontend.id))
	})

	t.Run("OneMeshPerControlPlane", func(t *testing.T) {
		if err := p.c.Create(p.ctx, newMesh("other")); err != nil {
			t.Fatal(err)
		}
		m := p.waitMesh("other", "Stalled: another Mesh is served", stalled("", meshv1.OtherMeshServedReason))
		if msg := conditions.GetMessage(m, meta.ReadyCondition); !strings.Contains(msg, "weft-system/shop (the oldest) is served") {
			t.Errorf("Ready message %q: want the served Mesh named", msg)
		}
		if p.ctrl.XDS.Status().Revision != rev3 {
			t.Errorf("serving %q, want shop's %s", p.ctrl.XDS.Status().Revision, rev3)
		}
		setSuspend(t, p, "other", true)
	})

	t.Run("Delete", func(t *testing.T) {
		if networkPolicies(t, p) == "" {
			t.Fatal("no NetworkPolicies before the deletion")
		}
		before := p.ctrl.XDS.Status()
		if err := p.c.Delete(p.ctx, p.mesh("shop")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := p.c.Get(p.ctx, client.ObjectKey{Namespace: controlNS, Name: "shop"}, &meshv1.Mesh{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Mesh shop not gone after 30s: %v\n%s", err, describeMesh(p.mesh("shop")))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := networkPolicies(t, p); got != "" {
			t.Errorf("NetworkPolicies %q after the deletion, want none", got)
		}
		after := p.ctrl.XDS.Status()
		if !acked(rev3, frontend.id)(after) || after.Revision != rev3 {
			t.Errorf("the Envoy should keep its configuration:\n%s", describeStatus(after))
		}
		for i := range after.Proxies {
			if after.Proxies[i].ConnectedSince != before.Proxies[i].ConnectedSince {
				t.Errorf("proxy %s reconnected", after.Proxies[i].NodeID)
			}
		}
		setSuspend(t, p, "other", false)
		p.waitMesh("other", "the second Mesh is served", ready(rev3))
		if got := networkPolicies(t, p); got != "shop/weft-frontend shop/weft-reviews" {
			t.Errorf("NetworkPolicies %q, want the second Mesh's", got)
		}
	})
}

// setSuspend sets spec.suspend of Mesh name.
func setSuspend(t *testing.T, p *plane, name string, suspend bool) {
	t.Helper()
	m := p.mesh(name)
	base := m.DeepCopy()
	m.Spec.Suspend = suspend
	if err := p.c.Patch(p.ctx, m, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
}

// matchLines checks out line by line against the regular expressions of
// want (one per line, anchored).
func matchLines(t *testing.T, what, out, want string) {
	t.Helper()
	got := strings.Split(strings.TrimRight(out, "\n"), "\n")
	ws := strings.Split(want, "\n")
	if len(got) != len(ws) {
		t.Errorf("%s: %d lines, want %d:\n%s", what, len(got), len(ws), out)
		return
	}
	for i, w := range ws {
		if !regexp.MustCompile("^" + w + "$").MatchString(got[i]) {
			t.Errorf("%s: line %d\n  %q\ndoes not match\n  %q\nwhole output:\n%s", what, i+1, got[i], w, out)
		}
	}
}

// metricValue is the value of the series name{labels} in a scrape.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in the scrape", series)
	return 0
}

var _ = context.Background
