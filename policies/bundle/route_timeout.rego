# METADATA
# title: Every route has a timeout
# description: |-
#   Every route of an http or grpc service must have a timeout chosen for
#   it: written on the route, or on the service (which applies to the
#   service's routes that have none). A route that only gets the mesh-wide
#   default (mesh.defaults.timeout, or the schema's built-in 15s) is denied:
#   the default is a safety net sized for no service in particular. This
#   includes the implicit catch-all route that weft adds after a service's
#   routes when the last one does not match every request (or when the
#   service has no routes): it uses the service's timeout.
#
#   A timeout of zero ("0s") is denied wherever it comes from: Envoy reads
#   it as "no timeout", so a stuck upstream holds the request forever.
#
#   Config: allow_mesh_default: true accepts the mesh default as a chosen
#   timeout (only the zero check remains).
# custom:
#   fix: set timeout on the route or on the service
package weft.rules.route_timeout

import data.weft.lib

deny contains {"msg": msg, "path": lib.route_path(r)} if {
	not lib.config("route_timeout").allow_mesh_default
	some table in input.routes
	some r in table
	r.timeoutFrom == "defaults"
	msg := sprintf("%s of service %s has no timeout: it would only get the mesh default %s", [lib.route_label(r), r.service, r.timeout])
}

deny contains {"msg": msg, "path": timeout_path(r)} if {
	some table in input.routes
	some r in table
	r.timeout == "0s"
	msg := sprintf("%s of service %s has timeout 0s, which Envoy reads as no timeout at all", [lib.route_label(r), r.service])
}

timeout_path(r) := array.concat(lib.route_path(r), ["timeout"]) if r.timeoutFrom == "route"

timeout_path(r) := ["mesh", "services", r.service, "timeout"] if r.timeoutFrom != "route"
