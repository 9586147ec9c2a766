// Package servicemap is the live service map of a mesh: a page served by
// the control plane (`weft up` on its status endpoint; any server that
// mounts Map.Handler, such as the Kubernetes controller's) that draws the
// services of the served revision as nodes and the edges its definition
// declares (calls, mirrors, traffic from outside into edge services),
// with each edge's live requests per second, error percentage and p99
// from package reconciler/signals, coloured by health, and the traffic
// that no declaration explains apart, as unwanted connections. Selecting
// a service shows its versions, routes and split weights, authz rules,
// its proxies' sync state and recent NACKs, and the served revision.
//
// The page is one HTML file, a script and a style sheet embedded in the
// binary (assets/, no build step, no library): it fetches the JSON of
// GET <prefix>/api/graph (type Graph, documented in docs/observability.md)
// every few seconds and redraws. Node positions are computed here
// (layout.go), so the page only draws.
//
// Health of a declared edge (thresholds in Thresholds): "idle" without
// requests in the window; "failing" when the error percentage exceeds
// the destination's error budget (100 − its slo.availability) — 5 %
// when it has none — or the p99 exceeds its slo.latency.p99; "degraded"
// when the error percentage exceeds half of that budget; else "healthy".
//
// It imports schema/mesh, compiler and compiler/graph (names and the
// declared graph), reconciler/signals and reconciler/api/status of weft;
// never the xDS server, the pipeline, the sidecar or cmd: a server hands
// it the served model, a status function and a signals reader.
package servicemap
