# METADATA
# title: mTLS must be strict
# description: |-
#   Every service must accept mutual TLS only (mtls: "strict"). A
#   "permissive" service also accepts plain text, and a "disable"d one
#   accepts nothing else: anything that reaches its pod can call it without
#   a mesh identity, and its authz rules, which match SPIFFE identities,
#   cannot tell callers apart.
#
#   Fix: set mtls: "strict" on the service, or remove its mtls field and
#   keep mesh.defaults.mtls "strict" (the schema's default).
#
#   A service that inherits a weaker mesh default is reported on the
#   service, where an override would go. By default the rule runs in every
#   environment but dev (config: skip: ["dev"]).
# custom:
#   fix: set mtls "strict" on the service or in mesh.defaults
package weft.rules.mtls_strict

import data.weft.lib

deny contains {"msg": msg, "path": ["mesh", "services", name, "mtls"]} if {
	some name, s in input.mesh.services
	s.mtls != "strict"
	msg := sprintf("service %s accepts mtls %q%s: it must be \"strict\"", [name, s.mtls, lib.inherited_note(s, "mtls")])
}
