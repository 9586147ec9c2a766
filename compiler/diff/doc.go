// Package diff compares two compiled revisions of a mesh: what `weft diff`
// shows a reviewer before a pull request is merged. It is pure (no I/O):
// given the model and the compiled Result of each side, per environment,
// it returns a Report that says
//
//   - in the user's terms, what changes (Summary): split weights,
//     timeouts, retries, routes, versions and services added or removed,
//     calls, authorization edges opened and closed ("orders may no longer
//     be called by cart"), every other field of the definition by its
//     path, and the environments the change applies to; a class whose
//     compiled configuration changed while no line names it or anything it
//     depends on gets a line of its own, so that the summary never misses
//     a change the compiled diff shows;
//   - per proxy class, what its effective Envoy configuration becomes:
//     every resource added, removed or changed, and for a changed one each
//     field (path, old, new), compared semantically with go-cmp and
//     protocmp (lists of named messages — virtual hosts, routes, clusters,
//     filter chains, weighted clusters — compared by name, Any unpacked,
//     durations and wrappers as values), never as text.
//
// Classes with the same hash on both sides (compiler.Class.Hash) are
// unchanged and not compared further; classes whose changes are identical
// (the versions of a service) are reported together. The Report is
// written as text, as a pull-request comment in Markdown (collapsible
// sections, truncated under GitHub's comment limit) or as JSON; the same
// inputs always give the same bytes.
//
// It imports schema/mesh and compiler only (never policies, reconciler,
// sidecar or cmd); loading, vetting and compiling the two sides is the
// caller's (cmd/weft diff runs weft build's gate on each).
package diff
