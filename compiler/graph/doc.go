// Package graph is the declared dependency graph of a mesh: its services
// (versions, ports, identity, the split weights of their routes) and the
// edges the definition allows — a service's calls, the copies its routes
// mirror, and traffic from outside the mesh into edge services. It
// compares the graph of an environment with the base's (services and
// edges an overlay adds or removes, split weights that differ) and writes
// graphs as Graphviz DOT and as Mermaid flowcharts, for `weft graph`.
// The live service map (package reconciler/servicemap) draws the same
// graph with traffic on it.
//
// It is pure like the compiler: same models, same bytes (everything is
// sorted; no map is iterated in its own order). It imports schema/mesh
// and the compiler's names of weft, never reconciler, sidecar or cmd.
package graph
