package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"

	"github.com/weft-dev/weft/compiler"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

// Defaults of Config.
const (
	DefaultHealthAddress = "127.0.0.1:15021"
	DefaultSocket        = compiler.DefaultSDSSocket // /var/run/weft/sds.sock
	DefaultBootstrapPath = "/var/run/weft/envoy.yaml"
	// AdminSocketName is the file name of Envoy's admin socket, next to
	// Socket unless Config.AdminSocket says otherwise.
	AdminSocketName       = "envoy-admin.sock"
	DefaultRenewJitter    = 0.1
	DefaultRestartBackoff = time.Second
	MaxRestartBackoff     = 30 * time.Second
	// DefaultConcurrency is Envoy's number of worker threads: 2, as
	// Istio's sidecars. Envoy's own default is one per core, and each
	// worker keeps its own upstream connection pool, so a circuit
	// breaker's maxConnections: 1 would mean one connection per core.
	DefaultConcurrency = 2
	// XDSClusterName is the bootstrap cluster through which Envoy reaches
	// the agent's ADS proxy.
	XDSClusterName = "xds-grpc"
)

// Config is everything the agent needs. Library callers (`weft up`) set
// every field; `weft agent`, in a pod, sets them from its flags and
// ForPod, which derives the identity from the service-account token and
// the node id from the pod (never a flag): see cmd/weft/agent.go for the
// flag of each field.
type Config struct {
	// Identity is the workload's SPIFFE id: the CSR's only SAN.
	Identity cav1.Identity
	// Class is the proxy class ("<service>-<version>"): Envoy's
	// node.cluster and the node metadata weft.class, which local mode's
	// xDS server checks. Empty in Kubernetes, where the control plane
	// derives the class from the pod: node.cluster is then Service (Envoy
	// requires one) and there is no weft.class.
	Class string
	// NodeID is Envoy's node.id (default "<class>~<hostname>~<pid>"; in a
	// pod "<pod>.<namespace>", see ForPod).
	NodeID string
	// NodeMetadata is added to Envoy's node.metadata (as strings), next to
	// "weft.identity" and "weft.class", which the agent sets.
	NodeMetadata map[string]string

	// CAAddress is the mesh CA's gRPC address (host:port).
	CAAddress string
	// CAServerName is the name the CA's serving certificate is verified
	// against (default: the host of CAAddress).
	CAServerName string
	// TrustBundleFile is the mesh trust bundle (PEM roots), a public file:
	// the agent verifies the CA and the xDS server with it.
	// TrustBundlePEM, when set, is the bundle itself instead (in a pod:
	// the WEFT_TRUST_BUNDLE environment variable).
	TrustBundleFile string
	TrustBundlePEM  []byte
	// TokenFile holds the workload's bearer token (local mode: written by
	// `weft up`, mode 0600). It is read again for every signing request.
	TokenFile string
	// CertTTL is the certificate lifetime asked of the CA (0: the CA's
	// default, 24h). The CA clamps it to its own range.
	CertTTL time.Duration
	// RenewJitter: the certificate is renewed at half its remaining life
	// less up to RenewJitter × life, at random (default 0.1).
	RenewJitter float64

	// XDSAddress is the control plane's xDS address (host:port), reached
	// over mTLS with the workload certificate. Empty: no dynamic resources
	// (a static bootstrap from StaticResources only).
	XDSAddress string
	// XDSServerName is the name the xDS server's certificate is verified
	// against (default: the host of XDSAddress).
	XDSServerName string
	// DeltaXDS makes Envoy use incremental xDS (api_type DELTA_GRPC)
	// instead of state of the world (GRPC).
	DeltaXDS bool

	// Socket is the unix socket on which the agent serves SDS and the ADS
	// proxy to Envoy (mode 0600).
	Socket string
	// BootstrapPath is where the agent writes Envoy's bootstrap (YAML).
	BootstrapPath string
	// AdminSocket is the unix socket of Envoy's admin interface (mode
	// 0600; default envoy-admin.sock next to Socket). The admin can stop
	// Envoy (POST /quitquitquit), drain it and dump its config, so it is
	// never on TCP: only the agent (and whoever runs as its user) reaches
	// it. The agent uses it for readiness, draining and AdminGet.
	// Prometheus scrapes the stats-only listener (StatsAddress) instead.
	AdminSocket string
	// Mesh, Service and Version name the proxy in its stats: the fixed
	// tags mesh, namespace (the Identity's), source_service and
	// source_version, and the node metadata weft.version that the
	// per-request stats read (compiler.StatsConfig, compiler.NodeMetadata).
	Mesh, Service, Version string
	// StatsAddress is where Envoy serves its Prometheus stats, and only
	// them ("IP:port", e.g. 0.0.0.0:15090; compiler.StatsListener). Empty:
	// no stats listener.
	StatsAddress string
	// HealthAddress is where the agent serves /ready and /healthz (default
	// 127.0.0.1:15021; port 0 picks one, see Agent.HealthAddr).
	HealthAddress string

	// EnvoyBinary is the Envoy executable (default "envoy" on PATH).
	EnvoyBinary string
	// EnvoyArgs are appended to Envoy's command line.
	EnvoyArgs []string
	// EnvoyLogLevel is Envoy's --log-level (default "warning").
	EnvoyLogLevel string
	// Concurrency is Envoy's --concurrency, its number of worker threads
	// (default DefaultConcurrency, 2). A worker handles its connections
	// alone with its own upstream connection pools: the circuit breaker's
	// limits are shared by the workers, but each may hold a connection.
	Concurrency int
	// DrainTimeout: on stop, Envoy's listeners drain gracefully this long
	// before it gets SIGTERM (0: no drain).
	DrainTimeout time.Duration
	// RestartBackoff is the first delay before restarting an Envoy that
	// died; it doubles up to 30s and resets after a minute of uptime
	// (default 1s).
	RestartBackoff time.Duration
	// ReadyWithoutCert: readiness does not wait for Envoy's /certs to
	// show the workload certificate (for classes whose config uses no
	// mesh mTLS at all).
	ReadyWithoutCert bool
	// AppProbes are the app's probes that the injector pointed at the
	// health endpoint's /app-health/ paths (AppHealthPath): the agent runs
	// each against the app on 127.0.0.1 and answers as the app did.
	AppProbes AppProbes
	// PodInfoDir is the downward API volume of the pod (a "labels" file),
	// shown in Status; empty outside a pod.
	PodInfoDir string

	// StaticResources are added to the bootstrap's static resources
	// (library only: tests and proxies run from `weft build` bootstraps).
	StaticResources *bootstrapv3.Bootstrap_StaticResources
	// EnvoyOutput receives Envoy's stdout and stderr (library only;
	// default os.Stderr).
	EnvoyOutput io.Writer
	// Log receives the agent's events (default: discard).
	Log *slog.Logger
}

func (c *Config) setDefaults() error {
	if err := c.Identity.Validate(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if c.Class == "" && c.Service == "" {
		return errors.New("agent: no class and no service: Envoy needs one as its node.cluster")
	}
	if c.CAAddress == "" || (c.TrustBundleFile == "" && len(c.TrustBundlePEM) == 0) || c.TokenFile == "" {
		return errors.New("agent: CAAddress, a trust bundle (TrustBundleFile or TrustBundlePEM) and TokenFile are required")
	}
	if c.NodeID == "" {
		if c.Class == "" {
			return errors.New("agent: no node id and no class to make one from")
		}
		host, _ := os.Hostname()
		c.NodeID = fmt.Sprintf("%s~%s~%d", c.Class, host, os.Getpid())
	}
	if c.RenewJitter == 0 {
		c.RenewJitter = DefaultRenewJitter
	}
	if c.RenewJitter < 0 || c.RenewJitter > 0.4 {
		return fmt.Errorf("agent: RenewJitter %v outside [0, 0.4]", c.RenewJitter)
	}
	if c.Socket == "" {
		c.Socket = DefaultSocket
	}
	if len(c.Socket) > 100 {
		return fmt.Errorf("agent: socket path %q is too long for a unix socket", c.Socket)
	}
	if c.BootstrapPath == "" {
		c.BootstrapPath = DefaultBootstrapPath
	}
	if c.AdminSocket == "" {
		c.AdminSocket = filepath.Join(filepath.Dir(c.Socket), AdminSocketName)
	}
	if len(c.AdminSocket) > 100 {
		return fmt.Errorf("agent: admin socket path %q is too long for a unix socket", c.AdminSocket)
	}
	if c.AdminSocket == c.Socket {
		return fmt.Errorf("agent: the admin socket and the agent socket are both %q", c.Socket)
	}
	if c.HealthAddress == "" {
		c.HealthAddress = DefaultHealthAddress
	}
	if c.EnvoyBinary == "" {
		c.EnvoyBinary = "envoy"
	}
	if c.EnvoyLogLevel == "" {
		c.EnvoyLogLevel = "warning"
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("agent: Concurrency %d: want a number of worker threads, 1 or more", c.Concurrency)
	}
	if c.RestartBackoff == 0 {
		c.RestartBackoff = DefaultRestartBackoff
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}
