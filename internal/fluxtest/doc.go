// Package fluxtest runs Flux's real source-controller for tests, and a real
// git server for it to fetch from.
//
//   - [StartGitServer]: git's own `git-http-backend` (git's smart HTTP
//     protocol, the server side of every clone, fetch and push) behind Go's
//     net/http/cgi on 127.0.0.1; [GitServer.CreateRepo] makes a bare
//     repository there and a working clone, [Repo.Commit] writes files,
//     commits and pushes them over HTTP.
//   - [StartSourceController]: the source-controller binary that `make
//     tools` builds from tools/flux (Flux v1.9.6), against a kubetest
//     apiserver, with its CRDs (copied by `make tools` from the module's
//     config/crd/bases into .tools/crd/source-controller) installed, every
//     address on 127.0.0.1 and its artifact storage in t.TempDir().
//   - [SourceController.CreateGitRepository], [SourceController.RequestReconcile] and
//     [SourceController.WaitForArtifact] drive a GitRepository (Flux's typed
//     API, source.toolkit.fluxcd.io/v1); [FetchArtifact] downloads an
//     artifact, refuses it unless its sha256 is `status.artifact.digest`,
//     and returns the files of its tarball.
//
// Everything is stopped by t.Cleanup. A missing binary skips the test, or
// fails it under CI=true (internal/kubetest.RequireBinaries).
//
// This package is for tests only; it imports internal/kubetest and
// internal/tooltest and no other weft package.
package fluxtest
