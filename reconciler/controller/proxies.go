package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/api/status"
)

// Every replica serves xDS, but only the leader writes the Mesh's
// status: each replica with a pod name (Options.PodName) reports the
// proxies connected to it in a ConfigMap of the controller's namespace,
// and the leader counts its own proxies (from its live server) together
// with the other replicas' reports.
const (
	// ProxiesLabel (value "true") marks the proxies reports; the
	// manager's cache holds only those ConfigMaps, of the controller's
	// namespace.
	ProxiesLabel = "mesh.weft.dev/proxies"
	// ProxiesKey is the report's data key of the proxies: a JSON array of
	// status.Proxy (the connected ones, trimmed to what the Mesh's status
	// reads); ProxiesUpdatedKey the RFC 3339 time it was written.
	ProxiesKey        = "proxies.json"
	ProxiesUpdatedKey = "updatedAt"
	// proxiesHeartbeat is how often a replica rewrites its report when
	// nothing changed, so that the leader can tell a live report from
	// the one of a replica that went away (staleAfter).
	proxiesHeartbeat = 10 * time.Second
	// maxReportBytes keeps a report well within a ConfigMap's 1 MiB.
	maxReportBytes = 900 << 10
)

// ProxiesReportName is the ConfigMap of pod's report: "weft-proxies-<pod>".
func ProxiesReportName(pod string) string { return "weft-proxies-" + pod }

// staleAfter is the age past which the leader ignores a report: the
// replica missed three status intervals and the heartbeat.
func staleAfter(statusInterval time.Duration) time.Duration {
	return 3*statusInterval + 30*time.Second
}

// reportProxies writes this replica's report (nothing without a pod
// name). Its failure is logged: the leader then ignores the report once
// it is stale, as before this replica reported.
func (c *Controller) reportProxies(ctx context.Context) {
	pod := c.opts.PodName
	if pod == "" {
		return
	}
	cm, err := proxiesReport(c.opts.Namespace, pod, c.XDS.Status().Proxies, time.Now())
	if err != nil {
		c.opts.Logger.Error("reporting this replica's proxies", "configMap", c.opts.Namespace+"/"+ProxiesReportName(pod), "error", err)
		return
	}
	if ref := c.podOwner(ctx); ref != nil {
		cm.OwnerReferences = []metav1.OwnerReference{*ref}
	}
	if err := c.Manager.GetClient().Patch(ctx, cm, client.Apply, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil && ctx.Err() == nil {
		c.opts.Logger.Warn("reporting this replica's proxies", "configMap", cm.Namespace+"/"+cm.Name, "error", err)
	}
}

// podOwner is the ownerReference to this replica's pod, looked up once
// with the API reader (nil when the pod cannot be read: the report then
// outlives the pod until it is stale).
func (c *Controller) podOwner(ctx context.Context) *metav1.OwnerReference {
	if c.podLooked {
		return c.podRef
	}
	pod := &corev1.Pod{}
	err := c.Manager.GetAPIReader().Get(ctx, client.ObjectKey{Namespace: c.opts.Namespace, Name: c.opts.PodName}, pod)
	switch {
	case err == nil:
		c.podRef = &metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}
	case ctx.Err() != nil:
		return nil // stopping: look again next time
	default:
		c.opts.Logger.Info("this replica's pod cannot be read: its proxies report is not owned by it", "pod", c.opts.Namespace+"/"+c.opts.PodName, "error", err)
	}
	c.podLooked = true
	return c.podRef
}

// proxiesReport is the ConfigMap reporting proxies (their connected ones)
// as at now. The NACK messages are cut as the Mesh's status cuts them,
// and left out if the report would not fit in a ConfigMap.
func proxiesReport(ns, pod string, proxies []status.Proxy, now time.Time) (*corev1.ConfigMap, error) {
	ps := make([]status.Proxy, 0, len(proxies))
	for _, p := range proxies {
		if p.Connected {
			ps = append(ps, reported(p))
		}
	}
	b, err := json.Marshal(ps)
	if err == nil && len(b) > maxReportBytes {
		for i := range ps {
			if ps[i].LastNACK != nil {
				ps[i].LastNACK.Message = ""
			}
		}
		b, err = json.Marshal(ps)
	}
	if err != nil {
		return nil, err
	}
	if len(b) > maxReportBytes {
		return nil, fmt.Errorf("%d proxies take %d bytes, more than a ConfigMap holds (%d)", len(ps), len(b), maxReportBytes)
	}
	return &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ProxiesReportName(pod),
			Labels: map[string]string{ProxiesLabel: "true", compiler.ManagedByLabel: compiler.ManagedBy}},
		Data: map[string]string{ProxiesKey: string(b), ProxiesUpdatedKey: now.UTC().Format(time.RFC3339Nano)},
	}, nil
}

// reported is p with only what the Mesh's status reads (proxiesStatus)
// and what tells its connections apart (dedupeProxies).
func reported(p status.Proxy) status.Proxy {
	r := status.Proxy{NodeID: p.NodeID, Class: p.Class, Connected: p.Connected, ConnectedSince: p.ConnectedSince,
		DisconnectedAt: p.DisconnectedAt, Version: p.Version, AckedVersion: p.AckedVersion, InSync: p.InSync}
	if n := p.LastNACK; n != nil {
		cp := *n
		cp.Message = cutMessage(cp.Message)
		r.LastNACK = &cp
	}
	return r
}

// withReplicas is st with the proxies of the other replicas' live
// reports added (the leader's; a follower's st is returned as it is, it
// does not write). A proxy known to several replicas (it reconnected)
// counts once, as its latest connection or disconnection says.
func (r *MeshReconciler) withReplicas(ctx context.Context, st status.Status) status.Status {
	if !r.leader() {
		return st
	}
	var list corev1.ConfigMapList
	if err := r.List(ctx, &list, client.InNamespace(r.Namespace), client.MatchingLabels{ProxiesLabel: "true"}); err != nil {
		r.Log.Warn("listing the other replicas' proxies: the status counts this replica's only", "error", err)
		return st
	}
	proxies := append([]status.Proxy(nil), st.Proxies...)
	now := time.Now()
	for i := range list.Items {
		cm := &list.Items[i]
		if r.PodName != "" && cm.Name == ProxiesReportName(r.PodName) {
			continue // this replica's proxies are its live server's
		}
		ps, err := liveReport(cm, now, staleAfter(r.StatusInterval))
		if err != nil {
			r.Log.Debug("proxies report not counted", "configMap", cm.Namespace+"/"+cm.Name, "reason", err)
			continue
		}
		if !r.ownerExists(ctx, cm) {
			continue
		}
		proxies = append(proxies, ps...)
	}
	st.Proxies = dedupeProxies(proxies)
	return st
}

// liveReport is the proxies of report cm, or why they do not count: it
// cannot be read, or it is older than stale at now.
func liveReport(cm *corev1.ConfigMap, now time.Time, stale time.Duration) ([]status.Proxy, error) {
	at, err := time.Parse(time.RFC3339Nano, cm.Data[ProxiesUpdatedKey])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ProxiesUpdatedKey, err)
	}
	if age := now.Sub(at); age > stale {
		return nil, fmt.Errorf("stale: written %s ago, more than %s", age.Round(time.Second), stale)
	}
	var ps []status.Proxy
	if err := json.Unmarshal([]byte(cm.Data[ProxiesKey]), &ps); err != nil {
		return nil, fmt.Errorf("%s: %w", ProxiesKey, err)
	}
	return ps, nil
}

// ownerExists reports whether the pod owning report cm still exists (a
// report without a pod owner: true). An error other than NotFound
// counts the report: it goes stale anyway if its replica is gone.
func (r *MeshReconciler) ownerExists(ctx context.Context, cm *corev1.ConfigMap) bool {
	for _, o := range cm.OwnerReferences {
		if o.Kind != "Pod" || o.APIVersion != "v1" {
			continue
		}
		pod := &corev1.Pod{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: cm.Namespace, Name: o.Name}, pod)
		if apierrors.IsNotFound(err) || (err == nil && pod.UID != o.UID) {
			return false
		}
	}
	return true
}

// dedupeProxies keeps one entry per node id: the one whose connection or
// disconnection is the latest (connected on a tie), sorted by node id.
func dedupeProxies(ps []status.Proxy) []status.Proxy {
	latest := map[string]status.Proxy{}
	for _, p := range ps {
		q, ok := latest[p.NodeID]
		if !ok || newer(p, q) {
			latest[p.NodeID] = p
		}
	}
	out := make([]status.Proxy, 0, len(latest))
	for _, p := range latest {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

// newer reports whether p is a later state of its node than q.
func newer(p, q status.Proxy) bool {
	pt, qt := lastSeen(p), lastSeen(q)
	if !pt.Equal(qt) {
		return pt.After(qt)
	}
	return p.Connected && !q.Connected
}

// lastSeen is when p connected or, disconnected, when it disconnected.
func lastSeen(p status.Proxy) time.Time {
	if p.Connected || p.DisconnectedAt.Before(p.ConnectedSince) {
		return p.ConnectedSince
	}
	return p.DisconnectedAt
}

// servedRequest maps another replica's report, written or deleted, to
// the served Mesh: the leader counts the proxies again.
func (r *MeshReconciler) servedRequest(context.Context, client.Object) []reconcile.Request {
	if key, ok := r.servedKey(); ok {
		return []reconcile.Request{{NamespacedName: types.NamespacedName(key)}}
	}
	return nil
}

// otherReports passes the reports of the other replicas in ns.
func otherReports(ns, pod string) predicate.Predicate {
	own := ""
	if pod != "" {
		own = ProxiesReportName(pod)
	}
	return predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == ns && o.GetLabels()[ProxiesLabel] == "true" && o.GetName() != own
	})
}
