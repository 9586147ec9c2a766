package weft.rules.edge_rate_limit_test

import data.weft.rules.edge_rate_limit
import data.weft.testing

limit := {"requestsPerSecond": 100}

test_edge_with_service_rate_limit_passes if {
	s := testing.patched(testing.service, {"edge": true, "rateLimit": limit, "calls": ["b"]})
	count(edge_rate_limit.deny) == 0 with input as testing.input_for({"a": s, "b": testing.service}, "prod")
}

test_edge_with_route_rate_limits_passes if {
	s := testing.patched(testing.service, {"edge": true})
	routes := {"a": [testing.entry("a", 0, {"rateLimit": limit}), testing.entry("a", 1, {"rateLimit": limit})]}
	count(edge_rate_limit.deny) == 0 with input as testing.with_routes(testing.input_for({"a": s}, "prod"), routes)
}

test_edge_without_rate_limit_is_denied if {
	s := testing.patched(testing.service, {"edge": true})
	edge_rate_limit.deny == {{
		"msg": "service a receives traffic from outside the mesh (edge) but has no rate limit",
		"path": ["mesh", "services", "a", "edge"],
	}} with input as testing.input_for({"a": s, "b": testing.service}, "prod")
}

test_route_limits_with_an_unlimited_default_route_are_denied if {
	s := testing.patched(testing.service, {"edge": true})
	routes := {"a": [testing.entry("a", 0, {"rateLimit": limit}), testing.entry("a", -1, {})]}
	count(edge_rate_limit.deny) == 1 with input as testing.with_routes(testing.input_for({"a": s}, "prod"), routes)
}

test_reachable_scope if {
	a := testing.patched(testing.service, {"edge": true, "rateLimit": limit, "calls": ["b"]})
	b := testing.patched(testing.service, {"calls": ["c"]})
	c := testing.patched(testing.service, {"rateLimit": limit})
	edge_rate_limit.deny == {{
		"msg": "service b is reachable from an edge service but has no rate limit",
		"path": ["mesh", "services", "b"],
	}} with input as testing.input_for({"a": a, "b": b, "c": c, "d": testing.service}, "prod")
		with data.weft.config.rules.edge_rate_limit as {"scope": "reachable"}
}
