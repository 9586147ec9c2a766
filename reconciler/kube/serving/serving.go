package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/weft-dev/weft/compiler"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/reconciler/kube/caroot"
	"github.com/weft-dev/weft/reconciler/kube/endpoints"
	"github.com/weft-dev/weft/reconciler/kube/identity"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema/mesh"
)

// Defaults of Options: environments/deploy's manifests.
const (
	DefaultXDSAddress     = ":15010"
	DefaultCAAddress      = ":15012"
	DefaultServiceName    = "weft-controller"
	DefaultServiceAccount = "weft-controller"
	// DefaultTrustDomain is --trust-domain's default: the trust domain
	// of the shipped example mesh (environments/mesh.cue).
	DefaultTrustDomain = "shop.example"
)

// BindFlags registers the flags of the serving side on fs (Flux's style:
// next to the options type): --trust-domain, --ca-address and
// --ca-secret. The xDS address and the Service name are the controller's
// own flags (--xds-address, --webhook-service): the caller copies them.
func (o *Options) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.TrustDomain, "trust-domain", DefaultTrustDomain, "the mesh's SPIFFE trust domain: the mesh CA signs for it, and a revision whose trustDomain differs is refused")
	fs.StringVar(&o.CAAddress, "ca-address", DefaultCAAddress, "address of the mesh CA's gRPC service (TLS; CSRs authenticated by TokenReview)")
	fs.StringVar(&o.CASecret, "ca-secret", caroot.DefaultSecretName, "Secret (in the controller's namespace) holding the mesh CA's root; the leader creates it when absent")
}

// Options configure the serving side. The controller's flags set them
// (environments/deploy/controller.yaml).
type Options struct {
	// Namespace is the controller's own (POD_NAMESPACE): the CA Secret's
	// and the Service's.
	Namespace string
	// TrustDomain is the mesh's SPIFFE trust domain; a revision whose
	// trustDomain differs is refused (CheckTrustDomain).
	TrustDomain string
	// CASecret names the Secret of the CA root (default weft-ca-root).
	CASecret string
	// XDSAddress and CAAddress are the listeners (defaults :15010 and
	// :15012; ":0" picks a free port, see Serving.XDSAddr).
	XDSAddress, CAAddress string
	// ServiceName is the controller's Service (default weft-controller):
	// the serving certificate's DNS names are it, .<namespace>,
	// .<namespace>.svc and .<namespace>.svc.cluster.local, plus
	// ExtraDNSNames and ExtraIPs.
	ServiceName   string
	ExtraDNSNames []string
	ExtraIPs      []net.IP
	// ServiceAccount is the controller's (default weft-controller): its
	// SPIFFE id is in the serving certificate.
	ServiceAccount string
	// Audience of the agents' projected service-account tokens (default
	// "weft").
	Audience string
	// Debounce of endpoint changes (default 100ms).
	Debounce time.Duration
	// RootPollInterval: how often a replica waiting for the leader to
	// create the CA root reads the Secret (default 1s).
	RootPollInterval time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the metrics (default controller-runtime's
	// metrics.Registry).
	Registerer prometheus.Registerer
	// XDS holds further options of the xDS server (TLS, Authorizer and
	// Logger are set by Setup).
	XDS xds.Options
}

func (o Options) withDefaults() (Options, error) {
	if o.Namespace == "" {
		return o, errors.New("serving: no namespace (POD_NAMESPACE)")
	}
	if err := (cav1.Identity{TrustDomain: o.TrustDomain, Namespace: "x", ServiceAccount: "x"}).Validate(); err != nil || o.TrustDomain == "" {
		return o, fmt.Errorf("serving: trust domain %q is invalid", o.TrustDomain)
	}
	if o.CASecret == "" {
		o.CASecret = caroot.DefaultSecretName
	}
	if o.XDSAddress == "" {
		o.XDSAddress = DefaultXDSAddress
	}
	if o.CAAddress == "" {
		o.CAAddress = DefaultCAAddress
	}
	if o.ServiceName == "" {
		o.ServiceName = DefaultServiceName
	}
	if o.ServiceAccount == "" {
		o.ServiceAccount = DefaultServiceAccount
	}
	if o.Audience == "" {
		o.Audience = identity.DefaultAudience
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registerer == nil {
		o.Registerer = crmetrics.Registry
	}
	return o, nil
}

// Serving is the serving side of one replica.
type Serving struct {
	// XDS is the xDS server (its Status is the proxies' status).
	XDS *xds.Server
	// Feed is the endpoints feed: the pipeline's Endpoints hook.
	Feed *endpoints.Feed
	// Publisher is the pipeline's Publisher: the Feed, which returns the
	// memory a revision's compilation used to the OS once the revision is
	// served (see Publish).
	Publisher *Publisher
	// Authorizer binds xDS streams to pods.
	Authorizer *identity.PodAuthorizer

	opts    Options
	mgr     manager.Manager
	metrics *ca.Metrics
	tls     *dynamicTLS

	mu       sync.Mutex
	ca       *ca.CA
	root     *caroot.Root
	xdsAddr  net.Addr
	caAddr   net.Addr
	ready    chan struct{}
	startErr error
}

// Setup adds the serving side to mgr (see the package documentation). The
// manager's cache should have CacheOptions applied.
func Setup(mgr manager.Manager, opts Options) (*Serving, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Serving{opts: opts, mgr: mgr, tls: &dynamicTLS{}, ready: make(chan struct{})}
	if s.metrics, err = ca.NewMetrics(opts.Registerer, nil); err != nil {
		return nil, fmt.Errorf("serving: CA metrics: %w", err)
	}
	s.Authorizer = &identity.PodAuthorizer{Pods: mgr.GetCache(), Live: mgr.GetAPIReader()}
	xo := opts.XDS
	xo.Logger = opts.Logger
	xo.TLS = s.tls.config()
	xo.Authorizer = s.Authorizer
	xo.GRPCOptions = append(xo.GRPCOptions, keepaliveOptions()...)
	s.XDS = xds.New(xo)
	s.Feed, err = endpoints.New(mgr.GetCache(), s.XDS, endpoints.Options{
		Debounce: opts.Debounce, Logger: opts.Logger, Registerer: opts.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("serving: %w", err)
	}
	s.Authorizer.Definition = s.Feed.Model
	s.Publisher = &Publisher{Feed: s.Feed}
	if err := mgr.Add(s.Feed); err != nil {
		return nil, err
	}
	if err := mgr.Add(runnable{s.run}); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("serving", s.readyz); err != nil {
		return nil, err
	}
	return s, nil
}

// runnable is a manager.Runnable that every replica runs.
type runnable struct{ run func(context.Context) error }

func (r runnable) Start(ctx context.Context) error { return r.run(ctx) }
func (r runnable) NeedLeaderElection() bool        { return false }

// keepaliveOptions let proxies keep idle streams open (Envoy pings) and
// drop dead peers: a replica's xDS connections are long-lived.
func keepaliveOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
}

// run loads the root, then serves xDS and the CA until ctx ends.
func (s *Serving) run(ctx context.Context) error {
	o := s.opts
	root, err := caroot.Load(ctx, s.mgr.GetAPIReader(), s.mgr.GetClient(), s.mgr.Elected(), caroot.Options{
		Namespace: o.Namespace, Name: o.CASecret, TrustDomain: o.TrustDomain, PollInterval: o.RootPollInterval, Logger: o.Logger,
	})
	if err != nil {
		return s.failed(err)
	}
	c, err := ca.New(ca.Config{TrustDomain: o.TrustDomain, RootCertPEM: root.CertPEM, RootKeyPEM: root.KeyPEM, Log: o.Logger})
	if err != nil {
		return s.failed(fmt.Errorf("the mesh CA root in Secret %s/%s: %w", o.Namespace, o.CASecret, err))
	}
	s.metrics.SetRoot(c)
	id := cav1.Identity{TrustDomain: o.TrustDomain, Namespace: o.Namespace, ServiceAccount: o.ServiceAccount}
	names := append([]string{o.ServiceName, o.ServiceName + "." + o.Namespace, o.ServiceName + "." + o.Namespace + ".svc",
		o.ServiceName + "." + o.Namespace + ".svc.cluster.local"}, o.ExtraDNSNames...)
	xdsTLS, err := c.ServerTLS(id, names, o.ExtraIPs, tls.RequireAndVerifyClientCert)
	if err != nil {
		return s.failed(err)
	}
	caTLS, err := c.ServerTLS(id, names, o.ExtraIPs, tls.NoClientCert)
	if err != nil {
		return s.failed(err)
	}
	s.tls.set(xdsTLS)

	xln, err := net.Listen("tcp", o.XDSAddress)
	if err != nil {
		return s.failed(fmt.Errorf("xDS listener: %w", err))
	}
	cln, err := net.Listen("tcp", o.CAAddress)
	if err != nil {
		xln.Close()
		return s.failed(fmt.Errorf("CA listener: %w", err))
	}
	gs := grpc.NewServer(append(keepaliveOptions(), grpc.Creds(credentials.NewTLS(caTLS)))...)
	ca.NewServer(c, &identity.TokenReviewAuthenticator{Client: s.mgr.GetClient(), Audience: o.Audience, TrustDomain: o.TrustDomain},
		o.Logger).Observe(s.metrics).Register(gs)

	s.mu.Lock()
	s.ca, s.root, s.xdsAddr, s.caAddr = c, root, xln.Addr(), cln.Addr()
	close(s.ready)
	s.mu.Unlock()
	o.Logger.Info("serving xDS and the mesh CA", "xds", xln.Addr().String(), "ca", cln.Addr().String(),
		"createdRoot", root.Created, "root", c.Root().Subject.CommonName)

	errs := make(chan error, 2)
	go func() { errs <- s.XDS.Serve(xln) }()
	go func() {
		err := gs.Serve(cln)
		if errors.Is(err, grpc.ErrServerStopped) {
			err = nil
		}
		errs <- err
	}()
	select {
	case <-ctx.Done():
		s.XDS.Stop()
		gs.Stop()
		<-errs
		<-errs
		return nil
	case err := <-errs:
		s.XDS.Stop()
		gs.Stop()
		return fmt.Errorf("serving: %w", err)
	}
}

// failed records why serving could not start.
func (s *Serving) failed(err error) error {
	s.mu.Lock()
	s.startErr = err
	s.mu.Unlock()
	return fmt.Errorf("serving: %w", err)
}

// readyz is the readiness check: ready once both listeners serve.
func (s *Serving) readyz(*http.Request) error {
	select {
	case <-s.ready:
		return nil
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.startErr != nil {
		return s.startErr
	}
	return errors.New("waiting for the mesh CA root")
}

// Ready is closed once xDS and the CA serve.
func (s *Serving) Ready() <-chan struct{} { return s.ready }

// CA is the mesh CA (nil before Ready).
func (s *Serving) CA() *ca.CA {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ca
}

// RootCreated reports whether this replica created the root Secret.
func (s *Serving) RootCreated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.root != nil && s.root.Created
}

// XDSAddr and CAAddr are the listeners' addresses (nil before Ready).
func (s *Serving) XDSAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.xdsAddr
}

// CAAddr: see XDSAddr.
func (s *Serving) CAAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.caAddr
}

// CheckTrustDomain is a pipeline Check: a revision whose trust domain is
// not the controller's is refused (its certificates would not verify).
func (s *Serving) CheckTrustDomain(m *mesh.Model) error {
	if m.TrustDomain != s.opts.TrustDomain {
		return fmt.Errorf("trustDomain is %q; this controller's mesh CA signs for %q (--trust-domain): changing the trust domain needs a new CA root", m.TrustDomain, s.opts.TrustDomain)
	}
	return nil
}

// dynamicTLS is the xDS server's TLS configuration before the root is
// loaded: handshakes fail until set.
type dynamicTLS struct {
	mu  sync.RWMutex
	cfg *tls.Config
}

func (d *dynamicTLS) set(cfg *tls.Config) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	d.mu.Lock()
	d.cfg = cfg
	d.mu.Unlock()
}

// config is the static configuration given to the gRPC server; every
// handshake takes the current one.
func (d *dynamicTLS) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			d.mu.RLock()
			defer d.mu.RUnlock()
			if d.cfg == nil {
				return nil, errors.New("the mesh CA root is not loaded yet")
			}
			return d.cfg, nil
		},
	}
}

// Publisher is the pipeline's Publisher on the serving side: the Feed's
// Publish, then the memory the revision's load and compile used returned
// to the OS.
type Publisher struct{ Feed *endpoints.Feed }

// Publish serves the revision through the Feed. Loading and compiling a
// large mesh allocates several times what is then served (a 1,000-service
// mesh: ~400 MB for ~55 MB kept), and the Go runtime returns freed memory
// to the OS only gradually; a replica would hold the peak for minutes.
// Once a new revision is served (a rare event: endpoint updates do not
// come here), debug.FreeOSMemory returns it at once (a forced GC: tens of
// milliseconds at this size).
func (p *Publisher) Publish(rev string, res *compiler.Result) error {
	err := p.Feed.Publish(rev, res)
	if err == nil {
		debug.FreeOSMemory()
	}
	return err
}

// RecordFailure implements pipeline.Publisher.
func (p *Publisher) RecordFailure(rev, step string, err error) { p.Feed.RecordFailure(rev, step, err) }
