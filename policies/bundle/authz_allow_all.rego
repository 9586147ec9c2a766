# METADATA
# title: Authz must not allow every caller in prod
# description: |-
#   An authz allow rule that lets any caller in defeats the point of the
#   mesh's identities: a rule with from: ["*"] (any mesh identity), or with
#   no from at all (any caller). Name the calling services instead; by
#   default a service may be called by the services that list it in calls.
#   Deny rules are not checked: denying everyone is fine.
#
#   By default the rule runs only in prod (config: only: ["prod"]). A
#   deliberate opening, such as health checks from any identity, is
#   excused per service with an exception (data.weft.config.exceptions).
# custom:
#   fix: list the calling services in from
package weft.rules.authz_allow_all

deny contains {"msg": msg, "path": ["mesh", "services", name, "authz", "allow", i]} if {
	some name, s in input.mesh.services
	some i, rule in s.authz.allow
	object.get(rule, "from", []) == []
	msg := sprintf("service %s: authz.allow[%d] has no from, so it allows every caller", [name, i])
}

deny contains {"msg": msg, "path": ["mesh", "services", name, "authz", "allow", i, "from", j]} if {
	some name, s in input.mesh.services
	some i, rule in s.authz.allow
	"*" in rule.from
	some j, from in rule.from
	from == "*"
	msg := sprintf("service %s: authz.allow[%d] allows every mesh identity (\"*\")", [name, i])
}
