// Package pipeline is weft's one reconcile pipeline: a revision of a mesh
// repository goes load -> vet -> compile -> accept -> publish, and a
// revision that fails anywhere changes nothing served — the last good one
// keeps serving. `weft vet`, `weft build`, `weft up` and the Kubernetes
// controller (reconciler/controller) all run it; cmd/ and up/ only
// compose it.
//
// # What it owns
//
//   - Gate: the one gate (schema load within Limits, the policies of
//     package policies, the optional acceptance step AcceptFunc). Vet is
//     `weft vet`, Build is `weft build`; Pipeline runs the same steps on
//     one environment.
//   - Pipeline: one revision as an ordered list of steps, each taking the
//     revision's context (deadline: Limits.Timeout). Modelled on Flux
//     source-controller's reconcilers. The served model and compiled
//     result are kept (LastApplied, Republish after a control-plane
//     restart). Each revision is compiled from the previous compiled
//     one (compiler.Incremental): only the services whose inputs
//     changed, and those that depend on them, are compiled again.
//   - Typed failures: a *StallingError is the definition's fault (a CUE
//     or cross-reference error, a refused or oversized file, a policy
//     deny or a broken policy, a compile or acceptance error) — retrying
//     the same revision cannot help (Flux: Stalled); a *RetryableError
//     may pass later (a source that cannot fetch or export, the time
//     limit, a publish that failed; Flux: requeue with backoff). Tell
//     them apart with errors.As, IsStalling, IsRetryable; StepOf names
//     the step. Every failure is recorded with Publisher.RecordFailure
//     (status.Attempt: step, error, problems with file:line).
//   - Source and Revision: what yields revisions (a name, a directory, a
//     cleanup; Next(ctx) blocks; its errors are retryable and never end a
//     follower). The implementations are in package source below: the
//     directory watcher and the local git branch follower; package
//     source/flux, a Flux source-controller artifact (its policy folders
//     travel with the revision: Revision.PolicyDirs).
//   - Follower: `weft up`'s loop of a Pipeline over a Source: retries
//     with Backoff (exponential, capped, jittered), reports each distinct
//     failure once, stops only when its context ends.
//   - Limits (BindFlags: --max-file-size, --max-source-size,
//     --revision-timeout) with the defaults: 4 MiB per file, 16 MiB per
//     revision (schema.Limits, measured against the benchmark meshes),
//     2 minutes per revision.
//
// # The time limit and CUE
//
// CUE's evaluation cannot be cancelled. The gate runs a load in a
// goroutine and waits for it or for the revision's deadline; past the
// deadline the revision fails (*TimeoutError, retryable) and the
// evaluation is abandoned: it runs on, holding a core and its memory,
// until CUE returns. The cost is bounded: a Gate runs one evaluation at a
// time, abandoned or not, so the next revision's load waits for it (within
// its own deadline) instead of piling a second one on. The loader stops
// reading files when the context ends; the policies (OPA) and the steps
// after load honour the context.
//
// # Imports
//
// schema, policies, compiler and reconciler/api/status of weft, and
// pflag. Not reconciler/xds (a Publisher is an interface; *xds.Server is
// one), nor sidecar, cmd or up.
package pipeline
