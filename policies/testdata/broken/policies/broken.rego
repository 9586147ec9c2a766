package weft.rules.broken

deny contains msg if {
	some name, s in input.mesh.services
	msg := sprintf("%s is broken", [name]
}
