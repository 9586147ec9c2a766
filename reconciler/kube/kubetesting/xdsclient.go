package kubetesting

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/anypb"
)

// XDSClient speaks delta ADS the way Envoy does: CDS and LDS wildcard,
// EDS and RDS by the names the clusters and listeners reference, ACKs
// every response, and reconnects (every 100 ms) when its stream breaks,
// reopening every type with initial_resource_versions. It records every
// response for the test to inspect.
type XDSClient struct {
	Node   *corev3.Node
	target string
	creds  credentials.TransportCredentials

	mu        sync.Mutex
	state     ClientState
	changed   chan struct{}
	resources map[string]map[string]string // type -> name -> version held
	bodies    map[string]map[string]*anypb.Any
	edsNames  []string
	rdsNames  []string
}

// ClientState is what an XDSClient has seen.
type ClientState struct {
	// Versions is the system_version_info of the last response per type.
	Versions map[string]string
	// Responses counts the responses per type; Log lists them in order.
	Responses map[string]int
	Log       []Response
	// Connects counts the streams that received a response; Connected
	// is when the current one received its first.
	Connects  int
	Connected time.Time
	// Err is why the last stream ended.
	Err error
}

// Response is one response received.
type Response struct {
	At      time.Time
	Type    string
	Version string
	Names   []string // resources sent
	Removed []string
}

// NewXDSClient is a client of target (through the given credentials) as
// node. Run it with Run.
func NewXDSClient(target string, creds credentials.TransportCredentials, node *corev3.Node) *XDSClient {
	return &XDSClient{Node: node, target: target, creds: creds, changed: make(chan struct{}),
		state:     ClientState{Versions: map[string]string{}, Responses: map[string]int{}},
		resources: map[string]map[string]string{}, bodies: map[string]map[string]*anypb.Any{}}
}

// Resource is the resource of type t named name that the client holds
// (nil if none).
func (c *XDSClient) Resource(t, name string) *anypb.Any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bodies[t][name]
}

// State is a copy of what the client has seen.
func (c *XDSClient) State() ClientState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.state
	s.Versions = cloneMap(c.state.Versions)
	s.Responses = map[string]int{}
	for k, v := range c.state.Responses {
		s.Responses[k] = v
	}
	s.Log = slices.Clone(c.state.Log)
	return s
}

// Held is the version of each resource of type t the client holds.
func (c *XDSClient) Held(t string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cloneMap(c.resources[t])
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Wait blocks until cond holds on the client's state, or ctx ends.
func (c *XDSClient) Wait(ctx context.Context, what string, cond func(ClientState) bool) error {
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		st := c.State()
		if cond(st) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("client %s: %s: %w (versions %v, responses %v, connects %d, last error %v)",
				c.Node.GetId(), what, ctx.Err(), st.Versions, st.Responses, st.Connects, st.Err)
		}
	}
}

// Run connects and keeps the client connected until ctx ends.
func (c *XDSClient) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := c.stream(ctx)
		c.mu.Lock()
		c.state.Err = err
		c.notify()
		c.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// notify wakes Wait; c.mu is held.
func (c *XDSClient) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// stream runs one ADS stream until it breaks.
func (c *XDSClient) stream(ctx context.Context) error {
	conn, err := grpc.NewClient(c.target, grpc.WithTransportCredentials(c.creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	first := true
	var reqs []*discoveryv3.DeltaDiscoveryRequest
	for _, t := range []string{resource.ClusterType, resource.ListenerType} {
		reqs = append(reqs, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, InitialResourceVersions: cloneMap(c.resources[t])})
	}
	if len(c.edsNames) > 0 {
		reqs = append(reqs, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: c.edsNames,
			InitialResourceVersions: cloneMap(c.resources[resource.EndpointType])})
	}
	if len(c.rdsNames) > 0 {
		reqs = append(reqs, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesSubscribe: c.rdsNames,
			InitialResourceVersions: cloneMap(c.resources[resource.RouteType])})
	}
	c.mu.Unlock()
	reqs[0].Node = c.Node
	for _, r := range reqs {
		if err := st.Send(r); err != nil {
			return err
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		more, err := c.handle(resp, first)
		if err != nil {
			return err
		}
		first = false
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		for _, r := range more {
			if err := st.Send(r); err != nil {
				return err
			}
		}
	}
}

// handle records a response and returns the subscription changes it
// causes (EDS names from clusters, RDS names from listeners).
func (c *XDSClient) handle(resp *discoveryv3.DeltaDiscoveryResponse, first bool) ([]*discoveryv3.DeltaDiscoveryRequest, error) {
	t := resp.GetTypeUrl()
	c.mu.Lock()
	defer c.mu.Unlock()
	held := c.resources[t]
	if held == nil {
		held = map[string]string{}
		c.resources[t] = held
	}
	r := Response{At: time.Now(), Type: t, Version: resp.GetSystemVersionInfo(), Removed: resp.GetRemovedResources()}
	bodies := c.bodies[t]
	if bodies == nil {
		bodies = map[string]*anypb.Any{}
		c.bodies[t] = bodies
	}
	for _, res := range resp.GetResources() {
		held[res.GetName()] = res.GetVersion()
		bodies[res.GetName()] = res.GetResource()
		r.Names = append(r.Names, res.GetName())
	}
	for _, name := range resp.GetRemovedResources() {
		delete(held, name)
		delete(bodies, name)
	}
	if first {
		c.state.Connects++
		c.state.Connected = r.At
	}
	c.state.Versions[t] = r.Version
	c.state.Responses[t]++
	c.state.Log = append(c.state.Log, r)
	defer c.notify()

	var more []*discoveryv3.DeltaDiscoveryRequest
	switch t {
	case resource.ClusterType:
		names, err := edsNames(resp)
		if err != nil {
			return nil, err
		}
		if req := resubscribe(resource.EndpointType, &c.edsNames, names, c.resources[resource.EndpointType]); req != nil {
			more = append(more, req)
		}
	case resource.ListenerType:
		names, err := rdsNames(resp)
		if err != nil {
			return nil, err
		}
		if req := resubscribe(resource.RouteType, &c.rdsNames, names, c.resources[resource.RouteType]); req != nil {
			more = append(more, req)
		}
	}
	return more, nil
}

// resubscribe adds the names not yet subscribed (Envoy does not drop
// subscriptions of clusters it still has; the test meshes never remove
// one).
func resubscribe(t string, cur *[]string, names []string, held map[string]string) *discoveryv3.DeltaDiscoveryRequest {
	var add []string
	for _, n := range names {
		if !slices.Contains(*cur, n) {
			add = append(add, n)
		}
	}
	if len(add) == 0 {
		return nil
	}
	*cur = append(*cur, add...)
	slices.Sort(*cur)
	return &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: add}
}

// edsNames are the load assignments the EDS clusters of a CDS response
// need.
func edsNames(resp *discoveryv3.DeltaDiscoveryResponse) ([]string, error) {
	var out []string
	for _, r := range resp.GetResources() {
		cl := &clusterv3.Cluster{}
		if err := r.GetResource().UnmarshalTo(cl); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", r.GetName(), err)
		}
		if cl.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		name := cl.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = cl.GetName()
		}
		out = append(out, name)
	}
	return out, nil
}

// rdsNames are the route configurations the listeners of an LDS response
// name.
func rdsNames(resp *discoveryv3.DeltaDiscoveryResponse) ([]string, error) {
	var out []string
	for _, r := range resp.GetResources() {
		l := &listenerv3.Listener{}
		if err := r.GetResource().UnmarshalTo(l); err != nil {
			return nil, fmt.Errorf("listener %s: %w", r.GetName(), err)
		}
		for _, fc := range append(slices.Clone(l.GetFilterChains()), l.GetDefaultFilterChain()) {
			for _, f := range fc.GetFilters() {
				h := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(h) != nil {
					continue
				}
				if n := h.GetRds().GetRouteConfigName(); n != "" && !slices.Contains(out, n) {
					out = append(out, n)
				}
			}
		}
	}
	return out, nil
}
