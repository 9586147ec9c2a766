# METADATA
# title: No HTTP methods but POST on gRPC-only services
# description: |-
#   Every gRPC call is an HTTP/2 POST, whatever its method name (which is in
#   the path: /package.Service/Method). On a service whose http and grpc
#   ports are all grpc (tcp ports aside), methods other than POST never
#   match a call:
#
#   - an authz allow rule with methods: ["GET"] allows no call, so every
#     call it was meant to let in is denied (403);
#   - a deny rule with them denies no call;
#   - a route whose match has them is never taken.
#
#   Reported (warn) at the rule's or the route's methods. A list that also
#   has POST is reported too: only its POST ever matches.
# custom:
#   fix: "match gRPC methods by path (authz paths, a route's match.path); leave methods out or write [\"POST\"]"
package weft.rules.grpc_methods

import data.weft.lib

# grpc_only are the services whose http/grpc ports are all grpc (a grpc
# port first: most services have none, and that test allocates nothing).
grpc_only contains name if {
	some name, s in input.mesh.services
	some p in s.ports
	p.protocol == "grpc"
	not http_port(s)
}

http_port(s) if {
	some p in s.ports
	p.protocol == "http"
}

warn contains {"msg": msg, "path": ["mesh", "services", name, "authz", kind, i, "methods"]} if {
	some name in grpc_only
	some kind in ["allow", "deny"]
	some i, rule in input.mesh.services[name].authz[kind]
	other := not_post(rule.methods)
	count(other) > 0
	msg := sprintf("authz.%s[%d] of service %s matches methods %s, but every call to its gRPC ports is a POST: %s", [
		kind, i, name, concat(", ", other), effect(kind, rule.methods),
	])
}

warn contains {"msg": msg, "path": ["mesh", "services", name, "routes", route, "match", "methods"]} if {
	some name in grpc_only
	some route, r in input.mesh.services[name].routes
	other := not_post(r.match.methods)
	count(other) > 0
	msg := sprintf("%s of service %s matches methods %s, but every call to its gRPC ports is a POST: %s", [
		lib.route_name(r, route), name, concat(", ", other), effect("route", r.match.methods),
	])
}

not_post(methods) := [m | some m in methods; m != "POST"]

effect("allow", methods) := "the rule allows no call" if not "POST" in methods

effect("deny", methods) := "the rule denies no call" if not "POST" in methods

effect("route", methods) := "the route is never taken" if not "POST" in methods

effect(_, methods) := "only its POST ever matches" if "POST" in methods
