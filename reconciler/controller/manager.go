package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/fluxcd/pkg/runtime/events"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/weft-dev/weft/compiler"
	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/pipeline/source/flux"
	"github.com/weft-dev/weft/reconciler/xds"
)

// Scheme is the scheme of the controller's clients: client-go's kinds,
// Mesh and Flux's source.toolkit.fluxcd.io/v1.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(meshv1.AddToScheme(s))
	utilruntime.Must(sourcev1.AddToScheme(s))
	return s
}

// Controller is `weft controller`: a controller-runtime manager running
// the Mesh reconciler, the xDS server every replica serves, the metrics
// endpoint, and the Components.
type Controller struct {
	Manager    manager.Manager
	XDS        *xds.Server
	Reconciler *MeshReconciler

	opts               Options
	xdsLn, metricsLn   net.Listener
	serving            atomic.Bool
	changes            chan event.GenericEvent
	sourceKindsWatched []string
	sourceKindsSkipped []string
	// podRef is the ownerReference of this replica's proxies report
	// (proxies.go), once podLooked; refreshOnChange's goroutine only.
	podRef    *metav1.OwnerReference
	podLooked bool
}

// New builds the control plane on cfg's cluster: it listens on the
// metrics address and, without Options.Serve, on the xDS address (so that
// Addr and MetricsAddr are known before Start); it makes the manager, the
// xDS server (Options.Serve's, else a plain one) with the components'
// options, the reconciler and its watches, and sets the components up.
func New(cfg *rest.Config, o Options) (*Controller, error) {
	o = o.withDefaults()
	c := &Controller{opts: o, changes: make(chan event.GenericEvent, 1)}
	var err error
	if o.Serve == nil {
		if c.xdsLn, err = net.Listen("tcp", o.XDSAddress); err != nil {
			return nil, fmt.Errorf("xDS server: %w", err)
		}
	}
	ok := false
	defer func() {
		if !ok {
			c.closeListeners()
		}
	}()
	if o.MetricsAddress != "0" {
		if c.metricsLn, err = net.Listen("tcp", o.MetricsAddress); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	var m *metrics
	xo := xds.Options{Logger: o.Logger}
	for _, comp := range o.Components {
		if comp.XDS != nil {
			if err := comp.XDS(&xo); err != nil {
				return nil, fmt.Errorf("component %s: xDS options: %w", comp.Name, err)
			}
		}
	}
	// The metrics read the server's status, and the server's gRPC
	// options count pushes: make the metrics first, on a status func
	// that reads the server once it exists.
	var srv atomic.Pointer[xds.Server]
	if m, err = newMetrics(o.Metrics, func() (st status.Status) {
		if s := srv.Load(); s != nil {
			return s.Status()
		}
		return st
	}); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	xo.GRPCOptions = append(xo.GRPCOptions, m.serverOptions()...)

	if c.Manager, err = c.newManager(cfg); err != nil {
		return nil, err
	}
	sv, err := c.serve(xo)
	if err != nil {
		return nil, err
	}
	c.XDS = sv.XDS
	srv.Store(c.XDS)
	if err := c.setupReconciler(m, sv); err != nil {
		return nil, err
	}
	if err := c.addRunnables(); err != nil {
		return nil, err
	}
	rt := &Runtime{Manager: c.Manager, XDS: c.XDS, Metrics: o.Metrics, Namespace: o.Namespace,
		Served: c.Reconciler.Served, Logger: o.Logger}
	for _, comp := range o.Components {
		if comp.Setup != nil {
			if err := comp.Setup(rt); err != nil {
				return nil, fmt.Errorf("component %s: %w", comp.Name, err)
			}
		}
	}
	ok = true
	return c, nil
}

// newManager makes the manager: leader election as configured,
// controller-runtime's metrics server off (Controller serves its own,
// with controller-runtime's registry in it), health probes on.
func (c *Controller) newManager(cfg *rest.Config) (manager.Manager, error) {
	o := c.opts
	mo := manager.Options{
		Scheme:                        Scheme(),
		Logger:                        logr.FromSlogHandler(o.Logger.Handler()),
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        o.HealthAddress,
		LeaderElection:                o.LeaderElection.Enabled,
		LeaderElectionID:              o.LeaderElection.ID,
		LeaderElectionNamespace:       o.LeaderElection.Namespace,
		LeaderElectionReleaseOnCancel: true,
	}
	// The cache holds the replicas' proxies reports only, of the
	// controller's namespace (its Role grants no more).
	mo.Cache.ByObject = map[client.Object]cache.ByObject{&corev1.ConfigMap{}: {
		Namespaces: map[string]cache.Config{o.Namespace: {}},
		Label:      labels.SelectorFromSet(labels.Set{ProxiesLabel: "true"}),
	}}
	if o.Manager != nil {
		o.Manager(&mo)
	}
	mgr, err := manager.New(cfg, mo)
	if err != nil {
		return nil, fmt.Errorf("controller manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if o.Serve != nil {
		return mgr, nil // the serving side has its own readiness check
	}
	if err := mgr.AddReadyzCheck("xds", func(*http.Request) error {
		if !c.serving.Load() {
			return errors.New("the xDS server is not serving yet")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return mgr, nil
}

// serve makes the serving side: Options.Serve's, else a plain xDS server
// with xo that addRunnables serves on the xDS listener.
func (c *Controller) serve(xo xds.Options) (Serving, error) {
	if c.opts.Serve == nil {
		return Serving{XDS: xds.New(xo)}, nil
	}
	sv, err := c.opts.Serve(c.Manager, xo)
	if err != nil {
		return Serving{}, fmt.Errorf("serving: %w", err)
	}
	if sv == nil || sv.XDS == nil {
		return Serving{}, errors.New("serving: Options.Serve made no xDS server")
	}
	return *sv, nil
}

// setupReconciler makes the Mesh reconciler, with the serving side's
// hooks, and registers its watches.
func (c *Controller) setupReconciler(m *metrics, sv Serving) error {
	o := c.opts
	eps := sv.Endpoints
	for _, comp := range o.Components {
		if comp.Endpoints != nil {
			if eps != nil {
				return fmt.Errorf("component %s: another component or the serving side already gives the endpoints", comp.Name)
			}
			eps = comp.Endpoints
		}
	}
	rec, err := events.NewRecorder(logr.FromSlogHandler(o.Logger.Handler()), o.EventsAddress, ControllerName, events.WithManager(c.Manager))
	if err != nil {
		return fmt.Errorf("events recorder: %w", err)
	}
	c.Reconciler = &MeshReconciler{
		Client:          c.Manager.GetClient(),
		APIReader:       c.Manager.GetAPIReader(),
		XDS:             c.XDS,
		Publisher:       sv.Publisher,
		Check:           sv.Check,
		Gate:            &pipeline.Gate{Limits: o.Limits},
		Limits:          o.Limits,
		Fetcher:         flux.NewFetcher(o.Artifacts),
		Endpoints:       eps,
		NetworkPolicies: compiler.NetworkPolicyOptions{ControlPlaneNamespace: o.Namespace},
		Namespace:       o.Namespace,
		PodName:         o.PodName,
		StatusInterval:  o.StatusInterval,
		Events:          rec,
		Leader:          c.isLeader,
		Log:             o.Logger,
		metrics:         m,
	}
	return c.watch()
}

// isLeader reports whether this replica won the election (always true
// without leader election).
func (c *Controller) isLeader() bool {
	select {
	case <-c.Manager.Elected():
		return true
	default:
		return false
	}
}

// installed reports whether the API server serves kind of
// source.toolkit.fluxcd.io/v1.
func (c *Controller) installed(kind string) bool {
	_, err := c.Manager.GetRESTMapper().RESTMapping(schema.GroupKind{Group: sourcev1.GroupVersion.Group, Kind: kind}, sourcev1.GroupVersion.Version)
	return err == nil
}

// addRunnables adds the plain xDS server (without Options.Serve), the
// metrics endpoint and the status refresher, which run on every replica,
// and the requeue of every Mesh when this replica is elected.
func (c *Controller) addRunnables() error {
	rs := []manager.Runnable{everyReplica(c.refreshOnChange), onElected(c.requeueAll)}
	if c.xdsLn != nil {
		rs = append(rs, everyReplica(func(ctx context.Context) error {
			errc := make(chan error, 1)
			go func() { errc <- c.XDS.Serve(c.xdsLn) }()
			c.serving.Store(true)
			select {
			case <-ctx.Done():
				c.XDS.Stop()
				return nil
			case err := <-errc:
				return fmt.Errorf("xDS server: %w", err)
			}
		}))
	}
	if c.metricsLn != nil {
		rs = append(rs, everyReplica(func(ctx context.Context) error {
			mux := http.NewServeMux()
			mux.Handle("/metrics", metricsHandler(c.opts.Metrics))
			hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = hs.Shutdown(sctx)
			}()
			if err := hs.Serve(c.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics: %w", err)
			}
			return nil
		}))
	}
	for _, r := range rs {
		if err := c.Manager.Add(r); err != nil {
			return err
		}
	}
	return nil
}

// Start runs everything until ctx ends.
func (c *Controller) Start(ctx context.Context) error {
	for _, k := range c.sourceKindsSkipped {
		c.opts.Logger.Warn("Flux source kind not installed: Meshes referring to it wait for it", "kind", k)
	}
	return c.Manager.Start(ctx)
}

// Addr is the plain xDS server's address ("" with Options.Serve: the
// serving side listens); MetricsAddr the metrics endpoint's ("" when
// off).
func (c *Controller) Addr() string {
	if c.xdsLn == nil {
		return ""
	}
	return c.xdsLn.Addr().String()
}

func (c *Controller) MetricsAddr() string {
	if c.metricsLn == nil {
		return ""
	}
	return c.metricsLn.Addr().String()
}

func (c *Controller) closeListeners() {
	for _, ln := range []net.Listener{c.xdsLn, c.metricsLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// everyReplica is a runnable that runs whether or not this replica
// leads.
type everyReplica func(ctx context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (everyReplica) NeedLeaderElection() bool          { return false }

var _ manager.LeaderElectionRunnable = everyReplica(nil)

// onElected is a runnable that the manager starts once this replica is
// elected (at once without leader election).
type onElected func(ctx context.Context) error

func (f onElected) Start(ctx context.Context) error { return f(ctx) }
func (onElected) NeedLeaderElection() bool          { return true }
