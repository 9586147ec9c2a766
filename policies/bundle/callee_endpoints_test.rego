package weft.rules.callee_endpoints_test

import data.weft.rules.callee_endpoints
import data.weft.testing

caller := testing.patched(testing.service, {"calls": ["b"]})

test_called_service_with_endpoints_passes if {
	count(callee_endpoints.deny) == 0 with input as testing.input_for({"a": caller, "b": testing.service}, "prod")
}

test_replicas_without_endpoints_pass if {
	b := testing.patched(testing.service, {"versions": {"v1": {"labels": {}, "endpoints": [], "replicas": 3}}})
	count(callee_endpoints.deny) == 0 with input as testing.input_for({"a": caller, "b": b}, "prod")
}

test_uncalled_service_is_not_checked if {
	b := testing.patched(testing.service, {"versions": {"v1": {"labels": {}, "endpoints": [], "replicas": 0}}})
	count(callee_endpoints.deny) == 0 with input as testing.input_for({"b": b}, "prod")
}

test_called_service_without_endpoints_is_denied if {
	b := testing.patched(testing.service, {"versions": {"v1": {"labels": {}, "endpoints": [], "replicas": 0}}})
	c := testing.patched(testing.service, {"calls": ["b"]})
	callee_endpoints.deny == {{
		"msg": "service b is called by a, c, but none of its versions has endpoints or replicas",
		"path": ["mesh", "services", "b", "versions"],
	}} with input as testing.input_for({"a": caller, "b": b, "c": c}, "prod")
}

# A route whose every weighted version is idle is rule reachability's.
test_route_to_idle_versions_only_is_left_to_reachability if {
	b := testing.patched(testing.service, {
		"versions": {
			"v1": {"labels": {}, "endpoints": ["127.0.0.1:1"], "replicas": 1},
			"v2": {"labels": {}, "endpoints": [], "replicas": 0},
		},
		"routes": {
			"canary": {"match": {"headers": {"x": {"exact": "1"}}}, "to": {"v2": 100}},
			"split": {"match": {}, "to": {"v1": 100, "v2": 0}},
		},
	})
	count(callee_endpoints.deny) == 0 with input as testing.input_for({"a": caller, "b": b}, "prod")
}

# A canary share on a version scaled to zero is denied too, although v1
# serves the rest (issue 7: 10% of the requests got 503).
test_weight_on_a_version_without_endpoints_is_denied if {
	b := testing.patched(testing.service, {
		"versions": {
			"v1": {"labels": {}, "endpoints": ["127.0.0.1:1"], "replicas": 1},
			"v2": {"labels": {}, "endpoints": [], "replicas": 0},
			"v3": {"labels": {}, "endpoints": [], "replicas": 2},
		},
		"routes": {"reads": {"match": {"methods": ["GET"]}}, "canary": {"match": {}, "to": {"v1": 80, "v2": 10, "v3": 10}}},
	})
	callee_endpoints.deny == {{
		"msg": `route "canary" of service b (called by a) sends 10% to version v2, which has no endpoints or replicas: those requests would get 503`,
		"path": ["mesh", "services", "b", "routes", "canary", "to", "v2"],
		"fix": "move the weight of v2 to a serving version (v1, v3), or give v2 replicas",
	}} with input as testing.input_for({"a": caller, "b": b}, "prod")
}

test_split_to_serving_versions_passes if {
	b := testing.patched(testing.service, {
		"versions": {
			"v1": {"labels": {}, "endpoints": ["127.0.0.1:1"], "replicas": 1},
			"v2": {"labels": {}, "endpoints": [], "replicas": 0},
		},
		"routes": {"reads": {"match": {"methods": ["GET"]}}, "split": {"match": {}, "to": {"v1": 100, "v2": 0}}},
	})
	count(callee_endpoints.deny) == 0 with input as testing.input_for({"a": caller, "b": b}, "prod")
}

test_replicas_serve_where_endpoints_lack if {
	b := testing.patched(testing.service, {
		"versions": {
			"v1": {"labels": {}, "endpoints": [], "replicas": 2},
			"v2": {"labels": {}, "endpoints": ["127.0.0.1:2"], "replicas": 0},
			"v3": {"labels": {}, "endpoints": [], "replicas": 0},
		},
		"routes": {"split": {"match": {}, "to": {"v1": 50, "v2": 50}}},
	})
	count(callee_endpoints.deny) == 0 with input as testing.input_for({"a": caller, "b": b}, "prod")
}
