package weft.rules.route_timeout_test

import data.weft.rules.route_timeout
import data.weft.testing

input_with(routes) := testing.with_routes(testing.input_for({"a": testing.service}, "prod"), {"a": routes})

test_route_and_service_timeouts_pass if {
	count(route_timeout.deny) == 0 with input as input_with([
		testing.entry("a", 0, {"timeout": "1s", "timeoutFrom": "route"}),
		testing.entry("a", 1, {}),
	])
}

test_route_with_only_the_mesh_default_is_denied if {
	route_timeout.deny == {{
		"msg": `route "pages" of service a has no timeout: it would only get the mesh default 15s`,
		"path": ["mesh", "services", "a", "routes", "pages"],
	}} with input as input_with([
		testing.entry("a", 0, {"timeout": "1s", "timeoutFrom": "route"}),
		testing.entry("a", 1, {"name": "pages", "timeout": "15s", "timeoutFrom": "defaults"}),
	])
}

test_implicit_default_route_is_checked if {
	testing.paths(route_timeout.deny) == {["mesh", "services", "a"]} with input as input_with([testing.entry("a", -1, {"timeout": "15s", "timeoutFrom": "defaults"})])
}

test_mesh_default_allowed_by_config if {
	count(route_timeout.deny) == 0 with input as input_with([testing.entry("a", -1, {"timeout": "15s", "timeoutFrom": "defaults"})])
		with data.weft.config.rules.route_timeout as {"allow_mesh_default": true}
}

test_zero_timeout_is_denied_where_it_is_written if {
	route_timeout.deny == {
		{
			"msg": `route "r0" of service a has timeout 0s, which Envoy reads as no timeout at all`,
			"path": ["mesh", "services", "a", "routes", "r0", "timeout"],
		},
		{
			"msg": "the implicit default route of service a has timeout 0s, which Envoy reads as no timeout at all",
			"path": ["mesh", "services", "a", "timeout"],
		},
	} with input as input_with([
		testing.entry("a", 0, {"timeout": "0s", "timeoutFrom": "route"}),
		testing.entry("a", -1, {"timeout": "0s"}),
	])
}
