package weft.rules.retry_budget_test

import data.weft.rules.retry_budget
import data.weft.testing

input_with(routes) := testing.with_routes(testing.input_for({"a": testing.service}, "prod"), {"a": routes})

test_retries_within_budget_pass if {
	count(retry_budget.deny) == 0 with input as input_with([
		testing.entry("a", 0, {"timeout": "1s", "timeoutNs": 1000000000, "retries": {"attempts": 5, "on": ["reset"], "perTryTimeout": "200ms"}, "perTryTimeoutNs": 200000000, "retriesFrom": "route"}),
		testing.entry("a", -1, {"retries": {"attempts": 2, "on": ["reset"], "perTryTimeout": "1s"}, "perTryTimeoutNs": 1000000000}),
	])
}

test_too_many_route_attempts if {
	retry_budget.deny == {{
		"msg": `route "r" of service a retries 6 times, more than 5`,
		"path": ["mesh", "services", "a", "routes", "r", "retries", "attempts"],
	}} with input as input_with([testing.entry("a", 0, {"name": "r", "retries": {"attempts": 6, "on": ["reset"]}, "retriesFrom": "route"})])
}

test_too_many_service_attempts_reported_once if {
	many := {"retries": {"attempts": 7, "on": ["reset"]}}
	retry_budget.deny == {{
		"msg": "service a retries 7 times (inherited from mesh.defaults.retries), more than 5",
		"path": ["mesh", "services", "a", "retries", "attempts"],
	}} with input as input_with([testing.entry("a", 0, many), testing.entry("a", 1, many), testing.entry("a", -1, many)])
}

test_max_attempts_is_configurable if {
	count(retry_budget.deny) == 1 with input as input_with([testing.entry("a", -1, {"retries": {"attempts": 3, "on": ["reset"]}})])
		with data.weft.config.rules.retry_budget as {"max_attempts": 2}
}

test_retries_longer_than_the_timeout if {
	retry_budget.deny == {{
		"msg": `route "static" of service a: 2 retries x 2s per try = 4s, more than its timeout 2s: the last retries could never run`,
		"path": ["mesh", "services", "a", "routes", "static"],
	}} with input as input_with([testing.entry("a", 0, {
		"name": "static", "timeout": "2s", "timeoutFrom": "route",
		"retries": {"attempts": 2, "on": ["reset"], "perTryTimeout": "2s"}, "perTryTimeoutNs": 2000000000,
	})])
}

test_no_per_try_timeout_no_budget if {
	count(retry_budget.deny) == 0 with input as input_with([testing.entry("a", -1, {"timeout": "1s", "retries": {"attempts": 5, "on": ["reset"]}})])
}
