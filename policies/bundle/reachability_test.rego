package weft.rules.reachability_test

import data.weft.rules.reachability
import data.weft.testing

# a calls b; b is the callee under test.
a := testing.patched(testing.service, {"calls": ["b"]})

b(patch) := testing.patched(testing.service, patch)

findings(services) := fs if {
	fs := reachability.deny with input as testing.input_for(services, "prod")
}

calls_entry := {"path": ["mesh", "services", "a", "calls", 0], "msg": "a's calls entry for b"}

test_possessive if {
	reachability.owner("orders") == "orders'"
	reachability.owner("cart") == "cart's"
}

test_default_authz_passes if {
	count(findings({"a": a, "b": testing.service})) == 0
}

test_uncalled_service_is_not_checked if {
	count(findings({"a": testing.service, "b": b({"authz": {"allow": []}})})) == 0
}

test_deny_naming_the_caller if {
	findings({"a": a, "b": b({"authz": {"deny": [{"from": ["c"]}, {"from": ["a"]}]}})}) == {{
		"msg": "a calls b, but b's authz.deny[1] refuses every request from a",
		"path": ["mesh", "services", "b", "authz", "deny", 1],
		"fix": "narrow b's authz.deny[1] (methods, paths) or take a out of its from",
		"related": [calls_entry],
	}}
}

test_deny_everyone if {
	fs := findings({"a": a, "b": b({"authz": {"deny": [{"from": ["*"]}, {"paths": ["*"]}]}})})
	testing.paths(fs) == {["mesh", "services", "b", "authz", "deny", 0], ["mesh", "services", "b", "authz", "deny", 1]}
}

test_conditional_deny_passes if {
	count(findings({"a": a, "b": b({"authz": {"deny": [{"from": ["a"], "methods": ["DELETE"]}, {"paths": ["/admin/*"]}]}})})) == 0
}

test_conditional_deny_on_tcp_blocks if {
	tcp := {"db": {"port": 5432, "protocol": "tcp"}}
	fs := findings({"a": a, "b": b({"ports": tcp, "authz": {"deny": [{"from": ["a"], "methods": ["GET"]}]}})})
	testing.paths(fs) == {["mesh", "services", "b", "authz", "deny", 0]}
}

test_allow_list_without_the_caller if {
	findings({"a": a, "b": b({"authz": {"allow": [{"from": ["c"]}]}})}) == {{
		"msg": "a calls b, but b's authz.allow does not admit a",
		"path": ["mesh", "services", "b", "authz", "allow"],
		"fix": `add "a" to the from of a rule of b's authz.allow`,
		"related": [calls_entry],
	}}
}

test_empty_allow_list if {
	fs := findings({"a": a, "b": b({"authz": {"allow": []}})})
	testing.messages(fs) == {"a calls b, but b's authz.allow is empty: it admits nobody"}
	{f.fix | some f in fs} == {`add a rule with from: ["a"] to b's authz.allow`}
}

test_allow_by_name_star_or_anyone_passes if {
	count(findings({"a": a, "b": b({"authz": {"allow": [{"from": ["c", "a"], "methods": ["GET"]}]}})})) == 0
	count(findings({"a": a, "b": b({"authz": {"allow": [{"from": ["*"]}]}})})) == 0
	count(findings({"a": a, "b": b({"authz": {"allow": [{"paths": ["/x"]}]}})})) == 0
}

test_plaintext_callee_cannot_match_names if {
	fs := findings({"a": a, "b": b({"mtls": "disable", "authz": {"allow": [{"from": ["a"]}, {"from": ["*"]}]}})})
	testing.messages(fs) == {`a calls b, but b has mtls "disable": plain text carries no identity, so its authz.allow rules that name callers never match`}
	{f.fix | some f in fs} == {`set b's mtls to "strict" or "permissive"`}
}

test_plaintext_callee_allows_anyone_rules if {
	count(findings({"a": a, "b": b({"mtls": "disable", "authz": {"allow": [{"methods": ["GET"]}]}})})) == 0
}

test_plaintext_callee_deny_by_name_cannot_match if {
	count(findings({"a": a, "b": b({"mtls": "disable", "authz": {"deny": [{"from": ["a"]}]}})})) == 0
	count(findings({"a": a, "b": b({"mtls": "disable", "authz": {"deny": [{}]}})})) == 1
}

test_tcp_allow_with_methods_is_not_compiled if {
	tcp := {"db": {"port": 5432, "protocol": "tcp"}}
	fs := findings({"a": a, "b": b({"ports": tcp, "authz": {"allow": [{"from": ["a"], "paths": ["/x"]}]}})})
	testing.messages(fs) == {"a calls b, but b's authz.allow does not admit a"}
	count(findings({"a": a, "b": b({"ports": tcp, "authz": {"allow": [{"from": ["a"]}]}})})) == 0
}

versions := {
	"v1": {"labels": {}, "endpoints": ["127.0.0.1:1"], "replicas": 1},
	"v2": {"labels": {}, "endpoints": [], "replicas": 0},
	"v3": {"labels": {}, "endpoints": [], "replicas": 0},
}

test_route_to_idle_versions_only if {
	callee := b({"versions": versions, "routes": {
		"canary": {"match": {"headers": {"x": {"exact": "1"}}}, "to": {"v2": 50, "v3": 50}},
		"split": {"match": {}, "to": {"v1": 90, "v2": 10}},
	}})
	findings({"a": a, "b": callee}) == {{
		"msg": `a calls b, but route "canary" of b sends all its requests to v2, v3, without endpoints or replicas: they get 503`,
		"path": ["mesh", "services", "b", "routes", "canary", "to"],
		"fix": "give v2, v3 endpoints or replicas, or move the weight to a serving version of b",
		"related": [calls_entry],
	}}
}

test_replicas_serve if {
	scaled := {
		"v1": {"labels": {}, "endpoints": [], "replicas": 2},
		"v2": {"labels": {}, "endpoints": [], "replicas": 0},
	}
	routes := {"r": {"match": {}, "to": {"v1": 100}}, "s": {"match": {"methods": ["GET"]}, "to": {"v2": 100}}}
	testing.paths(findings({"a": a, "b": b({"versions": scaled, "routes": routes})})) == {["mesh", "services", "b", "routes", "s", "to"]}
}

test_no_serving_version_is_left_to_callee_endpoints if {
	idle := {"v1": {"labels": {}, "endpoints": [], "replicas": 0}}
	count(findings({"a": a, "b": b({"versions": idle, "routes": {"r": {"match": {}, "to": {"v1": 100}}}})})) == 0
}

test_mirror_target_refusing_the_caller if {
	callee := b({"routes": {"split": {"match": {}, "mirror": {"to": "audit", "percent": 10}}}})
	audit := testing.patched(testing.service, {"authz": {"allow": [{"from": ["b"]}]}})
	findings({"a": a, "b": callee, "audit": audit}) == {{
		"msg": `a calls b, whose route "split" mirrors its requests to audit with a's identity, but audit's authz.allow does not admit a`,
		"path": ["mesh", "services", "audit", "authz", "allow"],
		"fix": `add "a" to the from of a rule of audit's authz.allow, or remove the mirror from route "split" of b`,
		"related": [calls_entry, {"path": ["mesh", "services", "b", "routes", "split", "mirror"], "msg": `the mirror of route "split" of b`}],
	}}
}

test_mirror_target_admitting_the_caller_or_self_passes if {
	callee := b({"routes": {"split": {"match": {}, "mirror": {"to": "audit", "percent": 10}}}})
	count(findings({"a": a, "b": callee, "audit": testing.service})) == 0
	by_name := testing.patched(testing.service, {"authz": {"allow": [{"from": ["a"]}]}})
	count(findings({"a": a, "b": callee, "audit": by_name})) == 0
	anyone := testing.patched(testing.service, {"authz": {"allow": [{"methods": ["GET"]}]}})
	count(findings({"a": a, "b": callee, "audit": anyone})) == 0
	self := b({"routes": {"split": {"match": {}, "mirror": {"to": "b", "version": "v1", "percent": 10}}}})
	count(findings({"a": a, "b": self})) == 0
}
