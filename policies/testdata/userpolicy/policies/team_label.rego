# METADATA
# title: Versions carry a team label
# description: |-
#   Every version of every service has a "team" label, so that whoever is
#   paged for it knows which team owns it.
# custom:
#   fix: 'add labels: team: "<team>" to the version'
package weft.rules.team_label

deny contains {"msg": msg, "path": ["mesh", "services", name, "versions", v]} if {
	some name, s in input.mesh.services
	some v, version in s.versions
	not version.labels.team
	msg := sprintf("version %s of service %s has no team label", [v, name])
}
