# METADATA
# title: weft policy library
# description: |-
#   Helpers for weft's default rules and for a team's own rules: the
#   configuration of a rule, the entries of the effective route tables
#   (input.routes) with their names and field paths, and duration
#   formatting. Import it with `import data.weft.lib`.
package weft.lib

# config(rule) is data.weft.config.rules[rule], or {} when it is not set.
config(rule) := object.get(data.weft.config, ["rules", rule], {})

# route_label(r) names the route of an input.routes entry in messages.
route_label(r) := sprintf("route %q", [r.name]) if r.index >= 0

route_label(r) := "the implicit default route" if r.index == -1

# route_name(r, name) names the route input.mesh.services[s].routes[name]
# (routes are keyed by route name) in messages.
route_name(_, name) := sprintf("route %q", [name])

# route_path(r) is the field path of the route of an input.routes entry:
# the route (by name), or the service for the implicit default route.
route_path(r) := ["mesh", "services", r.service, "routes", r.name] if r.index >= 0

route_path(r) := ["mesh", "services", r.service] if r.index == -1

# duration(n) writes n nanoseconds the short way: "4s", "750ms", "1500us".
duration(n) := sprintf("%ds", [n / 1000000000]) if n % 1000000000 == 0

duration(n) := sprintf("%dms", [n / 1000000]) if {
	n % 1000000000 != 0
	n % 1000000 == 0
}

duration(n) := sprintf("%dus", [n / 1000]) if {
	n % 1000000 != 0
	n % 1000 == 0
}

duration(n) := sprintf("%dns", [n]) if n % 1000 != 0

# inherited_note(s, field) is " (inherited from mesh.defaults.<field>)"
# when s did not write field itself, else "".
inherited_note(s, field) := sprintf(" (inherited from mesh.defaults.%s)", [field]) if s.inherited[field]

inherited_note(s, field) := "" if not s.inherited[field]
