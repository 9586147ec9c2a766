package compiler

import (
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"net/netip"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// edsCluster is an EDS cluster of a class and what its load assignment is
// made of: the addresses of some versions of a service, on one port.
type edsCluster struct {
	name     string   // the cluster's (and its load assignment's) name
	service  string   // the service whose endpoints it holds
	versions []string // one version, or every version of the service
	// all: the cluster of every version, whose endpoints carry their
	// version in their metadata (setEndpointVersions).
	all  bool
	port uint32 // the service port (replaces an address's port 0)
}

// WithEndpoints returns res with the load assignment of every EDS cluster
// rebuilt from eps, and the snapshot versions that go with them, without
// compiling again: for a res that Compile(m, eps0, opts) returned, it is
// what Compile(m, eps, opts) returns, byte for byte and version for
// version, as long as every address in eps is an IP literal (a DNS name
// would have made Compile choose a STRICT_DNS cluster, which EDS cannot
// become). It is the cheap path of an endpoint change in a cluster: only
// load assignments change, so a delta xDS client is sent only those.
//
// Listeners, routes, clusters and the load assignments that do not change
// are shared with res, and a class none of whose load assignments changes
// is returned as is (the same *Class), so that a server can tell at a
// glance what to resend. res is not modified. Cost: one hash per class
// over its load assignments (the hash of the rest is resumed from a state
// Compile kept), and one load assignment per distinct cluster.
//
// Errors: a nil eps (Compile's "the model's static endpoints", which the
// result does not carry), an address that is not an IP literal, a class
// that Compile did not make (built by hand, or a per-node variant), or a
// load assignment that fails Envoy's validation rules.
func WithEndpoints(res *Result, eps Endpoints) (*Result, error) {
	if res == nil {
		return nil, errors.New("compiler: WithEndpoints of a nil result")
	}
	if eps == nil {
		return nil, errors.New("compiler: WithEndpoints needs endpoints (nil means the model's static ones, which only Compile knows)")
	}
	r := &reassignment{eps: eps, loads: map[string]*loadAt{}, encoded: map[string][]byte{}, classes: map[string]*Class{}}
	out := &Result{Classes: make([]*Class, 0, len(res.Classes))}
	for _, c := range res.Classes {
		nc, err := r.class(c)
		if err != nil {
			return nil, err
		}
		out.Classes = append(out.Classes, nc)
	}
	return out, nil
}

// reassignment is one WithEndpoints call: the load assignments built so
// far (a cluster has the same one in every class that has it) and the
// classes already redone (the versions of a service share their
// resources).
type reassignment struct {
	eps     Endpoints
	loads   map[string]*loadAt
	encoded map[string][]byte // deterministic encodings, for the hash
	classes map[string]*Class // by service + old snapshot version
}

// loadAt is a load assignment of one WithEndpoints call: changed when
// its addresses differ from the result's, then cla is the new one.
type loadAt struct {
	cla     types.Resource
	changed bool
}

func (r *reassignment) class(c *Class) (*Class, error) {
	if c == nil {
		return nil, errors.New("compiler: WithEndpoints: nil class")
	}
	if c.hashState == nil {
		return nil, fmt.Errorf("compiler: WithEndpoints: class %s was not made by Compile", c.Name)
	}
	key := c.Service + "\x00" + c.SnapshotVersion
	if done, ok := r.classes[key]; ok {
		return versionOfDone(c, done), nil
	}
	old := c.Resources[resource.EndpointType]
	if len(old) != len(c.eds) {
		return nil, fmt.Errorf("compiler: WithEndpoints: class %s has %d load assignments for %d EDS clusters", c.Name, len(old), len(c.eds))
	}
	loads := make([]types.Resource, len(c.eds))
	var changed []*loadAt
	for i, e := range c.eds {
		if o := old[i]; cacheName(o) != e.name {
			return nil, fmt.Errorf("compiler: WithEndpoints: class %s: load assignment %q where %q was expected", c.Name, cacheName(o), e.name)
		}
		l, err := r.load(e, old[i])
		if err != nil {
			return nil, fmt.Errorf("compiler: class %s: %w", c.Name, err)
		}
		loads[i] = old[i] // the class's own message when it did not change
		if l.changed {
			loads[i] = l.cla
			changed = append(changed, l)
		}
	}
	nc := c
	if len(changed) > 0 {
		v, err := r.version(c, loads)
		if err != nil {
			return nil, err
		}
		cp := *c
		cp.Resources = make(map[resource.Type][]types.Resource, len(c.Resources))
		for t, rs := range c.Resources {
			cp.Resources[t] = rs
		}
		cp.Resources[resource.EndpointType] = loads
		cp.SnapshotVersion = v
		cp.inputs = nil // built from other endpoints: CompileFrom must not reuse it
		nc = &cp
	}
	r.classes[key] = nc
	return nc, nil
}

// versionOfDone is class c (another version of the service whose class
// done was redone from the same resources) with done's resources.
func versionOfDone(c, done *Class) *Class {
	if done.SnapshotVersion == c.SnapshotVersion {
		return c
	}
	cp := *c
	cp.Resources, cp.SnapshotVersion = done.Resources, done.SnapshotVersion
	return &cp
}

func cacheName(r types.Resource) string {
	if cla, ok := r.(*endpointv3.ClusterLoadAssignment); ok {
		return cla.GetClusterName()
	}
	return ""
}

// version is the snapshot version of class c with the given load
// assignments: the hash of its other resources resumed from the state
// Compile kept, then the load assignments.
func (r *reassignment) version(c *Class, loads []types.Resource) (string, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(c.hashState); err != nil {
		return "", fmt.Errorf("compiler: WithEndpoints: class %s: %w", c.Name, err)
	}
	for i, e := range c.eds {
		b, err := r.bytes(e.name, loads[i])
		if err != nil {
			return "", err
		}
		hashResource(h, resource.EndpointType, e.name, b)
	}
	return versionString(c.revision, hashSum(h)), nil
}

// bytes is the deterministic encoding of a load assignment, once per call.
func (r *reassignment) bytes(name string, cla types.Resource) ([]byte, error) {
	if b, ok := r.encoded[name]; ok {
		return b, nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cla)
	if err != nil {
		return nil, fmt.Errorf("hashing %s %q: %w", resource.EndpointType, name, err)
	}
	r.encoded[name] = b
	return b, nil
}

// load is the load assignment of EDS cluster e from the endpoints, built
// once per call, and only when its addresses differ from those of old,
// the one the result had.
func (r *reassignment) load(e edsCluster, old types.Resource) (*loadAt, error) {
	if l, ok := r.loads[e.name]; ok {
		return l, nil
	}
	lists := make([][]Address, 0, len(e.versions))
	for _, v := range e.versions {
		lists = append(lists, r.eps[e.service][v])
	}
	oc, _ := old.(*endpointv3.ClusterLoadAssignment)
	if e.all {
		return r.loadOfAll(e, oc, lists)
	}
	if holds, sure := holdsSorted(oc, lists, e.port); sure && holds {
		// The common case of an update: this cluster's endpoints did not
		// change. Told without merging (no allocation per cluster).
		l := &loadAt{}
		r.loads[e.name] = l
		return l, nil
	}
	addrs := mergeAddresses(lists, e.port)
	for _, a := range addrs {
		if _, err := netip.ParseAddr(a.Host); err != nil {
			return nil, fmt.Errorf("cluster %s: endpoint %q of service %s is not an IP address (EDS carries addresses only)", e.name, a.Host, e.service)
		}
	}
	l := &loadAt{}
	if oc == nil || !holds(oc, addrs) {
		cla := loadAssignment(e.name, addrs)
		if err := cla.ValidateAll(); err != nil {
			return nil, fmt.Errorf("cluster %s: load assignment: %w", e.name, err)
		}
		l.cla, l.changed = cla, true
	}
	r.loads[e.name] = l
	return l, nil
}

// loadOfAll is load for an all-versions cluster: its endpoints also say
// which version each belongs to, and a pod that changed versions keeping
// its address changes the load assignment.
func (r *reassignment) loadOfAll(e edsCluster, oc *endpointv3.ClusterLoadAssignment, lists [][]Address) (*loadAt, error) {
	addrs := mergeAddresses(lists, e.port)
	for _, a := range addrs {
		if _, err := netip.ParseAddr(a.Host); err != nil {
			return nil, fmt.Errorf("cluster %s: endpoint %q of service %s is not an IP address (EDS carries addresses only)", e.name, a.Host, e.service)
		}
	}
	byVersion := make(map[string][]Address, len(e.versions))
	for i, v := range e.versions {
		byVersion[v] = mergeAddresses(lists[i:i+1], e.port)
	}
	cla := loadAssignment(e.name, addrs)
	setEndpointVersions(cla, e.versions, byVersion)
	l := &loadAt{}
	if oc == nil || !proto.Equal(oc, cla) {
		if err := cla.ValidateAll(); err != nil {
			return nil, fmt.Errorf("cluster %s: load assignment: %w", e.name, err)
		}
		l.cla, l.changed = cla, true
	}
	r.loads[e.name] = l
	return l, nil
}

// holds reports whether cla is what loadAssignment makes of addrs.
func holds(cla *endpointv3.ClusterLoadAssignment, addrs []Address) bool {
	ls := cla.GetEndpoints()
	if len(addrs) == 0 {
		return len(ls) == 0
	}
	if len(ls) != 1 || len(ls[0].GetLbEndpoints()) != len(addrs) {
		return false
	}
	for i, lb := range ls[0].GetLbEndpoints() {
		sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
		if sa.GetAddress() != addrs[i].Host || sa.GetPortValue() != addrs[i].Port {
			return false
		}
	}
	return true
}

// holdsSorted is holds(cla, mergeAddresses(lists, port)) without merging,
// when every list is strictly increasing by host then port (port 0 read
// as port) and names no "localhost" — as a feed of pod IPs gives them;
// sure is false otherwise.
func holdsSorted(cla *endpointv3.ClusterLoadAssignment, lists [][]Address, port uint32) (holds, sure bool) {
	if cla == nil {
		return false, false
	}
	key := func(a Address) Address {
		if a.Port == 0 {
			a.Port = port
		}
		return a
	}
	less := func(a, b Address) bool { return a.Host < b.Host || a.Host == b.Host && a.Port < b.Port }
	total := 0
	for _, l := range lists {
		for i, a := range l {
			if a.Host == "localhost" || i > 0 && !less(key(l[i-1]), key(a)) {
				return false, false
			}
		}
		total += len(l)
	}
	ls := cla.GetEndpoints()
	if total == 0 {
		return len(ls) == 0, true
	}
	if len(ls) != 1 {
		return false, true
	}
	lbs := ls[0].GetLbEndpoints()
	var heads [8]int
	if len(lists) > len(heads) {
		return false, false
	}
	n := 0
	var prev Address
	for {
		min := -1
		for i, l := range lists {
			if heads[i] < len(l) && (min < 0 || less(key(l[heads[i]]), key(lists[min][heads[min]]))) {
				min = i
			}
		}
		if min < 0 {
			break
		}
		a := key(lists[min][heads[min]])
		heads[min]++
		if n > 0 && a == prev {
			continue // in two versions: once
		}
		if n >= len(lbs) {
			return false, true
		}
		sa := lbs[n].GetEndpoint().GetAddress().GetSocketAddress()
		if sa.GetAddress() != a.Host || sa.GetPortValue() != a.Port {
			return false, true
		}
		prev = a
		n++
	}
	return n == len(lbs), true
}
