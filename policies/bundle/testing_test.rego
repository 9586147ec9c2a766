# Fixtures shared by the bundle's tests: a valid service and a mesh input
# built from services, in the shape the engine gives the rules.
package weft.testing

service := {
	"namespace": "shop",
	"serviceAccount": "svc",
	"ports": {"http": {"port": 8080, "protocol": "http"}},
	"versions": {"v1": {"labels": {"version": "v1"}, "endpoints": ["127.0.0.1:18080"], "replicas": 1}},
	"calls": [],
	"edge": false,
	"routes": {},
	"timeout": "2s",
	"retries": {"attempts": 2, "on": ["reset"]},
	"mtls": "strict",
	"inherited": {"retries": true},
}

# patched(obj, patch) is obj with the top-level fields of patch replaced.
patched(obj, patch) := object.union(object.remove(obj, object.keys(patch)), patch)

# input_for(services, env) is an input without route tables; with_routes
# adds them (input.routes, which the engine computes from the model).
input_for(services, env) := {
	"mesh": {
		"name": "test",
		"trustDomain": "test.example",
		"defaults": {"namespace": "shop", "mtls": "strict", "timeout": "15s", "retries": {"attempts": 2, "on": ["reset"]}},
		"services": services,
	},
	"environment": env,
	"revision": "test",
}

# messages(findings) is the set of messages of a set of findings.
messages(findings) := {f.msg | some f in findings}

# paths(findings) is the set of paths of a set of findings.
paths(findings) := {f.path | some f in findings}

with_routes(doc, routes) := object.union(doc, {"routes": routes})

# entry(service, index, patch) is an input.routes entry: a route (named
# "r<index>"; the implicit default route, index -1, has no name) with a
# service timeout and the mesh default retries, patched.
entry(service, index, patch) := object.union(
	object.union(entry_base(service, index), entry_name(index)),
	patch,
)

entry_base(service, index) := {
	"service": service, "index": index,
	"timeout": "2s", "timeoutNs": 2000000000, "timeoutFrom": "service",
	"retries": {"attempts": 2, "on": ["reset"]}, "retriesFrom": "defaults",
}

entry_name(index) := {"name": sprintf("r%d", [index])} if index >= 0

entry_name(index) := {} if index < 0
