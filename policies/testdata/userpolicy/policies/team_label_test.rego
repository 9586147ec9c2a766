package weft.rules.team_label_test

import data.weft.rules.team_label

test_labelled_version_passes if {
	count(team_label.deny) == 0 with input as {"mesh": {"services": {"a": {"versions": {"v1": {"labels": {"team": "t"}}}}}}}
}

test_unlabelled_version_is_denied if {
	team_label.deny == {{
		"msg": "version v1 of service a has no team label",
		"path": ["mesh", "services", "a", "versions", "v1"],
	}} with input as {"mesh": {"services": {"a": {"versions": {"v1": {"labels": {}}}}}}}
}
