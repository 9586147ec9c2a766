package endpoints

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/kube/workload"
	"github.com/weft-dev/weft/schema/mesh"
)

// Server is what the Feed publishes to: the xDS server (*xds.Server).
type Server interface {
	// Publish serves a revision's compiled result (see xds.Server).
	Publish(rev string, res *compiler.Result) error
	// RecordFailure records a failed attempt at a step before publish.
	RecordFailure(rev, step string, err error)
	// Revision is the revision served (after a rollback, the one rolled
	// back to); AppliedRevision the one a rollback would go back to.
	Revision() string
	AppliedRevision() string
	// Changed is closed at the next change of the server's status.
	Changed() <-chan struct{}
}

// DefaultDebounce is Options.Debounce's default.
const DefaultDebounce = 100 * time.Millisecond

// Options configure a Feed.
type Options struct {
	// Debounce is the quiet window after a change before the endpoints
	// are recomputed: the changes of a burst are one update (default
	// 100ms).
	Debounce time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the Feed's metrics (nil: none); the controller
	// gives controller-runtime's metrics.Registry.
	Registerer prometheus.Registerer
}

// Excluded is an endpoint of a service's EndpointSlices that the Feed
// left out, and why.
type Excluded struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Pod       string `json:"pod,omitempty"`
	Address   string `json:"address"`
	Reason    string `json:"reason"`
}

// Stats count the Feed's work since it was made.
type Stats struct {
	// Computed counts endpoint computations (each publish, each update).
	Computed int
	// Updates counts the results published because endpoints changed
	// (compiler.WithEndpoints on the served revision), not counting
	// those the pipeline published.
	Updates int
	// Unchanged counts the updates skipped: the endpoints were the ones
	// served.
	Unchanged int
	// Endpoints is the number of endpoints served, all services and
	// versions.
	Endpoints int
}

// maxBases bounds the revisions whose model the Feed keeps (the
// pipeline's Republish serves one of its last 4).
const maxBases = 6

// base is a revision the pipeline published through the Feed.
type base struct {
	rev   string
	model *mesh.Model
	// res is the result last published for rev (with the endpoints of
	// the time): WithEndpoints rebuilds from it, and the classes an
	// endpoint change does not touch stay the objects the server has.
	// It is dropped (nil) once the server can no longer serve rev (it is
	// neither served nor the applied revision a rollback returns to): a
	// compiled 1,000-service mesh is ~55 MB.
	res *compiler.Result
}

// Feed turns EndpointSlices and pods into the endpoints of the served
// mesh; see the package documentation. It is the pipeline's Publisher
// and Endpoints hook, and a manager.Runnable that every replica runs.
type Feed struct {
	informers cache.Informers
	srv       Server
	opts      Options
	log       *slog.Logger
	kick      chan struct{}
	metrics   *metrics

	pubMu sync.Mutex // serializes publishing: the pipeline's and updates

	mu         sync.Mutex
	pending    *mesh.Model // the model of the last Endpoints call
	bases      []*base     // oldest first
	servedRev  string      // what the Feed last published
	servedEps  compiler.Endpoints
	excluded   []Excluded
	namespaces map[string]bool // of the models kept: events elsewhere do not wake the Feed
	stats      Stats
	firstEvent time.Time // of the burst being debounced

	// The index of what the informers hold, kept from their events: the
	// objects themselves (the informers' copies, never modified), so that
	// an update reads them without listing (a List copies every item).
	idx    sync.RWMutex
	pods   map[types.NamespacedName]*corev1.Pod
	slices map[string]map[string]map[string]*discoveryv1.EndpointSlice // namespace -> service -> slice name
	synced chan struct{}                                               // closed once both informers' events are indexed
}

// New makes a Feed that watches EndpointSlices and pods through informers
// (the manager's cache: mgr.GetCache()) and publishes to srv. Run it with
// Start (mgr.Add); Endpoints and Publish wait until it has indexed what
// the informers hold.
func New(informers cache.Informers, srv Server, opts Options) (*Feed, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &Feed{informers: informers, srv: srv, opts: opts, log: opts.Logger, kick: make(chan struct{}, 1),
		pods:   map[types.NamespacedName]*corev1.Pod{},
		slices: map[string]map[string]map[string]*discoveryv1.EndpointSlice{},
		synced: make(chan struct{})}
	if opts.Registerer != nil {
		m, err := newMetrics(opts.Registerer)
		if err != nil {
			return nil, err
		}
		f.metrics = m
	}
	return f, nil
}

// Endpoints is the pipeline's Endpoints hook: the cluster's current
// endpoints of m's services. It remembers m as the model of the revision
// the pipeline publishes next.
func (f *Feed) Endpoints(m *mesh.Model) (compiler.Endpoints, error) {
	eps, _, err := f.compute(context.Background(), m)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.pending = m
	f.mu.Unlock()
	return eps, nil
}

// Publish is the pipeline's Publisher: it serves revision rev with the
// cluster's current endpoints (compiler.WithEndpoints on res) and keeps
// res to rebuild when endpoints change. The revision's model is the one
// the Endpoints hook was last given (or, for a revision published before,
// its model). Failures are recorded on the server as step "publish".
func (f *Feed) Publish(rev string, res *compiler.Result) error {
	f.pubMu.Lock()
	defer f.pubMu.Unlock()
	m := f.modelFor(rev)
	if m == nil {
		err := fmt.Errorf("publish: the endpoints feed has no model of revision %s (the pipeline's Endpoints hook must be Feed.Endpoints)", rev)
		f.srv.RecordFailure(rev, status.StepPublish, err)
		return err
	}
	eps, excl, err := f.compute(context.Background(), m)
	if err == nil {
		res, err = withEndpoints(res, eps)
	}
	if err != nil {
		f.srv.RecordFailure(rev, status.StepPublish, err)
		return err
	}
	if err := f.srv.Publish(rev, res); err != nil {
		return err
	}
	f.mu.Lock()
	f.remember(&base{rev: rev, model: m, res: res})
	f.pending = nil
	f.served(rev, eps, excl)
	f.mu.Unlock()
	return nil
}

// withEndpoints is compiler.WithEndpoints, saying where the error comes
// from.
func withEndpoints(res *compiler.Result, eps compiler.Endpoints) (*compiler.Result, error) {
	out, err := compiler.WithEndpoints(res, eps)
	if err != nil {
		return nil, fmt.Errorf("endpoints: %w", err)
	}
	return out, nil
}

// RecordFailure passes a failure before publish on to the server.
func (f *Feed) RecordFailure(rev, step string, err error) { f.srv.RecordFailure(rev, step, err) }

// Model is the definition of the revision the server serves (nil if the
// Feed did not publish it, or before the first).
func (f *Feed) Model() *mesh.Model {
	rev := f.srv.Revision()
	f.mu.Lock()
	defer f.mu.Unlock()
	if b := f.base(rev); b != nil {
		return b.model
	}
	return nil
}

// Excluded lists the endpoints left out of the served revision, sorted.
func (f *Feed) Excluded() []Excluded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.excluded)
}

// Stats are the Feed's counters.
func (f *Feed) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// NeedLeaderElection reports false: every replica serves endpoints.
func (f *Feed) NeedLeaderElection() bool { return false }

// Start watches EndpointSlices, pods and the server until ctx ends,
// updating the served endpoints after each burst of changes.
func (f *Feed) Start(ctx context.Context) error {
	sliceReg, err := f.watch(ctx, &discoveryv1.EndpointSlice{}, f.onSlice())
	if err != nil {
		return err
	}
	podReg, err := f.watch(ctx, &corev1.Pod{}, f.onPod())
	if err != nil {
		return err
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), sliceReg.HasSynced, podReg.HasSynced) {
		return nil // ctx ended
	}
	close(f.synced)
	go f.followServer(ctx)
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case <-f.kick:
			if fire == nil {
				timer = time.NewTimer(f.opts.Debounce)
				fire = timer.C
			}
		case <-fire:
			fire, timer = nil, nil
			f.update(ctx)
		}
	}
}

// watch adds an event handler to the informer of obj's kind.
func (f *Feed) watch(ctx context.Context, obj client.Object, h toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	inf, err := f.informers.GetInformer(ctx, obj)
	if err != nil {
		return nil, fmt.Errorf("endpoints: informer of %T: %w", obj, err)
	}
	reg, err := inf.AddEventHandler(h)
	if err != nil {
		return nil, fmt.Errorf("endpoints: informer of %T: %w", obj, err)
	}
	return reg, nil
}

// waitSynced waits until Start has indexed the informers' objects.
func (f *Feed) waitSynced(ctx context.Context) error {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case <-f.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("endpoints: the EndpointSlice and pod informers have not synced within a minute (is the Feed started?)")
	}
}

// onSlice indexes EndpointSlices and wakes the Feed on any change of one
// in a namespace of the mesh.
func (f *Feed) onSlice() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { f.putSlice(obj, false) },
		UpdateFunc: func(_, obj any) { f.putSlice(obj, false) },
		DeleteFunc: func(obj any) { f.putSlice(obj, true) },
	}
}

func (f *Feed) putSlice(obj any, deleted bool) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj, deleted = d.Obj, true
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	svc := s.Labels[discoveryv1.LabelServiceName]
	f.idx.Lock()
	byService := f.slices[s.Namespace]
	if byService == nil {
		byService = map[string]map[string]*discoveryv1.EndpointSlice{}
		f.slices[s.Namespace] = byService
	}
	// A slice's service label could change: drop it wherever it was.
	for name, byName := range byService {
		if _, ok := byName[s.Name]; ok && name != svc {
			delete(byName, s.Name)
		}
	}
	if svc != "" {
		if byService[svc] == nil {
			byService[svc] = map[string]*discoveryv1.EndpointSlice{}
		}
		if deleted {
			delete(byService[svc], s.Name)
		} else {
			byService[svc][s.Name] = s
		}
	}
	f.idx.Unlock()
	f.changedIn(s)
}

// onPod indexes pods and wakes the Feed when a pod of a namespace of the
// mesh appears, goes or changes its labels (its version) or service
// account; readiness reaches the Feed through the EndpointSlices.
func (f *Feed) onPod() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { f.putPod(obj, false) },
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*corev1.Pod)
			n, ok2 := obj.(*corev1.Pod)
			if !ok1 || !ok2 || !maps.Equal(o.Labels, n.Labels) || o.Spec.ServiceAccountName != n.Spec.ServiceAccountName {
				f.putPod(obj, false)
				return
			}
			f.idx.Lock()
			f.pods[types.NamespacedName{Namespace: n.Namespace, Name: n.Name}] = n
			f.idx.Unlock()
		},
		DeleteFunc: func(obj any) { f.putPod(obj, true) },
	}
}

func (f *Feed) putPod(obj any, deleted bool) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj, deleted = d.Obj, true
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
	f.idx.Lock()
	if deleted {
		delete(f.pods, key)
	} else {
		f.pods[key] = p
	}
	f.idx.Unlock()
	f.changedIn(p)
}

// changedIn wakes the Feed for an event about obj in a namespace of the
// mesh.
func (f *Feed) changedIn(obj client.Object) {
	f.mu.Lock()
	in := f.namespaces[obj.GetNamespace()]
	f.mu.Unlock()
	if in {
		f.changed()
	}
}

// changed records a relevant event and wakes the loop.
func (f *Feed) changed() {
	f.mu.Lock()
	if f.firstEvent.IsZero() {
		f.firstEvent = time.Now()
	}
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// followServer wakes the Feed when the server serves another revision
// than the Feed last published (a rollback).
func (f *Feed) followServer(ctx context.Context) {
	for {
		ch := f.srv.Changed()
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
		rev := f.srv.Revision()
		f.mu.Lock()
		b := f.base(rev)
		other := rev != "" && rev != f.servedRev && b != nil && b.res != nil
		if !other {
			f.prune() // a rollout applied: the previous fallback can go
		}
		f.mu.Unlock()
		if other {
			f.changed()
		}
	}
}

// update publishes the served revision with the current endpoints, if
// they changed.
func (f *Feed) update(ctx context.Context) {
	f.pubMu.Lock()
	defer f.pubMu.Unlock()
	f.mu.Lock()
	first := f.firstEvent
	f.firstEvent = time.Time{}
	rev := f.srv.Revision()
	b := f.base(rev)
	if b != nil && b.res == nil {
		b = nil
	}
	f.mu.Unlock()
	if b == nil {
		return // nothing served yet, or not through the Feed
	}
	eps, excl, err := f.compute(ctx, b.model)
	if err != nil {
		f.log.Error("computing endpoints", "revision", rev, "error", err)
		f.retryLater(ctx)
		return
	}
	f.mu.Lock()
	same := f.servedRev == rev && reflect.DeepEqual(f.servedEps, eps)
	if same {
		f.stats.Unchanged++
		f.served(rev, eps, excl)
	}
	f.mu.Unlock()
	if same {
		return
	}
	res, err := withEndpoints(b.res, eps)
	if err == nil {
		err = f.srv.Publish(rev, res)
	}
	if err != nil {
		f.log.Error("publishing new endpoints", "revision", rev, "error", err)
		f.retryLater(ctx)
		return
	}
	f.mu.Lock()
	f.stats.Updates++
	b.res = res
	f.served(rev, eps, excl)
	f.mu.Unlock()
	if f.metrics != nil {
		f.metrics.updates.Inc()
		if !first.IsZero() {
			f.metrics.latency.Observe(time.Since(first).Seconds())
		}
	}
	f.log.Debug("endpoints updated", "revision", rev, "endpoints", count(eps), "since", time.Since(first))
}

// retryLater wakes the Feed again after a second (a failed update).
func (f *Feed) retryLater(ctx context.Context) {
	t := time.NewTimer(time.Second)
	go func() {
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
			f.changed()
		}
	}()
}

// served records what was published and reports exclusions that are
// new; f.mu is held.
func (f *Feed) served(rev string, eps compiler.Endpoints, excl []Excluded) {
	f.servedRev, f.servedEps = rev, eps
	f.stats.Endpoints = count(eps)
	var fresh []Excluded
	for _, e := range excl {
		if !slices.Contains(f.excluded, e) {
			fresh = append(fresh, e)
		}
	}
	f.excluded = excl
	for _, e := range fresh {
		f.log.Warn("endpoint left out of the mesh", "namespace", e.Namespace, "service", e.Service, "pod", e.Pod, "address", e.Address, "reason", e.Reason)
	}
	if f.metrics != nil {
		f.metrics.endpoints.Set(float64(count(eps)))
		f.metrics.excluded.Set(float64(len(excl)))
	}
}

// remember keeps b as the newest base; f.mu is held.
func (f *Feed) remember(b *base) {
	f.bases = slices.DeleteFunc(f.bases, func(o *base) bool { return o.rev == b.rev })
	f.bases = append(f.bases, b)
	if len(f.bases) > maxBases {
		f.bases = f.bases[len(f.bases)-maxBases:]
	}
	f.namespaces = map[string]bool{}
	for _, b := range f.bases {
		for _, s := range b.model.Services {
			f.namespaces[s.Namespace] = true
		}
	}
	f.prune()
}

// prune drops the results of the revisions the server can no longer
// serve; f.mu is held.
func (f *Feed) prune() {
	served, applied := f.srv.Revision(), f.srv.AppliedRevision()
	for _, b := range f.bases {
		if b.rev != served && b.rev != applied {
			b.res = nil
		}
	}
}

// base is the kept revision rev, or nil; f.mu is held.
func (f *Feed) base(rev string) *base {
	for i := len(f.bases) - 1; i >= 0; i-- {
		if f.bases[i].rev == rev {
			return f.bases[i]
		}
	}
	return nil
}

// modelFor is the model of revision rev: the one given to Endpoints for
// it, else the kept one.
func (f *Feed) modelFor(rev string) *mesh.Model {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending != nil && (f.pending.Revision == rev || f.pending.Revision == "") {
		return f.pending
	}
	if b := f.base(rev); b != nil {
		return b.model
	}
	return f.pending
}

// compute is the endpoints of m's services from the cache, and the
// endpoints left out.
func (f *Feed) compute(ctx context.Context, m *mesh.Model) (compiler.Endpoints, []Excluded, error) {
	if m == nil {
		return nil, nil, errors.New("endpoints: no model")
	}
	if err := f.waitSynced(ctx); err != nil {
		return nil, nil, err
	}
	eps := compiler.Endpoints{}
	byNamespace := map[string][]*mesh.Service{}
	for _, name := range m.ServiceNames() {
		s := m.Services[name]
		eps[name] = map[string][]compiler.Address{}
		byNamespace[s.Namespace] = append(byNamespace[s.Namespace], s)
	}
	var excluded []Excluded
	f.idx.RLock()
	for _, ns := range mesh.SortedKeys(byNamespace) {
		excluded = append(excluded, f.namespace(ns, byNamespace[ns], eps)...)
	}
	f.idx.RUnlock()
	for _, versions := range eps {
		for v, addrs := range versions {
			versions[v] = sortAddresses(addrs)
		}
	}
	sort.Slice(excluded, func(i, j int) bool {
		a, b := excluded[i], excluded[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Address < b.Address
	})
	f.mu.Lock()
	f.stats.Computed++
	f.mu.Unlock()
	return eps, excluded, nil
}

// namespace adds the endpoints of the services of one namespace to eps;
// f.idx is held.
func (f *Feed) namespace(ns string, svcs []*mesh.Service, eps compiler.Endpoints) []Excluded {
	var excluded []Excluded
	for _, svc := range svcs {
		seen := map[string]bool{}
		byName := f.slices[ns][svc.Name]
		for _, name := range mesh.SortedKeys(byName) {
			s := byName[name]
			for _, e := range s.Endpoints {
				addr, pod, reason := f.endpoint(svc, s, e)
				switch {
				case reason != "":
					excluded = append(excluded, Excluded{Namespace: ns, Service: svc.Name, Pod: pod, Address: e.Addresses[0], Reason: reason})
				case addr.host != "" && !seen[addr.host]:
					seen[addr.host] = true
					eps[svc.Name][addr.version] = append(eps[svc.Name][addr.version], compiler.Address{Host: addr.host})
				}
			}
		}
	}
	return excluded
}

// address is an endpoint the Feed serves: host (empty: not ready, left
// out silently) of version.
type address struct{ host, version string }

// endpoint judges one endpoint of service svc's slice s: the address to
// serve (host "": none), or why it is left out (and its pod); f.idx is
// held.
func (f *Feed) endpoint(svc *mesh.Service, s *discoveryv1.EndpointSlice, e discoveryv1.Endpoint) (a address, pod, reason string) {
	if e.Conditions.Ready != nil && !*e.Conditions.Ready || len(e.Addresses) == 0 {
		return address{}, "", ""
	}
	if s.AddressType == discoveryv1.AddressTypeFQDN {
		return address{}, "", fmt.Sprintf("EndpointSlice %s has FQDN endpoints: only IPv4 and IPv6 addresses are served over EDS", s.Name)
	}
	if e.TargetRef == nil || e.TargetRef.Kind != "Pod" {
		return address{}, "", "the endpoint names no pod, so its version cannot be told"
	}
	p := f.pods[types.NamespacedName{Namespace: s.Namespace, Name: e.TargetRef.Name}]
	if p == nil {
		return address{}, e.TargetRef.Name, "its pod is not known yet"
	}
	v, err := workload.Version(svc, p.Labels)
	if err != nil {
		return address{}, p.Name, err.Error()
	}
	if svc.MTLS != mesh.MTLSDisable && workload.ServiceAccount(p) != svc.ServiceAccount {
		return address{}, p.Name, fmt.Sprintf("the pod runs as service account %s, not %s: callers would refuse its certificate", workload.ServiceAccount(p), svc.ServiceAccount)
	}
	return address{host: e.Addresses[0], version: v}, "", ""
}

func sortAddresses(a []compiler.Address) []compiler.Address {
	sort.Slice(a, func(i, j int) bool { return a[i].Host < a[j].Host })
	return a
}

// count is the number of endpoints in eps.
func count(eps compiler.Endpoints) int {
	n := 0
	for _, versions := range eps {
		for _, addrs := range versions {
			n += len(addrs)
		}
	}
	return n
}
