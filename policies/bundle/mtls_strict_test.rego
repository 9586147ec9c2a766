package weft.rules.mtls_strict_test

import data.weft.rules.mtls_strict
import data.weft.testing

test_strict_passes if {
	count(mtls_strict.deny) == 0 with input as testing.input_for({"a": testing.service}, "prod")
}

test_permissive_service_is_denied if {
	s := testing.patched(testing.service, {"mtls": "permissive"})
	mtls_strict.deny == {{
		"msg": `service a accepts mtls "permissive": it must be "strict"`,
		"path": ["mesh", "services", "a", "mtls"],
	}} with input as testing.input_for({"a": s, "b": testing.service}, "prod")
}

test_inherited_disable_names_the_default if {
	s := testing.patched(testing.service, {"mtls": "disable", "inherited": {"mtls": true}})
	testing.messages(mtls_strict.deny) == {`service a accepts mtls "disable" (inherited from mesh.defaults.mtls): it must be "strict"`} with input as testing.input_for({"a": s}, "prod")
}
