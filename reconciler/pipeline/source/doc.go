// Package source holds the revision sources of the pipeline
// (pipeline.Source): Dir, which watches a plain directory (the CUE module
// around it) and names each state of its files `dir@<12 hex>`, and
// GitBranch, which follows a branch of a local git repository and exports
// each new commit (`<branch>@sha1:<12 hex>`) into a fresh directory that
// Revision.Done removes. New picks one for a directory the way
// `weft up DIR` does.
//
// Their errors are *pipeline.RetryableError at step status.StepFetch (the
// branch does not resolve, the directory cannot be read) or
// status.StepExport (git archive | tar -x failed, naming the commit); the
// source stays usable and the next Next tries again. Only the end of the
// context ends a Next.
//
// The watcher never follows a symbolic link nor opens anything but a
// regular file while hashing (a FIFO or a link to /dev/zero in the
// directory cannot block or exhaust it; the loader refuses them by name).
//
// The Flux artifact source (download, verify the digest, untar) is the
// subpackage flux, behind the same interface.
//
// It imports reconciler/pipeline, reconciler/api/status and schema of
// weft.
package source
