# METADATA
# title: Small meshes only
# description: The organisation caps a mesh at one service (a test policy).
package weft.rules.org.size

deny contains msg if {
	count(input.mesh.services) > 1
	msg := sprintf("%d services, the organisation allows 1", [count(input.mesh.services)])
}
