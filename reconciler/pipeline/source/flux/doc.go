// Package flux is the pipeline's Flux artifact source: a revision of a
// mesh repository as Flux's source-controller publishes it — the
// status.artifact of a GitRepository, OCIRepository or Bucket (URL,
// digest, revision) — downloaded, verified and unpacked into a fresh
// directory, ready for the same pipeline as `weft vet`, `weft build` and
// `weft up` (reconciler/pipeline).
//
// # What it owns
//
//   - Fetcher: one artifact into a directory with Flux's own library
//     (github.com/fluxcd/pkg/http/fetch's ArchiveFetcher, as Flux's
//     kustomize-controller and helm-controller fetch): the download is
//     bounded (Options.MaxDownloadBytes) and retried on 5xx, its digest
//     checked against status.artifact.digest before anything is
//     unpacked, the tarball extracted with fluxcd/pkg/tar within
//     Options.MaxUntarBytes (symbolic links are skipped, paths that leave
//     the directory are refused). The revision's Dir is spec.path inside
//     it and its PolicyDirs are spec.policies; Revision.Done removes the
//     directory.
//   - Source: a pipeline.Source over a source object (Next blocks until
//     the object's artifact has a digest not returned before): the third
//     source beside the directory watcher and the git branch follower.
//     The Kubernetes controller, which is event-driven, calls
//     Fetcher.Fetch directly from its reconcile.
//   - Pack / Fetcher.Unpack: a fetched artifact as a tarball again and
//     back, so that the controller can keep the last applied revision
//     after source-controller has moved on.
//   - GetArtifact / SourceKinds: read a source object's artifact by kind
//     through a controller-runtime client.Reader.
//
// # Errors
//
// What a later attempt may not have is a *pipeline.RetryableError at
// step fetch: the download failing (connection refused, 5xx after the
// retries, 404: source-controller garbage-collected the artifact and
// will publish it again), a digest that does not match (an artifact
// being replaced), a source with no artifact yet. What the same artifact
// will always do is a *pipeline.StallingError at step fetch: an artifact
// over the size limits, an archive that is not a gzipped tarball, a
// spec.path or spec.policies folder that is not in it. Source.Next
// returns a stalling failure once, as a retryable error, and then waits
// for the next artifact (a Source's errors are retryable by contract).
//
// # Imports
//
// reconciler/pipeline, reconciler/api/status and schema of weft; Flux's
// fetch, tar and source-controller API modules; controller-runtime's
// client (GetArtifact). Never reconciler/xds, the controller, sidecar,
// cmd or up.
package flux
