# METADATA
# title: Outlier detection can eject
# description: |-
#   A warn. Envoy ejects a failing endpoint only if the ejected endpoints,
#   that one included, stay within maxEjectionPercent of the endpoints of
#   the caller's cluster: one version of the service (routes with a split),
#   or all of its versions. When a single endpoint is a larger share than
#   maxEjectionPercent, outlier detection counts the failures and never
#   ejects anything: with Envoy's own default, 10%, no pool of fewer than
#   10 endpoints ever ejects one (issue 7: one replica of two failing every
#   request gave 50% 503s and no ejection). weft's default, 50, ejects one
#   endpoint of any pool of two or more.
#
#   The endpoints counted are those the definition declares: a version's
#   static endpoints, else its replicas. A pool of one endpoint is not
#   reported: there is no other endpoint to send its requests to.
# custom:
#   fix: raise maxEjectionPercent to 100 / (endpoints of the smallest pool) or more, or remove it for weft's default (50)
package weft.rules.outlier_ejection

import data.weft.lib

# endpoints(v) is the number of endpoints a version declares.
endpoints(v) := count(v.endpoints) if count(v.endpoints) > 0

endpoints(v) := v.replicas if count(v.endpoints) == 0

# pools(s) are the clusters a caller of s load-balances over, with their
# numbers of endpoints: each version, and all of them together.
pools(s) := object.union(
	{sprintf("version %s", [vn]): endpoints(v) | some vn, v in s.versions},
	all_versions(s),
)

all_versions(s) := {"all versions": sum([endpoints(v) | some v in s.versions])} if count(s.versions) > 1

all_versions(s) := {} if count(s.versions) <= 1

# stuck(s, pct) are the pools of two or more endpoints of which pct
# (Envoy's whole percent) ejects none: one endpoint's share is above it.
stuck(s, pct) := {name: n |
	some name, n in pools(s)
	n >= 2
	100 / n > pct
}

warn contains {"msg": msg, "path": path, "fix": fix} if {
	some name, s in input.mesh.services
	pct := round(s.outlierDetection.maxEjectionPercent)
	bad := stuck(s, pct)
	count(bad) > 0
	list := concat(", ", sort([sprintf("%s (%d endpoints, %s%% each)", [p, n, share(n)]) | some p, n in bad]))
	msg := sprintf("outlier detection of service %s can never eject an endpoint: maxEjectionPercent %d is below one endpoint's share of %s%s", [name, pct, list, lib.inherited_note(s, "outlierDetection")])
	need := ceil(100 / min([n | some n in bad]))
	fix := sprintf("set maxEjectionPercent to %d or more, or remove it for weft's default (50)", [need])
	path := od_path(s, name)
}

# share(n) is one endpoint's share of n, in percent, to one decimal.
share(n) := sprintf("%d", [100 / n]) if 100 % n == 0

share(n) := sprintf("%.1f", [100 / n]) if 100 % n != 0

od_path(s, _) := ["mesh", "defaults", "outlierDetection", "maxEjectionPercent"] if s.inherited.outlierDetection

od_path(s, name) := ["mesh", "services", name, "outlierDetection", "maxEjectionPercent"] if not s.inherited.outlierDetection
