package weft.rules.no_fault_injection_test

import data.weft.rules.no_fault_injection
import data.weft.testing

test_routes_without_faults_pass if {
	s := testing.patched(testing.service, {"routes": {"all": {"match": {}}}})
	count(no_fault_injection.deny) == 0 with input as testing.input_for({"a": s}, "prod")
}

test_fault_is_denied if {
	s := testing.patched(testing.service, {"routes": {
		"reads": {"match": {"methods": ["GET"]}},
		"quote": {"match": {}, "fault": {"delay": {"percent": 10, "duration": "1s"}, "abort": {"percent": 5, "status": 500}}},
		"rest": {"match": {}, "fault": {"abort": {"percent": 5, "status": 500}}},
	}})
	no_fault_injection.deny == {
		{"msg": `route "quote" of service a injects faults (delay and abort)`, "path": ["mesh", "services", "a", "routes", "quote", "fault"]},
		{"msg": `route "rest" of service a injects faults (abort)`, "path": ["mesh", "services", "a", "routes", "rest", "fault"]},
	} with input as testing.input_for({"a": s}, "prod")
}
