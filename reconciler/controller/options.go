package controller

import (
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/pipeline/source/flux"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema/mesh"
)

// Defaults of Options, as environments/deploy's manifest sets them.
const (
	DefaultXDSAddress       = ":15010"
	DefaultMetricsAddress   = ":8080"
	DefaultHealthAddress    = ":9440"
	DefaultLeaderElectionID = "weft-controller-leader"
	// FieldManager is the field manager of what the controller applies
	// (server-side apply) and of its status patches.
	FieldManager = "weft"
	// ControllerName reports the controller's events.
	ControllerName = "weft-controller"
)

// Options configure a Controller. BindFlags registers them as the flags
// of `weft controller` (the contract with environments/deploy).
type Options struct {
	// XDSAddress is where the xDS server listens (--xds-address).
	XDSAddress string
	// MetricsAddress serves /metrics ("0" disables it)
	// (--metrics-bind-address); HealthAddress /healthz and /readyz
	// (--health-probe-bind-address).
	MetricsAddress, HealthAddress string
	// LeaderElection elects the replica that writes (--leader-elect,
	// --leader-election-id, --leader-election-namespace).
	LeaderElection LeaderElection
	// Namespace is the controller's own namespace ($POD_NAMESPACE): the
	// NetworkPolicies let its pods reach the proxies' agents.
	Namespace string
	// PodName is this replica's pod ($POD_NAME, --pod-name), in
	// Namespace. When set, the replica reports the proxies connected to
	// it in the ConfigMap ProxiesReportName(PodName) (proxies.go), and
	// the leader counts the other replicas' reports in the Mesh's
	// status. "" (tests, local runs): no report; the other replicas'
	// reports are still counted by the leader.
	PodName string
	// EventsAddress is Flux's notification-controller events endpoint
	// (--events-addr; "" records Kubernetes events only).
	EventsAddress string
	// Limits bound each revision (--max-file-size, --max-source-size,
	// --revision-timeout); a Mesh's spec.timeout replaces the time limit.
	Limits pipeline.Limits
	// Artifacts bound each artifact download (--artifact-*).
	Artifacts flux.Options
	// StatusInterval is the least time between two refreshes of the
	// served Mesh's status caused by proxies connecting, ACKing or
	// NACKing (--status-interval).
	StatusInterval time.Duration
	// Logger logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics is the registry weft's metrics and the components' are
	// registered on (nil: a new one); /metrics serves it together with
	// controller-runtime's (see metrics.go).
	Metrics *prometheus.Registry
	// Components are the optional parts added by other packages.
	Components []Component
	// Manager changes the manager's options before it is made (tests:
	// SkipNameValidation; a component's cache options).
	Manager func(*manager.Options)
	// Serve, when set, makes the serving side of the control plane on
	// the manager: the one xDS server every replica serves, with the
	// pipeline's hooks in front of it (Serving). It is given the xDS
	// options the controller and the Components chose (the Logger, the
	// metrics' gRPC interceptors, the Components' XDS changes); it
	// listens and serves the server itself (a runnable of the manager),
	// so New listens on no xDS address and adds no "xds" readiness check.
	// `weft controller` always sets it (package reconciler/kube/serving:
	// mTLS with the mesh CA, streams bound to pods, EndpointSlices as
	// EDS). nil: New makes a plain xDS server (no TLS, no authorizer) on
	// XDSAddress — for tests of the reconciler only.
	Serve func(mgr manager.Manager, xo xds.Options) (*Serving, error)
}

// Serving is the serving side that Options.Serve makes.
type Serving struct {
	// XDS is the xDS server every replica serves: the reconciler reads
	// the proxies' status from it (Ready, proxies, NACKs) and follows its
	// changes (Changed).
	XDS *xds.Server
	// Publisher is the pipeline's Publisher, which publishes to XDS
	// (nil: XDS itself). The EndpointSlice feed stands here, so that
	// endpoint changes reach the same server without a new revision.
	Publisher pipeline.Publisher
	// Endpoints gives the endpoints each revision is compiled with
	// (nil: the definition's static ones, or a Component's). Its error
	// fails the revision retryably.
	Endpoints func(*mesh.Model) (compiler.Endpoints, error)
	// Check runs on each revision's model right after load (the trust
	// domain the mesh CA signs for); its error stalls the revision at
	// the vet step.
	Check func(*mesh.Model) error
}

// LeaderElection are the manager's leader-election options.
type LeaderElection struct {
	Enabled   bool
	ID        string
	Namespace string
}

// BindFlags registers o's flags on fs with their defaults (Flux's style:
// the flags are bound next to their options type).
func (o *Options) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.XDSAddress, "xds-address", DefaultXDSAddress, "address of the xDS server (ADS, SotW and delta; mTLS once the mesh CA's root is loaded)")
	fs.StringVar(&o.MetricsAddress, "metrics-bind-address", DefaultMetricsAddress, `address of /metrics ("0" disables it)`)
	fs.StringVar(&o.HealthAddress, "health-probe-bind-address", DefaultHealthAddress, "address of /healthz and /readyz")
	fs.BoolVar(&o.LeaderElection.Enabled, "leader-elect", false, "elect a leader among the replicas: only it writes status, events and NetworkPolicies (every replica serves xDS)")
	fs.StringVar(&o.LeaderElection.ID, "leader-election-id", DefaultLeaderElectionID, "name of the leader-election Lease")
	fs.StringVar(&o.LeaderElection.Namespace, "leader-election-namespace", "", "namespace of the Lease (default: --namespace)")
	fs.StringVar(&o.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the controller's own namespace (default $POD_NAMESPACE, else weft-system)")
	fs.StringVar(&o.PodName, "pod-name", os.Getenv("POD_NAME"), "this replica's pod (default $POD_NAME): it reports its proxies in the ConfigMap weft-proxies-<pod> so that the leader counts every replica's in the Mesh's status")
	fs.StringVar(&o.EventsAddress, "events-addr", "", "Flux notification-controller's events endpoint, e.g. http://notification-controller.flux-system.svc.cluster.local./")
	fs.DurationVar(&o.StatusInterval, "status-interval", time.Second, "least time between two status updates caused by proxies (ACKs, NACKs, connections)")
	o.Limits.BindFlags(fs)
	o.Artifacts.BindFlags(fs)
}

// withDefaults fills in o's zero fields.
func (o Options) withDefaults() Options {
	if o.XDSAddress == "" {
		o.XDSAddress = DefaultXDSAddress
	}
	if o.MetricsAddress == "" {
		o.MetricsAddress = DefaultMetricsAddress
	}
	if o.HealthAddress == "" {
		o.HealthAddress = DefaultHealthAddress
	}
	if o.LeaderElection.ID == "" {
		o.LeaderElection.ID = DefaultLeaderElectionID
	}
	if o.Namespace == "" {
		o.Namespace = compiler.DefaultControlPlaneNamespace
	}
	if o.LeaderElection.Namespace == "" {
		o.LeaderElection.Namespace = o.Namespace
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.NewRegistry()
	}
	o.Limits = o.Limits.WithDefaults()
	o.Artifacts = o.Artifacts.WithDefaults()
	return o
}

// Component is a part of the control plane that another package adds
// to `weft controller` — the EndpointSlice watcher that feeds EDS, the
// mesh CA, the Kubernetes Authorizer. Every field is optional.
type Component struct {
	// Name names the component in errors and logs.
	Name string
	// XDS changes the xDS server's options before the server is made
	// (its TLS from the CA, its Authorizer, per-node variants).
	XDS func(*xds.Options) error
	// Endpoints gives the endpoints each revision is compiled with (nil:
	// the definition's static endpoints). At most one component sets it.
	// Its error fails the revision retryably.
	Endpoints func(*mesh.Model) (compiler.Endpoints, error)
	// Setup adds the component to the control plane once the manager
	// and the xDS server exist: controllers, runnables (a runnable that
	// implements manager.LeaderElectionRunnable runs on the leader only),
	// health checks, metrics on rt.Metrics.
	Setup func(rt *Runtime) error
}

// Runtime is what a Component's Setup is given.
type Runtime struct {
	Manager manager.Manager
	// XDS is the xDS server every replica serves.
	XDS *xds.Server
	// Metrics is the controller's registry, served at /metrics. The CA
	// registers weft_ca_certificates_signed_total and
	// weft_certificate_earliest_expiry_timestamp_seconds here.
	Metrics prometheus.Registerer
	// Namespace is the controller's own namespace.
	Namespace string
	// Served returns the revision being served: its model and compiled
	// result (nil before the first), e.g. to map EndpointSlices to the
	// proxy classes of the served mesh.
	Served func() *pipeline.Applied
	// Logger is the controller's logger.
	Logger *slog.Logger
}
