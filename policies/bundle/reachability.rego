# METADATA
# title: Declared dependencies can be reached
# description: |-
#   A service that lists another in calls must be able to call it. The
#   callee's authz is evaluated for the caller's identity the way its
#   proxy does (deny rules first, then the allow list):
#
#   - a deny rule that names the caller (or "*", or has no from) and no
#     methods or paths refuses every request of the caller (on a service
#     with only tcp ports, methods and paths do not count);
#   - a written allow list (authz.allow, even an empty one) that has no
#     rule naming the caller, "*" or no from at all admits none of its
#     requests (on a tcp-only service, rules with methods or paths are
#     not compiled);
#   - a callee with mtls "disable" receives plain text, which carries no
#     identity: allow rules that name callers never match;
#   - a route of the callee whose split (to) puts every weighted version
#     on versions without endpoints or replicas fails every request it
#     takes with 503;
#   - a route of the callee that mirrors requests to another service
#     sends the copies with the caller's identity: the mirror target's
#     authz must admit the caller too.
#
#   The finding is at the blocking rule, route or allow list; its message
#   names the caller's calls entry with its file:line. `weft diff` lists
#   the authorization edges a change opens and closes.
# custom:
#   fix: allow the caller in the callee's authz (or remove the deny rule), route to a serving version, or drop the call
package weft.rules.reachability

import data.weft.lib

# callers_of[callee] are the declared dependencies on callee: [caller,
# the index of the entry in the caller's calls].
callers_of[callee] contains [caller, i] if {
	some caller, s in input.mesh.services
	some i, callee in s.calls
}

# calls_to(callee) is callers_of[callee], from callers_of computed whole
# once (a lookup by key would scan every service's calls for each callee).
calls_to(callee) := all[callee] if all := callers_of

calls_path(caller, i) := ["mesh", "services", caller, "calls", i]

related(caller, i, callee) := [{
	"path": calls_path(caller, i),
	"msg": sprintf("%s calls entry for %s", [owner(caller), callee]),
}]

# owner(name) is the possessive: "cart's", "orders'".
owner(name) := concat("", [name, "'"]) if endswith(name, "s")

owner(name) := concat("", [name, "'s"]) if not endswith(name, "s")

# A deny rule that refuses a caller entirely.
deny contains {"msg": msg, "path": path, "fix": fix, "related": related(caller, i, callee)} if {
	some callee, s in input.mesh.services
	s.authz.deny
	some [caller, i] in calls_to(callee)
	some [path, why, fix] in denied_by(callee, caller)
	msg := sprintf("%s calls %s, but %s", [caller, callee, why])
}

# An allow list that admits none of a caller's requests.
deny contains {"msg": msg, "path": path, "fix": fix, "related": related(caller, i, callee)} if {
	some caller, c in input.mesh.services
	some i, callee in c.calls
	s := input.mesh.services[callee]
	allow := s.authz.allow
	not named_in(s, allow, caller) # most callers are named: cheap
	not admits_anyone(s, allow)
	path := ["mesh", "services", callee, "authz", "allow"]
	[why, fix] := refusal(s, allow, callee, caller)
	msg := sprintf("%s calls %s, but %s", [caller, callee, why])
}

# named_in(s, allow, caller): a compiled rule of allow names the caller,
# and s sees identities (it is not plaintext).
named_in(s, allow, caller) if {
	some rule in allow
	caller in rule.from
	not plaintext(s)
	compiled(s, rule)
}

# A route whose every weighted version cannot serve.
deny contains {"msg": msg, "path": ["mesh", "services", callee, "routes", route, "to"], "fix": fix, "related": related(caller, i, callee)} if {
	some callee in idle
	s := input.mesh.services[callee]
	some version in s.versions
	serving(version)
	some route, r in s.routes
	idle_route := idle_targets(s, r)
	idle_route != []
	some [caller, i] in calls_to(callee)
	msg := sprintf("%s calls %s, but %s of %s sends all its requests to %s, without endpoints or replicas: they get 503", [
		caller, callee, lib.route_name(r, route), callee, concat(", ", idle_route),
	])
	fix := sprintf("give %s endpoints or replicas, or move the weight to a serving version of %s", [concat(", ", idle_route), callee])
}

# idle are the services with a version that cannot serve: few, so the
# route check starts from them.
idle contains name if {
	some name, s in input.mesh.services
	some v in s.versions
	v.replicas == 0
	count(v.endpoints) == 0
}

# A mirror target that refuses the caller's identity.
deny contains {"msg": msg, "path": path, "fix": fix, "related": rel} if {
	some callee, s in input.mesh.services
	some route, r in s.routes
	target := r.mirror.to
	target != callee
	input.mesh.services[target]
	some [caller, i] in calls_to(callee)
	some [path, why, target_fix] in blocked(target, caller)
	fix := sprintf("%s, or remove the mirror from %s of %s", [target_fix, lib.route_name(r, route), callee])
	rel := array.concat(related(caller, i, callee), [{
		"path": ["mesh", "services", callee, "routes", route, "mirror"],
		"msg": sprintf("the mirror of %s of %s", [lib.route_name(r, route), callee]),
	}])
	msg := sprintf("%s calls %s, whose %s mirrors its requests to %s with %s's identity, but %s", [
		caller, callee, lib.route_name(r, route), target, caller, why,
	])
}

# blocked(callee, caller) are the reasons the callee's proxy refuses every
# request of the caller: [path of the blocking rule, why, fix].
blocked(callee, caller) := denied_by(callee, caller) | allow_list(callee, caller)

denied_by(callee, caller) := {[path, why, fix] |
	s := input.mesh.services[callee]
	some j, rule in object.get(s, ["authz", "deny"], [])
	identifies(s, rule, caller)
	unconditional(s, rule)
	path := ["mesh", "services", callee, "authz", "deny", j]
	why := sprintf("%s authz.deny[%d] refuses every request from %s", [owner(callee), j, caller])
	fix := sprintf("narrow %s authz.deny[%d] (methods, paths) or take %s out of its from", [owner(callee), j, caller])
}

allow_list(callee, caller) := {[path, why, fix] |
	s := input.mesh.services[callee]
	allow := s.authz.allow
	not admitted(callee, caller)
	path := ["mesh", "services", callee, "authz", "allow"]
	[why, fix] := refusal(s, allow, callee, caller)
}

refusal(_, allow, callee, caller) := [
	sprintf("%s authz.allow is empty: it admits nobody", [owner(callee)]),
	sprintf("add a rule with from: [%q] to %s authz.allow", [caller, owner(callee)]),
] if count(allow) == 0

refusal(s, allow, callee, _) := [
	sprintf("%s has mtls \"disable\": plain text carries no identity, so its authz.allow rules that name callers never match", [callee]),
	sprintf("set %s mtls to \"strict\" or \"permissive\"", [owner(callee)]),
] if {
	count(allow) > 0
	plaintext(s)
}

refusal(s, allow, callee, caller) := [
	sprintf("%s authz.allow does not admit %s", [owner(callee), caller]),
	sprintf("add %q to the from of a rule of %s authz.allow", [caller, owner(callee)]),
] if {
	count(allow) > 0
	not plaintext(s)
}

# admitted(callee, caller): an allow rule of callee admits the caller.
admitted(callee, caller) if {
	s := input.mesh.services[callee]
	named_in(s, s.authz.allow, caller)
}

admitted(callee, _) if {
	s := input.mesh.services[callee]
	admits_anyone(s, s.authz.allow)
}

# admits_anyone(s, allow): a compiled allow rule matches whoever calls s.
admits_anyone(s, allow) if {
	some rule in allow
	compiled(s, rule)
	some_caller(s, rule)
}

# some_caller(s, rule): the rule's from matches whoever calls s.
some_caller(_, rule) if object.get(rule, "from", []) == []

some_caller(s, rule) if {
	not plaintext(s)
	"*" in rule.from
}

# identifies(s, rule, caller): the rule's from matches the caller's
# requests to s. Without from it matches anyone; a name or "*" needs the
# caller's mTLS identity, which a plaintext service never sees.
identifies(_, rule, _) if object.get(rule, "from", []) == []

identifies(s, rule, _) if {
	not plaintext(s)
	"*" in rule.from
}

identifies(s, rule, caller) if {
	not plaintext(s)
	caller in rule.from
}

# unconditional(s, rule): a deny rule that applies to every request (a
# tcp port drops its methods and paths).
unconditional(_, rule) if plain(rule)

unconditional(s, _) if tcp_only(s)

# compiled(s, rule): an allow rule the proxy has (a tcp port leaves out
# the rules that need methods or paths).
compiled(s, _) if not tcp_only(s)

compiled(s, rule) if {
	tcp_only(s)
	plain(rule)
}

# plain(rule): no methods and no path condition.
plain(rule) if {
	object.get(rule, "methods", []) == []
	not path_condition(rule)
}

path_condition(rule) if {
	paths := object.get(rule, "paths", [])
	paths != []
	not "*" in paths
}

tcp_only(s) if {
	every p in s.ports {
		p.protocol == "tcp"
	}
}

plaintext(s) if s.mtls == "disable"

serving(v) if count(v.endpoints) > 0

serving(v) if v.replicas > 0

# idle_targets(s, r) are the versions r sends weight to when none of them
# can serve ([] otherwise).
idle_targets(s, r) := sort(weighted) if {
	weighted := [v | some v, w in object.get(r, "to", {}); w > 0]
	every v in weighted {
		not serving(s.versions[v])
	}
} else := []
