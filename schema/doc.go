// Package schema owns weft's CUE schema (the #Mesh definition, embedded from
// cue/weft.cue and imported by mesh repositories as "weft.dev/weft") and the
// loader that turns a mesh repository into a validated mesh.Model.
//
// Loading is one ordered pipeline: resolve the environment (ResolveEnv, the
// one place that does: `--env NAME`, DIR/environments/NAME, DIR/NAME, or an
// environment directory given directly), find the module root, read the
// module (readSource), build the CUE instance with the embedded schema
// overlaid at cue.mod/pkg/weft.dev/weft, validate it concrete and final,
// decode it (routes, keyed by name in CUE, into mesh.Routes in precedence
// order), resolve mesh defaults into each service, and check the cross
// references CUE cannot express (route versions, calls, split weights,
// authz callers, mirror targets, routes an earlier route always wins
// over). Every failure is an *Error carrying the file:line:column (or the
// file alone), the field path, what is wrong and how to fix it, and all
// failures of a stage are reported together. CUE's own errors are
// translated (errors.go) and de-duplicated (simplify.go: one error per
// invalid enum value, none for a default the value was entitled to
// override); routes written as a list (the form before they were keyed by
// name) get one error of their own.
//
// # Bounded input
//
// readSource is the only reader of a repository: every .cue file of the
// module and every file they @embed, each a regular file inside the module
// (symbolic links out of it, devices, FIFOs and sockets are refused, never
// opened for reading), within Limits (DefaultMaxFileBytes per file,
// DefaultMaxTotalBytes in all). cue/load is then given exactly those files
// as an overlay on a directory that does not exist on disk, and no module
// registry: neither CUE nor @embed can read or download anything else.
// LoadContext stops reading when its context ends; CUE's evaluation cannot
// be interrupted (package reconciler/pipeline runs it where an overrun can
// be abandoned).
//
// It must not import any other weft package but schema/mesh.
package schema
