package weft.rules.canary_drift_test

import data.weft.rules.canary_drift
import data.weft.testing

reviews(to) := testing.patched(testing.service, {"routes": {
	"opt-in": {"match": {"headers": {"x-canary": {"exact": "1"}}}, "to": {"v2": 100}},
	"split": {"match": {}, "to": to},
	"reads": {"match": {"methods": ["GET"]}, "to": to},
}})

splits := {
	"dev": {"reviews": {"opt-in": {"v2": 100}, "split": {"v1": 50, "v2": 50}}},
	"staging": {"reviews": {
		"opt-in": {"v2": 100},
		"split": {"v1": 80, "v2": 20},
		"reads": {"v1": 80, "v2": 20},
	}},
	"qa": {"reviews": {"split": {"v1": 0, "v2": 100}, "renamed": {"v1": 0, "v2": 100}}},
}

input_in(env, to) := object.union(testing.input_for({"reviews": reviews(to)}, env), {"splits": splits})

test_same_weights_pass if {
	count(canary_drift.warn) == 0 with input as input_in("prod", {"v1": 80, "v2": 20})
}

test_weight_change_is_reported if {
	canary_drift.warn == {
		{
			"msg": `canary weights of service reviews route "split" change from staging to prod: v1 80 -> 90, v2 20 -> 10`,
			"path": ["mesh", "services", "reviews", "routes", "split", "to"],
		},
		{
			"msg": `canary weights of service reviews route "reads" change from staging to prod: v1 80 -> 90, v2 20 -> 10`,
			"path": ["mesh", "services", "reviews", "routes", "reads", "to"],
		},
	} with input as input_in("prod", {"v1": 90, "v2": 10})
}

test_missing_environments_are_skipped if {
	testing.messages(canary_drift.warn) == {`canary weights of service reviews route "split" change from dev to prod: v1 50 -> 100, v2 50 -> 0`} with input as object.union(testing.input_for({"reviews": reviews({"v1": 100})}, "prod"), {"splits": object.remove(splits, ["staging"])})
}

test_first_environment_and_others_are_not_compared if {
	count(canary_drift.warn) == 0 with input as input_in("dev", {"v1": 1, "v2": 99})
	count(canary_drift.warn) == 0 with input as input_in("qa", {"v1": 1, "v2": 99})
	count(canary_drift.warn) == 0 with input as input_in("base", {"v1": 1, "v2": 99})
}

test_promotion_is_configurable_and_routes_match_by_name if {
	testing.messages(canary_drift.warn) == {`canary weights of service reviews route "split" change from qa to prod: v1 0 -> 90, v2 100 -> 10`} with input as input_in("prod", {"v1": 90, "v2": 10})
		with data.weft.config.rules.canary_drift as {"promotion": ["qa", "prod"]}
}

test_removed_routes_and_services_are_skipped if {
	count(canary_drift.warn) == 0 with input as object.union(
		testing.input_for({"reviews": testing.patched(testing.service, {"routes": {"opt-in": {"match": {}, "to": {"v2": 100}}}})}, "prod"),
		{"splits": {"staging": {"reviews": {"split": {"v1": 80}}, "gone": {"all": {"v1": 100}}}}},
	)
}
