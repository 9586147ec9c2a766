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

	"github.com/weft-dev/weft/compiler"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/reconciler/metrics"
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

// GateFunc builds the vet step for the revision checked out at dir (its
// policies/ folder may differ from one revision to the next).
type GateFunc func(ctx context.Context, dir string) (xds.VetFunc, error)

// Options configure a local mesh.
type Options struct {
	// Dir is the mesh repository (or an environment directory in it).
	Dir string
	// Env is the environment overlay (schema.Options.Env).
	Env string
	// Branch is the branch followed when Dir is a git repository
	// (default "main"); BranchSet makes Dir followed as git even when it
	// is a subdirectory of the repository.
	Branch    string
	BranchSet bool
	// StateDir holds the CA root, tokens, sockets, bootstraps, the
	// status address (default Dir/.weft).
	StateDir string
	// Poll is the interval of the git/directory poll (default 1s).
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
	// Vet is an extra vet step (nil: none).
	Vet xds.VetFunc
	// Gate builds the policy gate of each revision (nil: none; the CLI
	// uses PolicyGate).
	Gate GateFunc
	// RunSidecar runs an agent (default: the in-process agent).
	RunSidecar SidecarRunner
	// RunApp runs an app (default: DefaultAppRunner(os.Executable())).
	RunApp AppRunner
	// Out receives the human-readable report (what runs where); Log the
	// events.
	Out io.Writer
	Log *slog.Logger
}

// Mesh is a running local mesh.
type Mesh struct {
	opts   Options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
	err    error

	src         source
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
	pipeline   *xds.Pipeline
	metrics    *metrics.Metrics

	mu          sync.Mutex
	ips         *ipAllocator
	instances   map[string]*runningInstance // by node id
	placed      map[string]*Instance
	pending     *mesh.Model // the model the pipeline is compiling
	lastGood    *mesh.Model // the model being served
	lastGoodRev revision    // its revision
	gate        xds.VetFunc // the policy gate of the revision being applied
	changed     chan struct{}
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

// Start starts the local mesh: it waits for the first revision that
// loads (its trust domain is the CA's), starts the CA, the xDS server and
// the status endpoint, serves the revision and runs its instances; then
// it keeps following the source until ctx ends or Stop.
func Start(ctx context.Context, o Options) (*Mesh, error) {
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
	if o.StateDir == "" {
		o.StateDir = filepath.Join(o.Dir, ".weft")
	}
	if o.Envoy == "" {
		o.Envoy = "envoy"
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
			return nil, err
		}
		o.RunApp = ExecAppRunner(exe)
	}
	o.Dir, o.Env = environmentOf(o.Dir, o.Env)
	state, err := filepath.Abs(o.StateDir)
	if err != nil {
		return nil, err
	}
	o.StateDir = state
	if err := os.MkdirAll(filepath.Join(state, "run"), 0o700); err != nil {
		return nil, err
	}
	ips, err := newIPAllocator(o.IPBase)
	if err != nil {
		return nil, err
	}
	src, err := newSource(o.Dir, o.Branch, o.BranchSet, o.Poll, filepath.Join(state, "run"))
	if err != nil {
		return nil, err
	}
	m := &Mesh{opts: o, log: o.Log, src: src, ips: ips, instances: map[string]*runningInstance{}, placed: map[string]*Instance{},
		done: make(chan struct{}), changed: make(chan struct{})}
	m.ctx, m.cancel = context.WithCancel(ctx)
	if o.Env != "" {
		fmt.Fprintf(o.Out, "weft up: environment %s of %s\n", o.Env, o.Dir)
	}
	fmt.Fprintf(o.Out, "weft up: following %s\n", src.Describe())

	// The first revision that loads gives the trust domain.
	var first revision
	for {
		rev, err := src.Next(m.ctx)
		if err != nil {
			m.cancel()
			return nil, err
		}
		model, err := schema.Load(rev.Dir, schema.Options{Env: o.Env, Revision: rev.Name})
		if err == nil {
			m.trustDomain = model.TrustDomain
			first = rev
			break
		}
		fmt.Fprintf(o.Out, "weft up: revision %s does not load, waiting for the next one:\n%v\n", rev.Name, err)
		if rev.cleanup != nil {
			rev.cleanup()
		}
	}
	if err := m.startControlPlane(); err != nil {
		m.cancel()
		m.stopControlPlane()
		return nil, err
	}
	m.wg.Add(1)
	go m.loop(first)
	go func() {
		m.wg.Wait()
		close(m.done)
	}()
	return m, nil
}

// environmentOf turns an environment directory (environments/dev) into
// its repository and environment name, so that it loads, and is vetted
// by the policies, exactly as `weft vet REPO --env dev` does.
func environmentOf(dir, env string) (string, string) {
	if env != "" {
		return dir, env
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir, env
	}
	root := schema.ModuleRoot(abs)
	rel, err := filepath.Rel(root, abs)
	if err != nil || rel == "." {
		return dir, env
	}
	for _, e := range schema.Environments(root) {
		if rel == e || rel == filepath.Join("environments", e) {
			return root, e
		}
	}
	return dir, env
}

func (m *Mesh) startControlPlane() error {
	o := m.opts
	var err error
	m.ca, err = ca.New(ca.Config{TrustDomain: m.trustDomain, StateDir: filepath.Join(o.StateDir, "ca"), MinTTL: o.CAMinTTL})
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
	m.metrics, err = metrics.New(nil, func() status.Status { return m.Server().Status() })
	if err != nil {
		return err
	}
	caSrv := xds.New(xds.Options{TLS: caTLS, Logger: m.log, GRPCOptions: m.metrics.ServerOptions()}) // a gRPC server with TLS; only the CA service is used
	ca.NewServer(m.ca, m.auth, m.log).Register(caSrv.GRPC())
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
	m.pipeline = &xds.Pipeline{Server: m.server, Env: o.Env, Vet: m.vet, Endpoints: m.endpoints, Observe: m.metrics.ObserveStep}

	ln, err := net.Listen("tcp", o.StatusAddr)
	if err != nil {
		return fmt.Errorf("status endpoint: %w", err)
	}
	m.statusAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("GET "+metrics.Path, m.metrics.Handler())
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.Server().Handler().ServeHTTP(w, r)
	}))
	m.statusSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = m.statusSrv.Serve(ln) }()
	if err := m.writePrometheusConfig(); err != nil {
		return fmt.Errorf("prometheus configuration: %w", err)
	}
	fmt.Fprintf(o.Out, "weft up: Prometheus scrape configuration: %s\n", m.PrometheusConfigPath())
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
	srv := xds.New(xds.Options{TLS: xdsTLS, PerNode: PerNode, Logger: m.log, GRPCOptions: m.metrics.ServerOptions()})
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
	old.Stop()
	time.Sleep(down)
	if err := m.startXDS(addr); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pipeline.Server = m.Server()
	m.gate = nil // the revision was vetted when it was first served
	if m.lastGoodRev.Name == "" {
		return nil
	}
	// Compiling is deterministic: the same revision gives the same
	// snapshot versions, which the reconnecting Envoys already have.
	return m.pipeline.Reconcile(m.lastGoodRev.Dir, m.lastGoodRev.Name)
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

// vet checks the trust domain (fixed for the life of the CA) and runs
// the configured policy gate.
func (m *Mesh) vet(model *mesh.Model) error {
	if model.TrustDomain != m.trustDomain {
		return fmt.Errorf("trust domain changed from %q to %q: restart weft up to change it", m.trustDomain, model.TrustDomain)
	}
	if m.gate != nil {
		if err := m.gate(model); err != nil {
			return err
		}
	}
	if m.opts.Vet != nil {
		return m.opts.Vet(model)
	}
	return nil
}

// endpoints places every replica of every version (new ones get an IP and
// app ports; existing ones keep theirs) and returns their addresses.
func (m *Mesh) endpoints(model *mesh.Model) (compiler.Endpoints, error) {
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
	m.pending = model
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
	if in := m.placed[id]; in != nil && equalPorts(in.Ports, ports) {
		return in, nil
	}
	ip := ""
	if in := m.placed[id]; in != nil {
		ip = in.IP
	} else {
		var err error
		if ip, err = m.ips.take(); err != nil {
			return nil, err
		}
	}
	in := &Instance{Class: class, Service: svc.Name, Version: version, Replica: replica, NodeID: id, IP: ip,
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
	// Envoy's admin on the instance's own IP: the usual 15000 is free
	// there unless the service itself uses it.
	admin := uint32(compiler.DefaultAdminPort)
	for containsPort(ports, admin) || appPortsContain(in.AppPorts, admin) {
		var err error
		if admin, err = freePort(ip); err != nil {
			return nil, err
		}
	}
	in.AdminAddr = net.JoinHostPort(ip, strconv.Itoa(int(admin)))
	// The stats listener (Prometheus) likewise on the usual 15090.
	stats := uint32(compiler.DefaultStatsPort)
	for containsPort(ports, stats) || appPortsContain(in.AppPorts, stats) || stats == admin {
		var err error
		if stats, err = freePort(ip); err != nil {
			return nil, err
		}
	}
	in.StatsAddr = net.JoinHostPort(ip, strconv.Itoa(int(stats)))
	if svc.Local != nil {
		in.Command = svc.Local.Command
	}
	m.placed[id] = in
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

// loop runs the pipeline on every revision of the source. The exported
// copy of the revision being served is kept (a control-plane restart
// compiles it again); the others are removed.
func (m *Mesh) loop(rev revision) {
	defer m.wg.Done()
	for {
		if m.apply(rev) {
			m.mu.Lock()
			old := m.lastGoodRev
			m.lastGoodRev = rev
			m.mu.Unlock()
			if old.cleanup != nil && old.Dir != rev.Dir {
				old.cleanup()
			}
		} else if rev.cleanup != nil {
			rev.cleanup()
		}
		next, err := m.src.Next(m.ctx)
		if err != nil {
			break
		}
		rev = next
	}
	m.stopAll()
	if m.lastGoodRev.cleanup != nil {
		m.lastGoodRev.cleanup()
	}
}

// apply runs one revision through the pipeline and, when it is served,
// starts and stops instances to match it.
func (m *Mesh) apply(rev revision) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	start := time.Now()
	m.gate = nil
	if m.opts.Gate != nil {
		g, err := m.opts.Gate(m.ctx, rev.Dir)
		if err != nil {
			m.Server().RecordFailure(rev.Name, status.StepVet, fmt.Errorf("policies: %w", err))
			m.metrics.RevisionFailed(status.StepVet)
			fmt.Fprintf(m.opts.Out, "weft up: revision %s rejected (the previous one keeps serving): policies: %v\n", rev.Name, err)
			m.notifyLocked()
			return false
		}
		m.gate = g
	}
	err := m.pipeline.Reconcile(rev.Dir, rev.Name)
	if err != nil {
		fmt.Fprintf(m.opts.Out, "weft up: revision %s rejected (the previous one keeps serving):\n%v\n", rev.Name, err)
		m.notifyLocked()
		return false
	}
	m.lastGood = m.pending
	if err := m.reconcileLocked(m.lastGood); err != nil {
		fmt.Fprintf(m.opts.Out, "weft up: %v\n", err)
	}
	if err := m.writeRulesLocked(m.lastGood); err != nil {
		fmt.Fprintf(m.opts.Out, "weft up: prometheus rules: %v\n", err)
	}
	fmt.Fprintf(m.opts.Out, "weft up: serving %s (compiled and published in %s)\n", rev.Name, time.Since(start).Round(time.Millisecond))
	m.notifyLocked()
	return true
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
				if in := m.placed[id]; in != nil {
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
	fmt.Fprintln(w, "INSTANCE\tCLASS\tLISTENS ON\tAPP\tOUTBOUND (HTTP_PROXY)\tENVOY ADMIN")
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
		fmt.Fprintf(w, "%s\t%s\t%s\t%s %s\t%s\thttp://%s\n", in.NodeID, in.Class, addrs, app, in.AppAddr(), in.OutboundProxy(), in.AdminAddr)
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

// StatusAddr is the status endpoint's address (GET /status).
func (m *Mesh) StatusAddr() string { return m.statusAddr }

// Changed is closed at the next attempt to serve a revision.
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
	return m.err
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
