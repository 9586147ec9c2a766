package weft.rules.authz_allow_all_test

import data.weft.rules.authz_allow_all
import data.weft.testing

test_named_callers_pass if {
	s := testing.patched(testing.service, {"authz": {
		"allow": [{"from": ["b"], "methods": ["GET"]}],
		"deny": [{"paths": ["/admin"]}],
	}})
	count(authz_allow_all.deny) == 0 with input as testing.input_for({"a": s, "b": testing.service}, "prod")
}

test_no_authz_passes if {
	count(authz_allow_all.deny) == 0 with input as testing.input_for({"a": testing.service}, "prod")
}

test_allow_without_from_is_denied if {
	s := testing.patched(testing.service, {"authz": {"allow": [{"from": ["b"]}, {"methods": ["GET"]}]}})
	authz_allow_all.deny == {{
		"msg": "service a: authz.allow[1] has no from, so it allows every caller",
		"path": ["mesh", "services", "a", "authz", "allow", 1],
	}} with input as testing.input_for({"a": s}, "prod")
}

test_allow_star_is_denied if {
	s := testing.patched(testing.service, {"authz": {"allow": [{"from": ["b", "*"], "paths": ["/healthz"]}]}})
	authz_allow_all.deny == {{
		"msg": `service a: authz.allow[0] allows every mesh identity ("*")`,
		"path": ["mesh", "services", "a", "authz", "allow", 0, "from", 1],
	}} with input as testing.input_for({"a": s}, "prod")
}
