# METADATA
# title: Edge services have a rate limit
# description: |-
#   A service that receives traffic from outside the mesh (edge: true) must
#   limit it: a service-wide rateLimit, or a rateLimit on every one of its
#   routes with no implicit catch-all route left over (the last route
#   matches every request). Without one, a burst from the internet reaches
#   the service and everything it calls.
#
#   Config: scope "edge" (default) checks edge services; "reachable" also
#   checks every service an edge service reaches through calls, directly or
#   not.
# custom:
#   fix: "add rateLimit: {requestsPerSecond: N, burst: M} to the service"
package weft.rules.edge_rate_limit

import data.weft.lib

scope := object.get(lib.config("edge_rate_limit"), "scope", "edge")

edges contains name if {
	some name, s in input.mesh.services
	s.edge
}

exposed contains name if some name in edges

exposed contains name if {
	scope == "reachable"
	calls := {n: s.calls | some n, s in input.mesh.services}
	some name in graph.reachable(calls, edges)
}

limited(_, s) if s.rateLimit

limited(name, _) if {
	table := input.routes[name]
	count(table) > 0
	every r in table {
		r.rateLimit
	}
}

deny contains {"msg": msg, "path": path} if {
	some name in exposed
	s := input.mesh.services[name]
	not limited(name, s)
	path := exposure_path(s, name)
	msg := sprintf("service %s %s but has no rate limit", [name, exposure(s)])
}

exposure_path(s, name) := ["mesh", "services", name, "edge"] if s.edge

exposure_path(s, name) := ["mesh", "services", name] if not s.edge

exposure(s) := "receives traffic from outside the mesh (edge)" if s.edge

exposure(s) := "is reachable from an edge service" if not s.edge
