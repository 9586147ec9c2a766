package up

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weft-dev/weft/compiler"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/reconciler/metrics"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/pipeline/source"
	"github.com/weft-dev/weft/reconciler/servicemap"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
	"github.com/weft-dev/weft/sidecar/agent"
)

// StatusAddrFile is the file in the state directory that holds the
// address of the status endpoint (for `weft status`).
const StatusAddrFile = "status-addr"

// SidecarRunner runs one instance's agent — which obtains the workload
// certificate, serves SDS, proxies xDS and runs Envoy — until ctx ends.
type SidecarRunner func(ctx context.Context, a *agent.Agent) error

// AppRunner runs one instance's app until ctx ends. env is the
// environment `weft up` gives it (see docs/local-mode.md).
type AppRunner func(ctx context.Context, in *Instance, env []string) error

// Options configure a local mesh.
type Options struct {
	// Dir is the mesh repository (or an environment directory in it:
	// schema.ResolveEnv).
	Dir string
	// Env is the environment overlay (schema.Options.Env).
	Env string
	// Branch is the branch followed when Dir is a git repository
	// (default "main"); BranchSet makes Dir followed as git even when it
	// is a subdirectory of the repository.
	Branch    string
	BranchSet bool
	// StateDir holds the CA root, tokens, bootstraps, logs, git exports
	// and the status address (default: DefaultStateDir, outside the
	// repository). One inside a git work tree that git does not ignore is
	// refused.
	StateDir string
	// AllowInsecureKeyPermissions loads a CA root key that group or
	// others may read, with a warning, instead of refusing it.
	AllowInsecureKeyPermissions bool
	// Poll is the interval of the git/directory poll, and the first
	// delay of the retries of a failing source or revision (default 1s;
	// the retries back off to at most 30s).
	Poll time.Duration
	// IPBase is the first instance address (default 127.0.1.1).
	IPBase string
	// StatusAddr is the status endpoint's listen address (default
	// 127.0.0.1:0).
	StatusAddr string
	// Envoy is the Envoy binary (default "envoy" on PATH).
	Envoy string
	// CertTTL is the workload certificate lifetime asked for (0: the
	// CA's default, 24h); CAMinTTL lowers the CA's floor (tests).
	CertTTL, CAMinTTL time.Duration
	// DeltaXDS makes the Envoys use incremental xDS.
	DeltaXDS bool
	// Concurrency is every Envoy's number of worker threads (0:
	// agent.DefaultConcurrency, 2; see docs/local-mode.md).
	Concurrency int
	// Gate is the gate of every revision: policies, acceptance checks,
	// limits (nil: a gate without policies, default limits; the CLI
	// gives the policies of weft vet).
	Gate *pipeline.Gate
	// RunSidecar runs an agent (default: the in-process agent).
	RunSidecar SidecarRunner
	// RunApp runs an app (default: DefaultAppRunner(os.Executable())).
	RunApp AppRunner
	// TestOnlyBeforePublish is passed to the xDS server
	// (xds.Options.TestOnlyBeforePublish): tests use it to serve a value
	// that Envoy rejects. Leave it nil.
	TestOnlyBeforePublish func(rev string, res *compiler.Result) *compiler.Result
	// Prometheus is the base URL of a Prometheus that scrapes the mesh
	// (the configuration in the state directory): the service map reads
	// its signals there. Empty: straight from the proxies' stats
	// listeners.
	Prometheus string
	// MapWindow is the span of the service map's rates and percentages
	// (0: 30s from the proxies, 1m from Prometheus); MapRefresh how often
	// it reads them and the page reloads (0: 5s).
	MapWindow, MapRefresh time.Duration
	// Out receives the human-readable report (what runs where); Log the
	// events.
	Out io.Writer
	Log *slog.Logger
}

// Mesh is a running local mesh.
type Mesh struct {
	opts     Options
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	started  chan struct{} // closed once the control plane runs
	startErr error         // why it could not start

	pipeline    *pipeline.Pipeline
	follower    *pipeline.Follower
	runtime     string // the agents' sockets
	trustDomain string
	ca          *ca.CA
	auth        *ca.TokenAuthenticator
	caAddr      string
	bundleFile  string

	cpMu     sync.Mutex
	server   *xds.Server
	xdsAddr  string
	xdsLn    net.Listener
	caServer *serverPair

	statusSrv  *http.Server
	statusAddr string
	metrics    *metrics.Metrics
	svcmap     *servicemap.Map

	mu        sync.Mutex
	ips       *ipAllocator
	instances map[string]*runningInstance // by node id
	placed    *placements
	changed   chan struct{}
}

type runningInstance struct {
	in     *Instance
	agent  atomic.Pointer[agent.Agent]
	cancel context.CancelFunc
	done   chan struct{}
}

type serverPair struct {
	ln  net.Listener
	srv interface{ Stop() }
}

// Start starts the local mesh: it follows the source (package
// reconciler/pipeline/source) through the pipeline (reconciler/pipeline);
// the first revision that loads gives the trust domain, and then the CA,
// the xDS server and the status endpoint start; every revision served
// starts and stops instances to match it. Start returns once the control
// plane runs (or with why it cannot start); the mesh keeps following the
// source until ctx ends or Stop.
func Start(ctx context.Context, o Options) (*Mesh, error) {
	if err := defaults(&o); err != nil {
		return nil, err
	}
	state, err := filepath.Abs(o.StateDir)
	if err != nil {
		return nil, err
	}
	o.StateDir = state
	if err := checkStateDir(state); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(state, "run"), 0o700); err != nil {
		return nil, err
	}
	ips, err := newIPAllocator(o.IPBase)
	if err != nil {
		return nil, err
	}
	gate := o.Gate
	if gate == nil {
		gate = &pipeline.Gate{NoPolicies: true}
	}
	src, err := source.New(source.Options{Dir: o.Dir, Branch: o.Branch, BranchSet: o.BranchSet, Poll: o.Poll,
		ExportDir: filepath.Join(state, "run"), MaxFileBytes: gate.MaxFileBytes()})
	if err != nil {
		return nil, fmt.Errorf("up: %w", err)
	}
	rt, err := runtimeDir(state)
	if err != nil {
		return nil, err
	}
	m := &Mesh{opts: o, log: o.Log, runtime: rt, ips: ips, instances: map[string]*runningInstance{}, placed: newPlacements(),
		done: make(chan struct{}), started: make(chan struct{}), changed: make(chan struct{})}
	m.ctx, m.cancel = context.WithCancel(ctx)
	m.metrics, err = metrics.New(nil, m.status)
	if err != nil {
		return nil, err
	}
	m.pipeline = &pipeline.Pipeline{Gate: gate, Env: o.Env, Check: m.check, Endpoints: m.endpoints, Publisher: (*publisher)(m),
		Observe: m.metrics.ObserveStep}
	m.follower = &pipeline.Follower{Source: src, Pipeline: m.pipeline, Served: m.served, Report: m.report,
		Backoff: pipeline.Backoff{Initial: o.Poll, Max: max(30*time.Second, o.Poll)}}
	if o.Env != "" {
		fmt.Fprintf(o.Out, "weft up: environment %s of %s\n", o.Env, o.Dir)
	}
	fmt.Fprintf(o.Out, "weft up: following %s; state in %s\n", src, state)
	go func() {
		_ = m.follower.Run(m.ctx)
		m.stopAll()
		close(m.done)
	}()
	go m.reportRollbacks()
	select {
	case <-m.started:
		return m, nil
	case <-m.done:
		m.stopControlPlane()
		_ = os.RemoveAll(rt)
		if m.startErr != nil {
			return nil, m.startErr
		}
		return nil, ctx.Err()
	}
}

// defaults fills in o's defaults and resolves its environment.
func defaults(o *Options) error {
	if o.Branch == "" {
		o.Branch = "main"
	}
	if o.Poll == 0 {
		o.Poll = time.Second
	}
	if o.IPBase == "" {
		o.IPBase = "127.0.1.1"
	}
	if o.StatusAddr == "" {
		o.StatusAddr = "127.0.0.1:0"
	}
	if o.Envoy == "" {
		o.Envoy = "envoy"
	}
	if o.Concurrency < 0 {
		return fmt.Errorf("up: concurrency %d: want 1 or more Envoy worker threads (0: %d)", o.Concurrency, agent.DefaultConcurrency)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.RunSidecar == nil {
		o.RunSidecar = defaultSidecar
	}
	if o.RunApp == nil {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.RunApp = ExecAppRunner(exe)
	}
	o.Dir, o.Env = schema.ResolveEnv(o.Dir, o.Env)
	if o.StateDir == "" {
		d, err := DefaultStateDir(o.Dir, o.Env)
		if err != nil {
			return err
		}
		o.StateDir = d
	}
	return nil
}

// check is the pipeline's Check: the first model that loads starts the
// control plane with its trust domain, which is fixed from then on (the
// CA's).
func (m *Mesh) check(model *mesh.Model) error {
	if m.trustDomain == "" {
		m.trustDomain = model.TrustDomain
		if err := m.startControlPlane(); err != nil {
			m.startErr = err
			m.cancel()
			return err
		}
		close(m.started)
	}
	if model.TrustDomain != m.trustDomain {
		return fmt.Errorf("trust domain changed from %q to %q: restart weft up to change it", m.trustDomain, model.TrustDomain)
	}
	return nil
}

// status is the xDS server's status (empty before the control plane
// starts): the control-plane metrics read it at every scrape.
func (m *Mesh) status() status.Status {
	if s := m.Server(); s != nil {
		return s.Status()
	}
	return status.Status{}
}

// publisher is the pipeline's Publisher: the current xDS server (a
// restart replaces it).
type publisher Mesh

func (p *publisher) Publish(rev string, res *compiler.Result) error {
	return (*Mesh)(p).Server().Publish(rev, res)
}

func (p *publisher) RecordFailure(rev, step string, err error) {
	if s := (*Mesh)(p).Server(); s != nil { // none before the first revision that loads
		s.RecordFailure(rev, step, err)
	}
}

func (m *Mesh) startControlPlane() error {
	o := m.opts
	var err error
	m.ca, err = ca.New(ca.Config{TrustDomain: m.trustDomain, StateDir: filepath.Join(o.StateDir, "ca"), MinTTL: o.CAMinTTL,
		AllowInsecureKeyPermissions: o.AllowInsecureKeyPermissions, Log: m.log})
	if err != nil {
		return err
	}
	m.auth = ca.NewTokenAuthenticator()
	m.bundleFile = filepath.Join(o.StateDir, "trust-bundle.pem")
	if err := os.WriteFile(m.bundleFile, m.ca.TrustBundlePEM(), 0o644); err != nil {
		return err
	}
	// The CA: TLS without client certificates (a workload has none yet;
	// its token authenticates it).
	caTLS, err := m.ca.ServerTLS(controlPlaneID(m.trustDomain), []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, tls.NoClientCert)
	if err != nil {
		return err
	}
	// Its own gRPC server with the CA service only: this port requires
	// no client certificate, so it must not carry ADS.
	caSrv := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(caTLS))}, m.metrics.ServerOptions()...)...)
	ca.NewServer(m.ca, m.auth, m.log).Register(caSrv)
	caLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	m.caAddr = caLn.Addr().String()
	m.caServer = &serverPair{ln: caLn, srv: caSrv}
	go func() { _ = caSrv.Serve(caLn) }()

	if err := m.startXDS("127.0.0.1:0"); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.StatusAddr)
	if err != nil {
		return fmt.Errorf("status endpoint: %w", err)
	}
	m.statusAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("GET "+metrics.Path, m.metrics.Handler())
	m.svcmap = m.newServiceMap()
	mux.Handle(servicemap.Path, m.svcmap.Handler())
	mux.Handle(servicemap.Path+"/", m.svcmap.Handler())
	go m.svcmap.Run(m.ctx)
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.Server().Handler().ServeHTTP(w, r)
	}))
	m.statusSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = m.statusSrv.Serve(ln) }()
	if err := m.writePrometheusConfig(); err != nil {
		return fmt.Errorf("prometheus configuration: %w", err)
	}
	fmt.Fprintf(o.Out, "weft up: Prometheus scrape configuration: %s\n", m.PrometheusConfigPath())
	fmt.Fprintf(o.Out, "weft up: service map at %s\n", m.ServiceMapURL())
	return os.WriteFile(filepath.Join(o.StateDir, StatusAddrFile), []byte(m.statusAddr+"\n"), 0o644)
}

func controlPlaneID(td string) cav1.Identity {
	return cav1.Identity{TrustDomain: td, Namespace: "weft-system", ServiceAccount: "weft"}
}

// startXDS starts an xDS server (mTLS, CA-issued certificate) on addr.
func (m *Mesh) startXDS(addr string) error {
	xdsTLS, err := m.ca.ServerTLS(controlPlaneID(m.trustDomain), []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, tls.RequireAndVerifyClientCert)
	if err != nil {
		return err
	}
	// A stream is served as the instance that weft up placed for the
	// node id it claims, if its certificate is that instance's identity;
	// the instance's placement comes from the same record.
	srv := xds.New(xds.Options{
		TLS:                   xdsTLS,
		Authorizer:            xds.RecordAuthorizer{Lookup: m.placed.record},
		PerNode:               m.placed.perNode,
		Logger:                m.log,
		TestOnlyBeforePublish: m.opts.TestOnlyBeforePublish,
		GRPCOptions:           m.metrics.ServerOptions(),
	})
	var ln net.Listener
	for i := 0; ; i++ { // a restart rebinds the same port, which may linger briefly
		ln, err = net.Listen("tcp", addr)
		if err == nil || i > 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("xds listener: %w", err)
	}
	m.cpMu.Lock()
	m.server, m.xdsLn, m.xdsAddr = srv, ln, ln.Addr().String()
	m.cpMu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// RestartControlPlane stops the xDS server and starts a new one on the
// same address, which serves the last good revision again (the proxies
// reconnect through their agents). For tests and drills.
func (m *Mesh) RestartControlPlane(down time.Duration) error {
	m.cpMu.Lock()
	old, addr := m.server, m.xdsAddr
	m.cpMu.Unlock()
	applied := old.Status().LastAppliedRevision
	old.Stop()
	time.Sleep(down)
	if err := m.startXDS(addr); err != nil {
		return err
	}
	// Compiling is deterministic: the result of the revision the old
	// server had applied (not a later one its proxies rejected) is what
	// the reconnecting Envoys already have.
	return m.pipeline.Republish(applied)
}

// AgentStatus is the status of an instance's agent (false if unknown).
func (m *Mesh) AgentStatus(nodeID string) (agent.Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ri := m.instances[nodeID]
	if ri == nil || ri.agent.Load() == nil {
		return agent.Status{}, false
	}
	return ri.agent.Load().Status(), true
}

// endpoints places every replica of every version (new ones get an IP and
// app ports; existing ones keep theirs) and returns their addresses.
func (m *Mesh) endpoints(model *mesh.Model) (compiler.Endpoints, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	eps := compiler.Endpoints{}
	for _, name := range model.ServiceNames() {
		svc := model.Services[name]
		eps[name] = map[string][]compiler.Address{}
		for _, vname := range svc.VersionNames() {
			v := svc.Versions[vname]
			for r := 0; r < v.Replicas; r++ {
				in, err := m.place(svc, vname, r)
				if err != nil {
					return nil, err
				}
				eps[name][vname] = append(eps[name][vname], compiler.LocalAddress(in.IP))
			}
		}
	}
	return eps, nil
}

// place returns the instance of (svc, version, replica), allocating it.
// Placements are kept across revisions; a port set change re-places.
func (m *Mesh) place(svc *mesh.Service, version string, replica int) (*Instance, error) {
	class := compiler.ClassName(svc.Name, version)
	id := class + "-" + strconv.Itoa(replica)
	var ports []uint32
	for _, p := range svc.PortList() {
		ports = append(ports, p.Port)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	ident := cav1.Identity{TrustDomain: m.trustDomain, Namespace: svc.Namespace, ServiceAccount: svc.ServiceAccount}
	// An identity change re-places too: the instance restarts with a
	// certificate of its new identity.
	if in := m.placed.get(id); in != nil && equalPorts(in.Ports, ports) && in.Identity == ident {
		return in, nil
	}
	ip := ""
	if in := m.placed.get(id); in != nil {
		ip = in.IP
	} else {
		var err error
		if ip, err = m.ips.take(); err != nil {
			return nil, err
		}
	}
	in := &Instance{Class: class, Service: svc.Name, Version: version, Replica: replica, NodeID: id, Identity: ident, IP: ip,
		Ports: ports, AppPorts: map[uint32]uint32{}, Edge: svc.Edge}
	for _, p := range ports {
		ap, err := freePort(ip)
		if err != nil {
			return nil, err
		}
		for ap == p || containsPort(ports, ap) {
			if ap, err = freePort(ip); err != nil {
				return nil, err
			}
		}
		in.AppPorts[p] = ap
	}
	// Envoy's admin: a unix socket in the private runtime directory
	// (0700), never a TCP port another local process could reach.
	in.AdminSocket = adminSocketPath(m.runtime, id)
	// The stats listener (GET /stats/prometheus only) on the instance's
	// own IP: the usual 15090 is free there unless the service uses it.
	stats := uint32(compiler.DefaultStatsPort)
	for containsPort(ports, stats) || appPortsContain(in.AppPorts, stats) {
		var err error
		if stats, err = freePort(ip); err != nil {
			return nil, err
		}
	}
	in.StatsAddr = net.JoinHostPort(ip, strconv.Itoa(int(stats)))
	if svc.Local != nil {
		in.Command = svc.Local.Command
	}
	m.placed.set(in)
	return in, nil
}

func equalPorts(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func containsPort(ps []uint32, p uint32) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// served is the follower's Served: it runs the instances of the revision
// just published and stops the others.
func (m *Mesh) served(_ context.Context, a *pipeline.Applied) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.reconcileLocked(a.Model); err != nil {
		fmt.Fprintf(m.opts.Out, "weft up: %v\n", err)
	}
	if err := m.writeRulesLocked(a.Model); err != nil {
		fmt.Fprintf(m.opts.Out, "weft up: prometheus rules: %v\n", err)
	}
}

// report prints what the follower did, once per distinct failure.
func (m *Mesh) report(ev pipeline.Event) {
	out := m.opts.Out
	keeps := "the last good revision keeps serving"
	if m.pipeline.LastApplied() == nil {
		keeps = "nothing is served yet"
	}
	retry := ""
	if ev.RetryIn > 0 {
		retry = fmt.Sprintf(", retrying in %s", ev.RetryIn.Round(time.Millisecond))
	}
	switch {
	case ev.Err == nil:
		fmt.Fprintf(out, "weft up: serving %s (compiled and published in %s)\n", ev.Revision, ev.Took.Round(time.Millisecond))
	case ev.Step == status.StepFetch || ev.Step == status.StepExport:
		fmt.Fprintf(out, "weft up: %s failed (%s%s):\n%v\n", ev.Step, keeps, retry, ev.Err)
	default:
		fmt.Fprintf(out, "weft up: revision %s rejected (%s%s):\n%v\n", ev.Revision, keeps, retry, ev.Err)
	}
	m.mu.Lock()
	m.notifyLocked()
	m.mu.Unlock()
}

func (m *Mesh) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// reconcileLocked runs the instances of model and stops the others.
func (m *Mesh) reconcileLocked(model *mesh.Model) error {
	if model == nil {
		return nil
	}
	want := map[string]*Instance{}
	for _, name := range model.ServiceNames() {
		svc := model.Services[name]
		for _, vname := range svc.VersionNames() {
			for r := 0; r < svc.Versions[vname].Replicas; r++ {
				id := compiler.ClassName(name, vname) + "-" + strconv.Itoa(r)
				if in := m.placed.get(id); in != nil {
					want[id] = in
				}
			}
		}
	}
	var started []*Instance
	waited := false
	for id, ri := range m.instances {
		if w := want[id]; w == nil || w != ri.in {
			if !waited {
				// Callers drop the instance from their endpoints first.
				ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
				_ = m.Server().WaitSynced(ctx)
				cancel()
				waited = true
			}
			m.log.Info("stopping instance", "node", id)
			ri.cancel()
			<-ri.done
			delete(m.instances, id)
		}
	}
	var errs []error
	for id, in := range want {
		if m.instances[id] != nil {
			continue
		}
		ri, err := m.startInstance(in, model)
		if err != nil {
			errs = append(errs, fmt.Errorf("instance %s: %w", id, err))
			continue
		}
		m.instances[id] = ri
		started = append(started, in)
	}
	if err := m.writePrometheusTargetsLocked(); err != nil {
		errs = append(errs, fmt.Errorf("prometheus targets: %w", err))
	}
	if len(started) > 0 {
		sort.Slice(started, func(i, j int) bool { return started[i].NodeID < started[j].NodeID })
		m.printTable(started)
	}
	return errors.Join(errs...)
}

func (m *Mesh) printTable(ins []*Instance) {
	w := tabwriter.NewWriter(m.opts.Out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, "INSTANCE\tCLASS\tLISTENS ON\tAPP\tOUTBOUND (HTTP_PROXY)\tENVOY ADMIN (unix socket)")
	for _, in := range ins {
		var addrs string
		for i, p := range in.Ports {
			if i > 0 {
				addrs += ","
			}
			addrs += in.Addr(p)
		}
		app := "demo-app"
		if len(in.Command) > 0 {
			app = in.Command[0]
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s %s\t%s\t%s\n", in.NodeID, in.Class, addrs, app, in.AppAddr(), in.OutboundProxy(), in.AdminSocket)
	}
	w.Flush()
	for _, in := range ins {
		if in.Edge {
			for _, p := range in.Ports {
				fmt.Fprintf(m.opts.Out, "send traffic to %s: http://%s/\n", in.Service, in.Addr(p))
			}
		}
	}
}

// Instances are the running instances, sorted by node id.
func (m *Mesh) Instances() []Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Instance
	for _, ri := range m.instances {
		out = append(out, *ri.in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

// Instance returns the running instance with the node id, or nil.
func (m *Mesh) Instance(nodeID string) *Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ri := m.instances[nodeID]; ri != nil {
		in := *ri.in
		return &in
	}
	return nil
}

// Server is the current xDS server.
func (m *Mesh) Server() *xds.Server {
	m.cpMu.Lock()
	defer m.cpMu.Unlock()
	return m.server
}

// CA is the mesh CA.
func (m *Mesh) CA() *ca.CA { return m.ca }

// CAAddr is the address of the CA's gRPC service (TLS, no client
// certificate; the CA service only).
func (m *Mesh) CAAddr() string { return m.caAddr }

// XDSAddr is the address of the xDS server (mTLS with a workload
// certificate).
func (m *Mesh) XDSAddr() string {
	m.cpMu.Lock()
	defer m.cpMu.Unlock()
	return m.xdsAddr
}

// StateDir is the state directory in use (absolute).
func (m *Mesh) StateDir() string { return m.opts.StateDir }

// StatusAddr is the status endpoint's address (GET /status).
func (m *Mesh) StatusAddr() string { return m.statusAddr }

// Changed is closed at the next revision served or failure reported.
func (m *Mesh) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// WaitReady blocks until every running instance is connected and has
// ACKed the version of its class that is served, and its agent reports
// ready (Envoy has its listeners and certificate).
func (m *Mesh) WaitReady(ctx context.Context) error {
	for {
		if id, why := m.unreadyAgent(); id != "" {
			select {
			case <-time.After(50 * time.Millisecond):
				continue
			case <-ctx.Done():
				return fmt.Errorf("agent of %s not ready (%s): %w", id, why, ctx.Err())
			}
		}
		srv := m.Server()
		ch := srv.Changed()
		st := srv.Status()
		ids := map[string]bool{}
		for _, in := range m.Instances() {
			ids[in.NodeID] = true
		}
		ready := 0
		for _, p := range st.Proxies {
			if ids[p.NodeID] && p.Connected && p.InSync && p.AckedVersion != "" && p.AckedVersion == st.Classes[p.Class] {
				ready++
			}
		}
		if ready == len(ids) && len(ids) > 0 {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("%d of %d instances ready: %w", ready, len(ids), ctx.Err())
		}
	}
}

// unreadyAgent is the node id of an instance whose agent is not ready,
// and why.
func (m *Mesh) unreadyAgent() (id, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, ri := range m.instances {
		a := ri.agent.Load()
		if a == nil {
			return id, "agent not started"
		}
		if st := a.Status(); !st.Ready {
			return id, fmt.Sprintf("%s; envoy started %d time(s)", st.Reason, st.EnvoyStarts)
		}
	}
	return "", ""
}

// Stop stops everything: instances (apps, agents, Envoys), the servers.
func (m *Mesh) Stop() error {
	m.cancel()
	<-m.done
	m.stopControlPlane()
	return os.RemoveAll(m.runtime)
}

// Done is closed when the mesh has stopped.
func (m *Mesh) Done() <-chan struct{} { return m.done }

func (m *Mesh) stopAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, ri := range m.instances {
		ri.cancel()
		<-ri.done
		delete(m.instances, id)
	}
	_ = m.writePrometheusTargetsLocked()
}

func (m *Mesh) stopControlPlane() {
	if m.statusSrv != nil {
		_ = m.statusSrv.Close()
	}
	if s := m.Server(); s != nil {
		s.Stop()
	}
	if m.caServer != nil {
		m.caServer.srv.Stop()
	}
	_ = os.Remove(filepath.Join(m.opts.StateDir, StatusAddrFile))
}

func appPortsContain(m map[uint32]uint32, p uint32) bool {
	for _, q := range m {
		if q == p {
			return true
		}
	}
	return false
}
