package weft.rules.outlier_ejection_test

import data.weft.rules.outlier_ejection
import data.weft.testing

versions(spec) := {vn: {"labels": {}, "endpoints": eps, "replicas": r} | some vn, [eps, r] in spec}

pool(spec, od) := testing.patched(testing.service, {"versions": versions(spec), "outlierDetection": od})

test_default_ejects_one_of_two if {
	s := pool({"v1": [[], 2]}, {"consecutive5xx": 3, "maxEjectionPercent": 50})
	count(outlier_ejection.warn) == 0 with input as testing.input_for({"pool": s}, "prod")
}

# Issue 7: Envoy's 10% and two replicas.
test_ten_percent_of_two_replicas_warns if {
	s := pool({"v1": [[], 2]}, {"maxEjectionPercent": 10})
	outlier_ejection.warn == {{
		"msg": "outlier detection of service pool can never eject an endpoint: maxEjectionPercent 10 is below one endpoint's share of version v1 (2 endpoints, 50% each)",
		"path": ["mesh", "services", "pool", "outlierDetection", "maxEjectionPercent"],
		"fix": "set maxEjectionPercent to 50 or more, or remove it for weft's default (50)",
	}} with input as testing.input_for({"pool": s}, "prod")
}

# Static endpoints count before replicas; Envoy rounds 33.4 to 33, which
# is below a third; a pool of one endpoint is not reported, but all
# versions together are.
test_pools_listed_with_static_endpoints_and_rounding if {
	s := pool(
		{"v1": [["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], 1], "v2": [[], 1]},
		{"maxEjectionPercent": 33.4},
	)
	outlier_ejection.warn == {{
		"msg": "outlier detection of service pool can never eject an endpoint: maxEjectionPercent 33 is below one endpoint's share of version v1 (3 endpoints, 33.3% each)",
		"path": ["mesh", "services", "pool", "outlierDetection", "maxEjectionPercent"],
		"fix": "set maxEjectionPercent to 34 or more, or remove it for weft's default (50)",
	}} with input as testing.input_for({"pool": s}, "prod")
}

test_all_versions_pool_and_inherited_setting if {
	s := testing.patched(pool({"v1": [[], 1], "v2": [[], 1]}, {"maxEjectionPercent": 20}), {"inherited": {"outlierDetection": true}})
	outlier_ejection.warn == {{
		"msg": "outlier detection of service pool can never eject an endpoint: maxEjectionPercent 20 is below one endpoint's share of all versions (2 endpoints, 50% each) (inherited from mesh.defaults.outlierDetection)",
		"path": ["mesh", "defaults", "outlierDetection", "maxEjectionPercent"],
		"fix": "set maxEjectionPercent to 50 or more, or remove it for weft's default (50)",
	}} with input as testing.input_for({"pool": s}, "prod")
}

test_single_endpoint_and_no_outlier_detection_pass if {
	one := pool({"v1": [[], 1]}, {"maxEjectionPercent": 10})
	none := testing.patched(testing.service, {"versions": versions({"v1": [[], 5]})})
	count(outlier_ejection.warn) == 0 with input as testing.input_for({"one": one, "none": none}, "prod")
}

test_large_pool_ejects_with_ten_percent if {
	s := pool({"v1": [[], 10]}, {"maxEjectionPercent": 10})
	count(outlier_ejection.warn) == 0 with input as testing.input_for({"pool": s}, "prod")
}
