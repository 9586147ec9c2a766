# METADATA
# title: Retry budget is sane
# description: |-
#   A route's retries must fit its timeout and stay few. Two checks, on the
#   effective retry policy and timeout of every route (the route's own, else
#   the service's, else the mesh defaults):
#
#   - attempts (retries after the first try) must be at most max_attempts
#     (default 5): each retry multiplies the load on a struggling upstream.
#   - attempts x perTryTimeout must not exceed the route's timeout: retry k
#     starts after k per-try timeouts at the earliest, so with more the last
#     retries can never run before the route gives up. Without a
#     perTryTimeout each try may use the whole timeout and this check does
#     not apply.
#
#   Config: max_attempts (default 5).
# custom:
#   fix: lower attempts or perTryTimeout, or raise the route's timeout
package weft.rules.retry_budget

import data.weft.lib

max_attempts := object.get(lib.config("retry_budget"), "max_attempts", 5)

# too_many are the route table entries with more retries than allowed.
too_many contains r if {
	some table in input.routes
	some r in table
	r.retries.attempts > max_attempts
}

deny contains {"msg": msg, "path": array.concat(lib.route_path(r), ["retries", "attempts"])} if {
	some r in too_many
	r.retriesFrom == "route"
	msg := sprintf("%s of service %s retries %d times, more than %d", [lib.route_label(r), r.service, r.retries.attempts, max_attempts])
}

deny contains {"msg": msg, "path": ["mesh", "services", r.service, "retries", "attempts"]} if {
	some r in too_many
	r.retriesFrom != "route"
	s := input.mesh.services[r.service]
	msg := sprintf("service %s retries %d times%s, more than %d", [r.service, r.retries.attempts, lib.inherited_note(s, "retries"), max_attempts])
}

deny contains {"msg": msg, "path": lib.route_path(r)} if {
	some table in input.routes
	some r in table
	budget := r.retries.attempts * r.perTryTimeoutNs
	budget > r.timeoutNs
	msg := sprintf(
		"%s of service %s: %d retries x %s per try = %s, more than its timeout %s: the last retries could never run",
		[lib.route_label(r), r.service, r.retries.attempts, r.retries.perTryTimeout, lib.duration(budget), r.timeout],
	)
}
