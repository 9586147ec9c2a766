# METADATA
# title: Canary weight changes between environments
# description: |-
#   Reports (warn) a split (a route's to) whose weights differ from the
#   same route in the environment before this one in the promotion order
#   (config: promotion, default ["dev", "staging", "prod"]; environments the
#   repository does not have are skipped). Routes are compared by name, as
#   overlays address them. This makes a canary step visible in review:
#   "reviews route "split": v1 80 -> 90, v2 20 -> 10 (staging ->
#   prod)". It only warns: moving weights is the point of a canary.
#
#   Needs input.splits, the splits of the repository's other environments,
#   which `weft vet` computes; the base and environments outside the
#   promotion order are not compared.
# custom:
#   fix: none needed; check that the weight change is intended
package weft.rules.canary_drift

import data.weft.lib

promotion := object.get(lib.config("canary_drift"), "promotion", ["dev", "staging", "prod"])

known(e) if input.splits[e]

known(e) if e == input.environment

# previous is the environment before this one in the promotion order.
previous := present[k - 1] if {
	present := [e | some e in promotion; known(e)]
	some k, e in present
	e == input.environment
	k > 0
}

# A split of the previous environment is compared with the route of the
# same name: overlays address routes by name.
warn contains {"msg": msg, "path": ["mesh", "services", name, "routes", route, "to"]} if {
	some name, olds in input.splits[previous]
	olds != object.get(input.splits, [input.environment, name], {})
	some route, old in olds
	r := input.mesh.services[name].routes[route]
	r.to != old
	msg := sprintf("canary weights of service %s %s change from %s to %s: %s", [name, lib.route_name(r, route), previous, input.environment, changes(old, r.to)])
}

changes(old, new) := concat(", ", [sprintf("%s %d -> %d", [v, object.get(old, v, 0), object.get(new, v, 0)]) |
	some v in sort(object.keys(old) | object.keys(new))
])
