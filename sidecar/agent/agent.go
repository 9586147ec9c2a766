package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

// Agent is one workload's sidecar agent. New binds its sockets; Run does
// the rest until its context ends.
type Agent struct {
	cfg Config

	sockLn   net.Listener
	healthLn net.Listener
	roots    *x509.CertPool

	cert        atomic.Pointer[workloadCert]
	renewals    atomic.Int64
	envoyStarts atomic.Int64
	proxy       *adsProxy
	adminClient *http.Client

	mu     sync.Mutex
	ready  bool
	reason string

	readyCh   chan struct{}
	readyOnce sync.Once
	envoyDone chan struct{}
	ran       atomic.Bool
}

// Status is what the agent reports about itself (GET /status on the
// health endpoint gives it as JSON).
type Status struct {
	Ready       bool              `json:"ready"`
	Reason      string            `json:"reason,omitempty"`    // why not ready
	Identity    string            `json:"identity"`            // the workload's SPIFFE id
	NodeID      string            `json:"nodeID"`              // Envoy's node id
	Serial      string            `json:"serial,omitempty"`    // current certificate's serial (hex)
	NotAfter    time.Time         `json:"notAfter,omitzero"`   // current certificate's expiry
	Renewals    int               `json:"renewals"`            // certificates obtained after the first
	EnvoyStarts int               `json:"envoyStarts"`         // Envoy processes started (1 + restarts)
	XDS         XDSState          `json:"xds"`                 // the stream to the control plane (zero without one)
	PodLabels   map[string]string `json:"podLabels,omitempty"` // the pod's labels (Config.PodInfoDir), which the control plane matches to a version
}

// New checks cfg, fills in its defaults, reads the trust bundle and binds
// the agent's unix socket (mode 0600; a stale socket file is replaced) and
// health listener.
func New(cfg Config) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	roots, _, err := readTrustBundle(cfg.TrustBundleFile, cfg.TrustBundlePEM)
	if err != nil {
		return nil, err
	}
	// The sockets' directories are the agent's own (0700 when created
	// here): the admin socket can stop Envoy.
	for _, dir := range []string{filepath.Dir(cfg.Socket), filepath.Dir(cfg.AdminSocket)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	if err := os.Remove(cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("agent: stale socket: %w", err)
	}
	sockLn, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := os.Chmod(cfg.Socket, 0o600); err != nil {
		sockLn.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	healthLn, err := net.Listen("tcp", cfg.HealthAddress)
	if err != nil {
		sockLn.Close()
		return nil, fmt.Errorf("agent: health listener: %w", err)
	}
	var proxy *adsProxy
	if cfg.XDSAddress != "" {
		proxy = &adsProxy{log: cfg.Log}
	}
	return &Agent{
		cfg: cfg, sockLn: sockLn, healthLn: healthLn, roots: roots, proxy: proxy,
		adminClient: AdminClient(cfg.AdminSocket),
		reason:      "no certificate yet",
		readyCh:     make(chan struct{}),
		envoyDone:   make(chan struct{}),
	}, nil
}

// Config is the agent's configuration with defaults filled in.
func (a *Agent) Config() Config { return a.cfg }

// HealthAddr is the address of the health endpoint (/ready, /healthz).
func (a *Agent) HealthAddr() string { return a.healthLn.Addr().String() }

// Ready is closed the first time Envoy is ready (see Status for now).
func (a *Agent) Ready() <-chan struct{} { return a.readyCh }

// Certificate is the current workload certificate (nil before the first).
func (a *Agent) Certificate() *x509.Certificate {
	if c := a.cert.Load(); c != nil {
		return c.leaf
	}
	return nil
}

// Status is the agent's current state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	st := Status{Ready: a.ready, Reason: a.reason, Identity: a.cfg.Identity.String(), NodeID: a.cfg.NodeID}
	a.mu.Unlock()
	st.XDS = a.proxy.State()
	st.PodLabels = readPodLabels(a.cfg.PodInfoDir)
	if c := a.cert.Load(); c != nil {
		st.Serial, st.NotAfter = c.leaf.SerialNumber.Text(16), c.leaf.NotAfter
	}
	st.Renewals = int(a.renewals.Load())
	st.EnvoyStarts = int(a.envoyStarts.Load())
	return st
}

func (a *Agent) setReady(reason string) {
	a.mu.Lock()
	changed := a.ready != (reason == "") || (reason != "" && a.reason != reason)
	a.ready, a.reason = reason == "", reason
	a.mu.Unlock()
	if reason == "" {
		a.readyOnce.Do(func() { close(a.readyCh) })
	}
	if changed {
		a.cfg.Log.Info("agent: readiness", "ready", reason == "", "reason", reason)
	}
}

// Run obtains the workload certificate (retrying until the CA answers),
// serves SDS and the ADS proxy on the socket, writes the bootstrap, runs
// and supervises Envoy, renews the certificate and tracks readiness, until
// ctx ends; then it drains and stops Envoy and closes its sockets. It
// returns nil after a clean stop, or why it could not start.
func (a *Agent) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	defer a.sockLn.Close()
	defer a.healthLn.Close()
	defer os.Remove(a.cfg.Socket)

	caConn, err := dialCA(&a.cfg, a.roots)
	if err != nil {
		return fmt.Errorf("agent: CA: %w", err)
	}
	defer caConn.Close()
	ca := cav1.NewCertificateServiceClient(caConn)

	health := &http.Server{Handler: a.healthHandler(), ReadHeaderTimeout: 5 * time.Second}
	go health.Serve(a.healthLn)
	defer health.Close()

	first, err := a.obtain(ctx, ca, true)
	if err != nil {
		return err
	}
	a.cert.Store(first)
	secrets := newSecretCache()
	if err := publish(ctx, secrets, first); err != nil {
		return fmt.Errorf("agent: SDS: %w", err)
	}
	a.setReady("envoy not started")

	srvCtx, stopSrv := context.WithCancel(context.Background())
	defer stopSrv()
	gs := grpc.NewServer()
	secretv3.RegisterSecretDiscoveryServiceServer(gs, serverv3.NewServer(srvCtx, secrets, nil))
	if a.cfg.XDSAddress != "" {
		xdsConn, err := dialXDS(&a.cfg, a.roots, func() *tls.Certificate {
			if c := a.cert.Load(); c != nil {
				return &c.tls
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("agent: xDS: %w", err)
		}
		defer xdsConn.Close()
		discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, a.proxy)
		a.proxy.upstream = discoveryv3.NewAggregatedDiscoveryServiceClient(xdsConn)
	}
	go gs.Serve(a.sockLn)
	defer gs.Stop()

	b, err := Bootstrap(a.cfg)
	if err != nil {
		return err
	}
	if err := writeBootstrap(a.cfg.BootstrapPath, b); err != nil {
		return fmt.Errorf("agent: bootstrap: %w", err)
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.renewLoop(ctx, ca, secrets) }()
	go func() { defer wg.Done(); a.readyLoop(ctx) }()
	a.superviseEnvoy(ctx) // returns after ctx ends and Envoy stopped
	wg.Wait()
	a.setReady("stopped")
	return nil
}

// obtain gets a certificate, retrying with backoff until ctx ends.
func (a *Agent) obtain(ctx context.Context, ca cav1.CertificateServiceClient, first bool) (*workloadCert, error) {
	backoff := 200 * time.Millisecond
	for {
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := issue(callCtx, &a.cfg, ca)
		cancel()
		if err == nil {
			a.cfg.Log.Info("agent: certificate issued", "identity", a.cfg.Identity.String(),
				"serial", c.leaf.SerialNumber.Text(16), "notAfter", c.leaf.NotAfter)
			return c, nil
		}
		a.cfg.Log.Warn("agent: certificate request failed", "err", err, "retry", backoff)
		if first {
			a.setReady("no certificate: " + err.Error())
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("agent: no certificate: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// renewLoop renews the certificate at half life (with jitter) and
// publishes each new one over SDS.
func (a *Agent) renewLoop(ctx context.Context, ca cav1.CertificateServiceClient, secrets cache.SnapshotCache) {
	for {
		cur := a.cert.Load()
		t := time.NewTimer(renewDelay(cur, a.cfg.RenewJitter))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		next, err := a.obtain(ctx, ca, false)
		if err != nil {
			return
		}
		a.cert.Store(next)
		if err := publish(ctx, secrets, next); err != nil {
			a.cfg.Log.Error("agent: SDS update failed", "err", err)
			continue
		}
		a.renewals.Add(1)
		a.cfg.Log.Info("agent: certificate renewed", "serial", next.leaf.SerialNumber.Text(16),
			"previousNotAfter", cur.leaf.NotAfter, "notAfter", next.leaf.NotAfter)
	}
}

// readyLoop polls Envoy's admin until ctx ends.
func (a *Agent) readyLoop(ctx context.Context) {
	t := time.NewTicker(readyPoll)
	defer t.Stop()
	for {
		reason := a.checkEnvoy(ctx)
		if x := a.proxy.State(); reason != "" && x.Refused != "" {
			reason = "the control plane refused this proxy's xDS stream: " + x.Refused
		}
		a.setReady(reason)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
