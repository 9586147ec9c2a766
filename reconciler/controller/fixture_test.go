package controller_test

import (
	"fmt"
	"strings"
)

// fixture is one state of the mesh repository of the tests: frontend
// calls reviews, whose route sets the x-mesh-route header to route;
// with ratings, an edge service ratings exists too; retries sets the
// reviews route's retry attempts (9 is a policy deny: retry_budget);
// broken makes mesh.cue a CUE type error on its line brokenLine.
type fixture struct {
	route   string
	ratings bool
	retries int
	broken  bool
}

// brokenLine is the line of mesh/mesh.cue that a broken fixture's error
// is on.
const brokenLine = 11

func (f fixture) files() map[string]string {
	var extra, retries string
	port := "8080"
	if f.ratings {
		extra = `
		ratings: {
			ports: http: {port: 9180, protocol: "http"}
			versions: v1: {labels: version: "v1", endpoints: ["127.0.0.1:9180"]}
			timeout:   "2s"
			rateLimit: {requestsPerSecond: 10, burst: 20}
		}`
	}
	if f.retries > 0 {
		retries = fmt.Sprintf("\n\t\t\t\tretries: attempts: %d", f.retries)
	}
	if f.broken {
		port = `"not a number"`
	}
	mesh := `package shop

import "weft.dev/weft"

mesh: weft.#Mesh & {
	name:        "shop"
	trustDomain: "shop.example"
	defaults: {namespace: "shop", mtls: "disable"}
	services: {
		frontend: {
			ports: http: {port: ` + port + `, protocol: "http"}
			versions: v1: {labels: version: "v1", endpoints: ["127.0.0.1:8080"]}
			calls: ["reviews"]
			timeout:   "2s"
			rateLimit: {requestsPerSecond: 100, burst: 200}
		}
		reviews: {
			ports: http: {port: 9080, protocol: "http"}
			versions: v1: {labels: version: "v1", endpoints: ["127.0.0.1:9080"]}
			timeout: "2s"
			routes: all: {
				match: path: prefix: "/"
				headers: request: set: {"x-mesh-route": "` + f.route + `"}` + retries + `
			}
		}` + extra + `
	}
}
`
	if strings.Count(mesh[:strings.Index(mesh, "ports: http: {port: "+port)], "\n")+1 != brokenLine {
		panic("fixture: brokenLine is stale")
	}
	return map[string]string{
		"README.md":               "The shop mesh (test fixture).\n",
		"mesh/cue.mod/module.cue": "module: \"example.com/shop\"\nlanguage: version: \"v0.17.0\"\n",
		"mesh/dev/dev.cue":        "package shop\n",
		"mesh/mesh.cue":           mesh,
		// The organisation's own rule, in a folder the Mesh names in
		// spec.policies.
		"org/policies/no-forbidden-route.rego": `package weft.rules.no_forbidden_route

deny contains {"msg": "the reviews route may not set x-mesh-route to \"forbidden\"", "path": ["mesh", "services", "reviews", "routes", "all"]} if {
	input.mesh.services.reviews.routes.all.headers.request.set["x-mesh-route"] == "forbidden"
}
`,
	}
}
