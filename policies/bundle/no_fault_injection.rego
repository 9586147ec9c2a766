# METADATA
# title: No fault injection in prod
# description: |-
#   Fault injection (a route's fault: delay or abort) is a test tool: in
#   production it fails or slows real users' requests on purpose. A route
#   with a fault is denied in the environments the rule runs in: by default
#   only prod (config: only: ["prod"]).
# custom:
#   fix: remove the fault from the route in this environment
package weft.rules.no_fault_injection

import data.weft.lib

deny contains {"msg": msg, "path": ["mesh", "services", name, "routes", route, "fault"]} if {
	some name, s in input.mesh.services
	some route, r in s.routes
	r.fault
	kinds := concat(" and ", [k | some k in ["delay", "abort"]; r.fault[k]])
	msg := sprintf("%s of service %s injects faults (%s)", [lib.route_name(r, route), name, kinds])
}
