# METADATA
# title: Called services can serve
# description: |-
#   Every service that another one lists in calls must be able to answer:
#
#   - at least one of its versions is serving, that is, has static
#     endpoints or replicas > 0 (Kubernetes endpoints come from the
#     version's pods, so replicas: 0 with no endpoints means nothing
#     answers);
#   - every route of it with a split (to) gives a weight above zero to at
#     least one serving version.
#
#   Otherwise the callers' requests fail with 503 once it is deployed.
# custom:
#   fix: give a version endpoints or replicas, or route to a serving version
package weft.rules.callee_endpoints

import data.weft.lib

serving(v) if count(v.endpoints) > 0

serving(v) if v.replicas > 0

# idle are the services with a version that cannot serve: few, so the
# checks below start from them.
idle contains name if {
	some name, s in input.mesh.services
	some v in s.versions
	v.replicas == 0
	count(v.endpoints) == 0
}

callers(name) := sort([c | some c, s in input.mesh.services; name in s.calls])

deny contains {"msg": msg, "path": ["mesh", "services", name, "versions"]} if {
	some name in idle
	s := input.mesh.services[name]
	every v in s.versions {
		not serving(v)
	}
	callers(name) != []
	msg := sprintf("service %s is called by %s, but none of its versions has endpoints or replicas", [name, concat(", ", callers(name))])
}

deny contains {"msg": msg, "path": ["mesh", "services", name, "routes", route, "to"]} if {
	some name in idle
	s := input.mesh.services[name]
	some v in s.versions
	serving(v)
	some route, r in s.routes
	r.to
	not split_serving(s, r.to)
	callers(name) != []
	msg := sprintf("%s of service %s (called by %s) sends traffic only to versions without endpoints or replicas", [lib.route_name(r, route), name, concat(", ", callers(name))])
}

split_serving(s, to) if {
	some v, w in to
	w > 0
	serving(s.versions[v])
}
