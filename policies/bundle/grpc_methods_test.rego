package weft.rules.grpc_methods_test

import data.weft.rules.grpc_methods
import data.weft.testing

grpc := testing.patched(testing.service, {"ports": {"grpc": {"port": 9090, "protocol": "grpc"}, "redis": {"port": 6379, "protocol": "tcp"}}})

both := testing.patched(testing.service, {"ports": {"grpc": {"port": 9090, "protocol": "grpc"}, "http": {"port": 8080, "protocol": "http"}}})

test_get_rule_on_grpc_only_service_is_reported if {
	s := testing.patched(grpc, {"authz": {"allow": [{"from": ["web"], "paths": ["/shop.v1.Api/Get"]}, {"from": ["web"], "methods": ["GET"]}]}})
	grpc_methods.warn == {{
		"msg": "authz.allow[1] of service a matches methods GET, but every call to its gRPC ports is a POST: the rule allows no call",
		"path": ["mesh", "services", "a", "authz", "allow", 1, "methods"],
	}} with input as testing.input_for({"a": s}, "prod")
}

test_deny_and_mixed_lists if {
	s := testing.patched(grpc, {"authz": {"deny": [{"methods": ["DELETE"]}, {"methods": ["GET", "POST"]}]}})
	testing.messages(grpc_methods.warn) == {
		"authz.deny[0] of service a matches methods DELETE, but every call to its gRPC ports is a POST: the rule denies no call",
		"authz.deny[1] of service a matches methods GET, but every call to its gRPC ports is a POST: only its POST ever matches",
	} with input as testing.input_for({"a": s}, "prod")
}

test_route_methods_on_grpc_only_service if {
	s := testing.patched(grpc, {"routes": {"reads": {"match": {"methods": ["GET"]}}, "calls": {"match": {"methods": ["POST"]}}}})
	grpc_methods.warn == {{
		"msg": `route "reads" of service a matches methods GET, but every call to its gRPC ports is a POST: the route is never taken`,
		"path": ["mesh", "services", "a", "routes", "reads", "match", "methods"],
	}} with input as testing.input_for({"a": s}, "prod")
}

test_http_ports_and_post_pass if {
	s := testing.patched(both, {"authz": {"allow": [{"methods": ["GET"]}]}, "routes": {"reads": {"match": {"methods": ["GET"]}}}})
	count(grpc_methods.warn) == 0 with input as testing.input_for({"a": s}, "prod")
	p := testing.patched(grpc, {"authz": {"allow": [{"methods": ["POST"]}, {"from": ["web"]}]}})
	count(grpc_methods.warn) == 0 with input as testing.input_for({"a": p}, "prod")
}
