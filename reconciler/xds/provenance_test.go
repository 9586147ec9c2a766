package xds

import (
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weft-dev/weft/compiler"
)

// A NACK of a route configuration points at the route Envoy's message
// names, not at the service that owns the route configuration.
func TestNACKProvenanceOfPart(t *testing.T) {
	cls := &compiler.Class{
		SnapshotVersion: "main@sha1:abc/0123456789ab",
		Provenance: compiler.Provenances{
			{Type: resource.RouteType, Name: "outbound|http"}:                                       {Service: "frontend", File: "mesh.cue", Line: 3},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[1]"}:             {Service: "reviews", File: "mesh.cue", Line: 20},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[1].routes[0]"}:   {Service: "reviews", File: "routes.cue", Line: 31},
			{Type: resource.ListenerType, Name: "inbound"}:                                          {Service: "reviews", File: "mesh.cue", Line: 20},
			{Type: resource.ListenerType, Name: "inbound", Part: "filter_chains[2]"}:                {Service: "reviews", File: "mesh.cue", Line: 22},
			{Type: resource.ClusterType, Name: "outbound|9080|v1|reviews.shop"}:                     {Service: "reviews", File: "mesh.cue", Line: 20},
			{Type: resource.EndpointType, Name: "outbound|9080|v1|reviews.shop"}:                    {Service: "reviews", File: "mesh.cue", Line: 20},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[0].routes[4]"}:   {Service: "catalog", File: "c.cue", Line: 9},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[0]"}:             {Service: "catalog", File: "c.cue", Line: 7},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[0].routes[4]x"}:  {Service: "never", File: "x.cue", Line: 1},
			{Type: resource.RouteType, Name: "inbound|9080", Part: "virtual_hosts[0].routes[0]"}:    {Service: "reviews", File: "r.cue", Line: 2},
			{Type: resource.RouteType, Name: "inbound|9080"}:                                        {Service: "reviews", File: "r.cue", Line: 1},
			{Type: resource.ListenerType, Name: "outbound"}:                                         {Service: "frontend", File: "mesh.cue", Line: 3},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[1].routes[0].x"}: {Service: "never", File: "x.cue", Line: 1},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[1].routes[10]"}:  {Service: "reviews", File: "routes.cue", Line: 40},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[10].routes[0]"}:  {Service: "never", File: "x.cue", Line: 1},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[1].routes[1]"}:   {Service: "reviews", File: "routes.cue", Line: 35},
			{Type: resource.ClusterType, Name: "inbound|9080"}:                                      {Service: "reviews", File: "mesh.cue", Line: 20},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[2]"}:             {Service: "ratings", File: "ratings.cue", Line: 5},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[2].routes[0]"}:   {Service: "ratings", File: "ratings.cue", Line: 8},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[2].routes[0].y"}: {Service: "never", File: "x.cue", Line: 1},
			{Type: resource.RouteType, Name: "outbound|http", Part: "virtual_hosts[1].routes[0]y"}:  {Service: "never", File: "x.cue", Line: 1},
		},
	}
	for _, tc := range []struct {
		typ, name, msg string
		file           string
		line           int
	}{
		{resource.RouteType, "outbound|http",
			"Proto constraint validation failed (RouteConfigurationValidationError.VirtualHosts[1]: embedded message failed validation | caused by VirtualHostValidationError.Routes[1]: embedded message failed validation | caused by field: \"request_headers_to_add\"",
			"routes.cue", 35},
		{resource.RouteType, "outbound|http", "RouteConfigurationValidationError.VirtualHosts[2]: value length must be at least 1", "ratings.cue", 5},
		{resource.RouteType, "outbound|http", "RouteConfigurationValidationError.VirtualHosts[1]: ... VirtualHostValidationError.Routes[7]: x", "mesh.cue", 20},
		{resource.RouteType, "outbound|http", "regex '^(a' is invalid", "mesh.cue", 3},
		{resource.ListenerType, "inbound", "ListenerValidationError.FilterChains[2]: embedded message failed validation", "mesh.cue", 22},
		{resource.EndpointType, "outbound|9080|v1|reviews.shop", "anything", "mesh.cue", 20},
	} {
		p := provenance(cls, tc.typ, tc.name, messagePart(tc.typ, tc.msg))
		if p == nil || p.File != tc.file || p.Line != tc.line || p.Revision != "main@sha1:abc" {
			t.Errorf("%s %s %q: provenance %+v, want %s:%d in main@sha1:abc", tc.typ, tc.name, tc.msg, p, tc.file, tc.line)
		}
	}
	if p := provenance(cls, resource.ClusterType, "nope", ""); p != nil {
		t.Errorf("unknown resource: %+v", p)
	}
}
