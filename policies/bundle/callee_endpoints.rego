# METADATA
# title: Called services can serve
# description: |-
#   Every service that another one lists in calls must be able to answer:
#
#   - at least one of its versions is serving, that is, has static
#     endpoints or replicas > 0 (Kubernetes endpoints come from the
#     version's pods, so replicas: 0 with no endpoints means nothing
#     answers);
#   - no route of it gives weight in a split (to) to a version that is not
#     serving: that share of the requests would fail with 503 "no healthy
#     upstream", whatever the other versions can do. (A route whose every
#     weighted version is not serving makes its callers' dependency
#     impossible: rule reachability reports it, once per caller.)
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

# A split's weight on an idle version, once some version serves (when
# none does, the deny above says so once).
deny contains {"msg": msg, "path": ["mesh", "services", name, "routes", route, "to", v], "fix": fix} if {
	some name in idle
	s := input.mesh.services[name]
	serving_versions(s) != []
	some route, r in s.routes
	some v, w in object.get(r, "to", {})
	w > 0
	not serving(s.versions[v])
	some other, ow in r.to
	ow > 0
	serving(s.versions[other])
	callers(name) != []
	msg := sprintf("%s of service %s (called by %s) sends %d%% to version %s, which has no endpoints or replicas: those requests would get 503", [lib.route_name(r, route), name, concat(", ", callers(name)), w, v])
	fix := sprintf("move the weight of %s to a serving version (%s), or give %s replicas", [v, concat(", ", serving_versions(s)), v])
}

serving_versions(s) := sort([v | some v, ver in s.versions; serving(ver)])
