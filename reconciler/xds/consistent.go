package xds

import (
	"fmt"
	"sort"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weft-dev/weft/compiler"
)

// snapshot is the class's checked snapshot (compiler.Class.Snapshot:
// go-control-plane's Consistent()). Consistent() does not see the route
// configurations that API listeners (proxyless gRPC clients) name over
// RDS; a class with such listeners is checked again with them counted.
func snapshot(c *compiler.Class) (*cache.Snapshot, error) {
	snap, err := c.Snapshot()
	if err == nil {
		return snap, nil
	}
	api := apiListenerRoutes(c.Resources[resource.ListenerType])
	if len(api) == 0 {
		return nil, err
	}
	snap, nerr := cache.NewSnapshot(c.SnapshotVersion, c.Resources)
	if nerr != nil {
		return nil, err
	}
	if cerr := consistentWithAPIListeners(snap, api); cerr != nil {
		return nil, fmt.Errorf("class %s: inconsistent snapshot: %w", c.Name, cerr)
	}
	return snap, nil
}

// apiListenerRoutes are the RDS names of the API listeners among ls.
func apiListenerRoutes(ls []types.Resource) map[string]bool {
	out := map[string]bool{}
	for _, r := range ls {
		l, ok := r.(*listenerv3.Listener)
		if !ok || l.GetApiListener().GetApiListener() == nil {
			continue
		}
		h := &hcmv3.HttpConnectionManager{}
		if l.GetApiListener().GetApiListener().UnmarshalTo(h) != nil {
			continue
		}
		if name := h.GetRds().GetRouteConfigName(); name != "" {
			out[name] = true
		}
	}
	return out
}

// consistentWithAPIListeners is Consistent() with the API listeners' RDS
// references added: referenced routes and load assignments are exactly
// the ones in the snapshot.
func consistentWithAPIListeners(s *cache.Snapshot, api map[string]bool) error {
	routes := cache.GetResourceReferences(s.Resources[types.Listener].Items)[resource.RouteType]
	if routes == nil {
		routes = map[string]bool{}
	}
	for name := range api {
		routes[name] = true
	}
	eds := cache.GetResourceReferences(s.Resources[types.Cluster].Items)[resource.EndpointType]
	if err := sameNames(resource.RouteType, routes, s.Resources[types.Route].Items); err != nil {
		return err
	}
	return sameNames(resource.EndpointType, eds, s.Resources[types.Endpoint].Items)
}

func sameNames(typeURL string, refs map[string]bool, items map[string]types.ResourceWithTTL) error {
	var missing, extra []string
	for name := range refs {
		if _, ok := items[name]; !ok {
			missing = append(missing, name)
		}
	}
	for name := range items {
		if !refs[name] {
			extra = append(extra, name)
		}
	}
	if len(missing)+len(extra) == 0 {
		return nil
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return fmt.Errorf("%s: referenced but missing %v, present but unreferenced %v", typeURL, missing, extra)
}
