package weft.lib_test

import data.weft.lib
import data.weft.testing

test_config_of_a_configured_rule if {
	lib.config("x") == {"a": 1} with data.weft.config as {"rules": {"x": {"a": 1}}}
}

test_config_of_an_unconfigured_rule if {
	lib.config("y") == {} with data.weft.config as {"rules": {"x": {"a": 1}}}
}

test_route_label_and_path if {
	named := testing.entry("a", 3, {"name": "read"})
	lib.route_label(named) == `route "read"`
	lib.route_path(named) == ["mesh", "services", "a", "routes", "read"]
	implicit := testing.entry("a", -1, {})
	lib.route_label(implicit) == "the implicit default route"
	lib.route_path(implicit) == ["mesh", "services", "a"]
}

test_route_name if {
	lib.route_name({"match": {}}, "read") == `route "read"`
}

test_durations if {
	lib.duration(4000000000) == "4s"
	lib.duration(1500000000) == "1500ms"
	lib.duration(1500000) == "1500us"
	lib.duration(1500) == "1500ns"
}

test_inherited_note if {
	lib.inherited_note({"inherited": {"mtls": true}}, "mtls") == " (inherited from mesh.defaults.mtls)"
	lib.inherited_note({"inherited": {}}, "mtls") == ""
}
