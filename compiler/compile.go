package compiler

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// Default ports of a proxy.
const (
	DefaultInboundPort  = 15006
	DefaultOutboundPort = 15001
)

// Options are the inputs of a compilation that are not part of the model.
type Options struct {
	// Revision is the source revision. It is part of every class's
	// snapshot version and of every resource's provenance. Empty means
	// the model's own Revision.
	Revision string
	// InboundPort is the port of the inbound listener (default 15006).
	InboundPort uint32
	// OutboundPort is the port of the outbound HTTP listener on loopback
	// (default 15001): the app's HTTP_PROXY, or the iptables redirect target.
	OutboundPort uint32
}

func (o Options) withDefaults(m *mesh.Model) Options {
	if o.Revision == "" {
		o.Revision = m.Revision
	}
	if o.InboundPort == 0 {
		o.InboundPort = DefaultInboundPort
	}
	if o.OutboundPort == 0 {
		o.OutboundPort = DefaultOutboundPort
	}
	return o
}

// Address is one endpoint of a service version. Port 0 means "the service
// port of the cluster": one address then serves every port of a
// multi-port service, which is what a pod IP from an EndpointSlice is.
type Address struct {
	Host string
	Port uint32
}

// Endpoints gives the addresses of each (service, version):
// service -> version -> addresses. A nil Endpoints means: use the static
// endpoints of the model (Version.Endpoints, "host:port"). A service or
// version missing from a non-nil Endpoints has no addresses.
type Endpoints map[string]map[string][]Address

// Class is the configuration of one proxy class, a (service, version):
// every proxy of the class receives exactly these resources.
type Class struct {
	Name    string // "<service>-<version>"
	Service string
	Version string
	// Mesh and Namespace are the mesh's name and the service's namespace
	// (the fixed stats tags of the class's proxies, see StatsConfig).
	Mesh      string
	Namespace string
	// SnapshotVersion is "<revision>/<first 12 hex digits of the sha256
	// of the resources>" (just the hash when the revision is empty).
	SnapshotVersion string
	// Provenance says where each resource, and each filter chain, virtual
	// host and route in one, came from (shared like Resources).
	Provenance Provenances
	// Resources by go-control-plane type URL: the four of ResourceTypes,
	// always present (possibly empty), each list sorted by resource name.
	// The messages may be shared with other classes of the same service,
	// and with the same class of an earlier Result (CompileFrom): treat
	// them as immutable and proto.Clone before patching one.
	Resources map[resource.Type][]types.Resource

	// What WithEndpoints needs to rebuild the load assignments without
	// compiling again: the revision, the EDS clusters (sorted by name) and
	// the state of the snapshot version's hash after every resource but
	// the load assignments. Set by Compile; a class built otherwise has
	// none.
	revision  string
	eds       []edsCluster
	hashState []byte

	// inputs are what the class was built from (nil for a class not made
	// by Compile, or changed by WithEndpoints): CompileFrom's reason to
	// reuse it.
	inputs *classInputs
}

// Hash is the content hash of the class's resources: its snapshot
// version without the revision. Two classes with the same hash hold the
// same resources.
func (c *Class) Hash() string {
	if c.inputs != nil {
		return c.inputs.hash
	}
	if i := strings.LastIndexByte(c.SnapshotVersion, '/'); i >= 0 {
		return c.SnapshotVersion[i+1:]
	}
	return c.SnapshotVersion
}

// Inputs are the other services whose definitions the class's
// configuration was built from (its dependencies, their mirror targets,
// the services its authorization names or admits by default), sorted; nil
// for a class not made by Compile.
func (c *Class) Inputs() []string {
	if c.inputs == nil {
		return nil
	}
	out := append(append([]string(nil), c.inputs.touched...), c.inputs.identities...)
	sort.Strings(out)
	return out
}

// Result is a compiled mesh.
type Result struct {
	Classes []*Class // sorted by Name
	// Stats says how much of the result CompileFrom reused.
	Stats CompileStats
}

// CompileStats count the services whose classes a compilation built and
// those it took unchanged from an earlier Result.
type CompileStats struct {
	Compiled int // services compiled
	Reused   int // services whose classes were reused
}

// Class returns the class with the given name, or nil.
func (r *Result) Class(name string) *Class {
	i := sort.Search(len(r.Classes), func(i int) bool { return r.Classes[i].Name >= name })
	if i < len(r.Classes) && r.Classes[i].Name == name {
		return r.Classes[i]
	}
	return nil
}

// Compile turns a validated model into the Envoy resources of every proxy
// class. It is a pure function: the same model, endpoints and options
// always give byte-identical resources and snapshot versions. Services
// are compiled concurrently, one worker per core.
//
// Compile includes the acceptance gate (accept.go): when the model holds
// a value Envoy would reject, or a resource fails Envoy's checks, the
// error is a schema.Errors listing every problem with its position, and
// no result is returned.
func Compile(m *mesh.Model, eps Endpoints, opts Options) (*Result, error) {
	return CompileFrom(nil, m, eps, opts)
}

// CompileFrom is Compile that reuses the classes of prev (an earlier
// Result of Compile or CompileFrom, possibly of another revision; nil
// reuses nothing) whose inputs did not change: a service's classes are
// taken from prev, with only their snapshot version's revision updated,
// when the fingerprint of everything they were built from is the same —
// the service (defaults resolved), every service it read (its calls, the
// mirror targets of their routes, the services its authz names, its
// default callers), the positions written below those services (for
// provenance), their endpoints, the trust domain and the options. The
// result is exactly Compile's: a change to one service recompiles that
// service and the services that depend on it, nothing else. Result.Stats
// says how many services were compiled and reused. The acceptance gate
// checks the whole model and the resources of every compiled class (a
// reused class passed it before).
func CompileFrom(prev *Result, m *mesh.Model, eps Endpoints, opts Options) (*Result, error) {
	return compileFrom(prev, m, eps, opts, true)
}

// compile is Compile; gate false skips the acceptance gate, for the parity
// test that shows what Envoy does with what the gate refuses.
func compile(m *mesh.Model, eps Endpoints, opts Options, gate bool) (*Result, error) {
	return compileFrom(nil, m, eps, opts, gate)
}

func compileFrom(prev *Result, m *mesh.Model, eps Endpoints, opts Options, gate bool) (*Result, error) {
	if m == nil {
		return nil, fmt.Errorf("compiler: nil model")
	}
	opts = opts.withDefaults(m)
	if opts.InboundPort == opts.OutboundPort {
		return nil, fmt.Errorf("compiler: inbound and outbound port are both %d", opts.InboundPort)
	}
	c := &compilation{m: m, svcs: resolve(m), eps: eps, opts: opts, gate: gate}
	c.revision = c.opts.Revision
	// The acceptance gate, first on the model (exact positions), then on
	// every compiled class's resources (in class).
	if gate {
		stop := timeGate()
		es := c.acceptModel()
		stop()
		if len(es) > 0 {
			return nil, es.Sorted()
		}
	}
	c.callers = defaultCallerIndex(c.svcs)
	fps := c.fingerprints()
	reusable := previousInputs(prev)

	names := m.ServiceNames()
	out := make([][]*Class, len(names))
	errs := make([]error, len(names))
	reused := make([]bool, len(names))
	work := func(i int) {
		name := names[i]
		svc := c.svcs[name]
		if svc == nil {
			errs[i] = fmt.Errorf("compiler: service %q is nil", name)
			return
		}
		// Nothing a class receives depends on its version yet, so the
		// versions of a service share one compilation (and one snapshot
		// version: a proxy moving between them sees no change).
		versions := svc.VersionNames()
		if len(versions) == 0 {
			return
		}
		var first *Class
		if p := reusable[name]; p != nil && p.inputs != nil &&
			classKey(fps, name, c.callers[name], p.inputs.touched, p.inputs.identities) == p.inputs.key &&
			p.inputs.samePositions(m) {
			cl := *p
			cl.SnapshotVersion, cl.revision = versionString(c.revision, p.inputs.hash), c.revision
			first, reused[i] = &cl, true
		} else {
			var err error
			first, err = c.class(svc, versions[0], fps)
			if es, ok := err.(schema.Errors); ok {
				errs[i] = es
				return
			}
			if err != nil {
				errs[i] = fmt.Errorf("compiler: class %s: %w", ClassName(name, versions[0]), err)
				return
			}
		}
		for _, v := range versions {
			cl := *first
			cl.Name, cl.Version = ClassName(name, v), v
			out[i] = append(out[i], &cl)
		}
	}
	parallel(len(names), work)
	res := &Result{}
	var rejected schema.Errors
	for i := range names {
		if es, ok := errs[i].(schema.Errors); ok {
			rejected = append(rejected, es...)
			continue
		}
		if errs[i] != nil {
			return nil, errs[i]
		}
		if len(out[i]) == 0 {
			continue
		}
		if reused[i] {
			res.Stats.Reused++
		} else {
			res.Stats.Compiled++
		}
		res.Classes = append(res.Classes, out[i]...)
	}
	if len(rejected) > 0 {
		return nil, rejected.Sorted()
	}
	sort.Slice(res.Classes, func(i, j int) bool { return res.Classes[i].Name < res.Classes[j].Name })
	return res, nil
}

// previousInputs indexes the classes of prev by service (one per
// service: its versions share their inputs).
func previousInputs(prev *Result) map[string]*Class {
	out := map[string]*Class{}
	if prev == nil {
		return out
	}
	for _, c := range prev.Classes {
		if out[c.Service] == nil && c.inputs != nil {
			out[c.Service] = c
		}
	}
	return out
}

// parallelChunks runs work on one contiguous chunk of 0..n-1 per core.
func parallelChunks(n int, work func(lo, hi int)) {
	workers := max(1, min(runtime.GOMAXPROCS(0), n/64))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(n*w/workers, n*(w+1)/workers)
		}()
	}
	wg.Wait()
}

// parallel runs work(0..n-1) on one worker per core.
func parallel(n int, work func(int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			work(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				work(i)
			}
		}()
	}
	wg.Wait()
}

// compilation is the state shared by all classes of one Compile call.
type compilation struct {
	m        *mesh.Model
	svcs     map[string]*mesh.Service // resolved copies of m.Services
	eps      Endpoints
	opts     Options
	revision string
	gate     bool       // run the acceptance gate
	regexes  regexCache // the gate's verdict per distinct regex
	checked  sync.Map   // messages the gate has checked (shared ones once)
	// callers are the default callers of each service (see
	// defaultCallers), computed once for all classes.
	callers map[string][]string
	// shared holds the outbound clusters the classes share: cluster
	// name -> *sharedCluster.
	shared sync.Map
}

// classBuilder collects the resources of one class.
type classBuilder struct {
	*compilation
	packer
	svc       *mesh.Service
	version   string
	listeners map[string]*listenerv3.Listener
	routes    map[string]*routev3.RouteConfiguration
	clusters  map[string]*clusterv3.Cluster
	loads     map[string]*endpointv3.ClusterLoadAssignment
	eds       map[string]edsCluster
	origin    origins
	// touched are the other services whose definitions the class read:
	// every read goes through service or lookup, so that CompileFrom
	// knows what the class depends on.
	touched map[string]bool
	// identities are the services of which the class read only the
	// identity (see identity).
	identities map[string]bool
	// positions are the source positions the class looked up.
	positions map[string]mesh.Pos
	// sharedAnys are the Anys of the outbound clusters the class shares
	// with others (the gate checks them once per compilation).
	sharedAnys map[*anypb.Any]bool
}

func (c *compilation) class(svc *mesh.Service, version string, fps inputFingerprints) (*Class, error) {
	cl, packed, shared, err := c.assemble(svc, version, fps)
	if err != nil {
		return nil, err
	}
	if c.gate {
		stop := timeGate()
		fs := c.checkResources(packed, shared, cl.Resources)
		stop()
		if len(fs) > 0 {
			return nil, c.findingErrors(fs, cl.Provenance)
		}
	}
	h, state, err := contentHash(cl.Resources)
	if err != nil {
		return nil, err
	}
	cl.SnapshotVersion, cl.revision, cl.hashState = versionString(c.revision, h), c.revision, state
	cl.inputs.hash = h
	return cl, nil
}

// assemble builds a class's resources, provenance and inputs; packed maps
// the Anys in them to the messages they hold.
func (c *compilation) assemble(svc *mesh.Service, version string, fps inputFingerprints) (*Class, map[*anypb.Any]proto.Message, map[*anypb.Any]bool, error) {
	b := &classBuilder{
		compilation: c,
		svc:         svc,
		version:     version,
		listeners:   map[string]*listenerv3.Listener{},
		routes:      map[string]*routev3.RouteConfiguration{},
		clusters:    map[string]*clusterv3.Cluster{},
		loads:       map[string]*endpointv3.ClusterLoadAssignment{},
		eds:         map[string]edsCluster{},
		origin:      origins{},
		touched:     map[string]bool{},
		identities:  map[string]bool{},
		positions:   map[string]mesh.Pos{},
	}
	if err := b.build(); err != nil {
		return nil, nil, nil, err
	}
	if b.err != nil {
		return nil, nil, nil, b.err
	}
	cl := &Class{
		Name:      ClassName(svc.Name, version),
		Service:   svc.Name,
		Version:   version,
		Mesh:      c.m.Name,
		Namespace: svc.Namespace,
		Resources: map[resource.Type][]types.Resource{},
	}
	// Every type is present, if empty, so that the snapshot answers (and
	// versions) all four.
	for _, t := range ResourceTypes {
		cl.Resources[t] = []types.Resource{}
	}
	for _, k := range mesh.SortedKeys(b.listeners) {
		cl.Resources[resource.ListenerType] = append(cl.Resources[resource.ListenerType], b.listeners[k])
	}
	for _, k := range mesh.SortedKeys(b.routes) {
		cl.Resources[resource.RouteType] = append(cl.Resources[resource.RouteType], b.routes[k])
	}
	for _, k := range mesh.SortedKeys(b.clusters) {
		cl.Resources[resource.ClusterType] = append(cl.Resources[resource.ClusterType], b.clusters[k])
	}
	for _, k := range mesh.SortedKeys(b.loads) {
		cl.Resources[resource.EndpointType] = append(cl.Resources[resource.EndpointType], b.loads[k])
	}
	for _, k := range mesh.SortedKeys(b.eds) {
		cl.eds = append(cl.eds, b.eds[k])
	}
	cl.Provenance = b.origin.provenances(cl.Resources)
	delete(b.touched, svc.Name)
	delete(b.identities, svc.Name)
	for name := range b.touched {
		delete(b.identities, name) // read in full anyway
	}
	in := &classInputs{touched: mesh.SortedKeys(b.touched), identities: mesh.SortedKeys(b.identities), positions: b.positions}
	in.key = classKey(fps, svc.Name, c.callers[svc.Name], in.touched, in.identities)
	cl.inputs = in
	return cl, b.packed, b.sharedAnys, nil
}

func (b *classBuilder) build() error {
	if err := b.checkPorts(); err != nil {
		return err
	}
	deps, err := b.dependencies()
	if err != nil {
		return err
	}
	if err := b.inbound(); err != nil {
		return err
	}
	if err := b.outboundHTTP(deps); err != nil {
		return err
	}
	if err := b.tracingCluster(); err != nil {
		return err
	}
	return b.outboundTCP(deps)
}

// dependencies are the services of the class's calls, sorted, without
// duplicates: the scope of its outbound configuration.
func (b *classBuilder) dependencies() ([]*mesh.Service, error) {
	seen := map[string]bool{}
	var names []string
	for _, n := range b.svc.Calls {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	deps := make([]*mesh.Service, 0, len(names))
	for _, n := range names {
		d, err := b.service(n)
		if err != nil {
			return nil, fmt.Errorf("calls: %w", err)
		}
		deps = append(deps, d)
	}
	return deps, nil
}

// service is the resolved service name, read by the class (recorded).
func (b *classBuilder) service(name string) (*mesh.Service, error) {
	s := b.lookup(name)
	if s == nil {
		return nil, fmt.Errorf("unknown service %q", name)
	}
	return s, nil
}

// lookup is the resolved service name or nil, read by the class
// (recorded, also when it does not exist: adding it changes the class).
func (b *classBuilder) lookup(name string) *mesh.Service {
	b.touched[name] = true
	return b.svcs[name]
}

// identity is the resolved service name or nil, of which the class only
// reads the identity (namespace, service account: its SPIFFE id);
// recorded as such, so that other changes to it leave the class alone.
func (b *classBuilder) identity(name string) *mesh.Service {
	b.identities[name] = true
	return b.svcs[name]
}

// checkPorts rejects service ports that the proxy itself listens on.
func (b *classBuilder) checkPorts() error {
	for _, p := range b.svc.PortList() {
		if p.Port == b.opts.InboundPort || p.Port == b.opts.OutboundPort {
			return fmt.Errorf("port %s (%d) collides with the proxy's inbound/outbound port", p.Name, p.Port)
		}
	}
	return nil
}

// isHTTP reports whether a port carries HTTP (HTTP/1, HTTP/2 or gRPC).
func isHTTP(p mesh.Port) bool { return p.Protocol != mesh.TCP }

// resolve returns a copy of the model's services with every defaulted
// field filled in. The loader already does this; the compiler does it
// again, defensively, so that it never emits a half-configured resource
// for a hand-built model.
func resolve(m *mesh.Model) map[string]*mesh.Service {
	out := make(map[string]*mesh.Service, len(m.Services))
	for name, s := range m.Services {
		if s == nil {
			continue
		}
		r := mesh.Resolve(name, *s, m.Defaults)
		out[name] = &r
	}
	return out
}
