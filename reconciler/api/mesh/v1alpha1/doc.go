// Package v1alpha1 is the Kubernetes API of weft: the Mesh kind of the
// group mesh.weft.dev, version v1alpha1. A Mesh tells the weft controller
// which Flux source artifact (GitRepository, OCIRepository or Bucket) holds
// a mesh repository, which folder and environment of it to compile, and how
// often; its status reports what is served (Ready, Reconciling and Stalled
// conditions with Flux's types and reasons, the applied and attempted
// revisions, the proxies in sync) and, when a revision fails, the problems
// with file:line:column, field path and fix.
//
// It is modelled on Flux's Kustomization (kustomize.toolkit.fluxcd.io) so
// that Flux tooling works on it unchanged: Mesh implements
// meta.ObjectWithConditions and meta.ObjectWithConditionsSetter (so
// github.com/fluxcd/pkg/runtime/conditions helpers and kstatus apply), and
// meta.ObjectWithAnnotationRequests (the reconcile.fluxcd.io/requestedAt
// annotation, as `flux reconcile` sets it).
//
// # Generated files
//
// zz_generated.deepcopy.go and the CustomResourceDefinition
// environments/deploy/crd/mesh.weft.dev_meshes.yaml are generated from the
// kubebuilder markers in this package by controller-gen, pinned in its own
// tools module (tools/controller-gen/go.mod): run `make generate`
// (scripts/generate.sh). TestGeneratedFilesAreCurrent fails when they are
// stale.
//
// # Imports
//
// Types only, plus the small accessors Flux's helpers need. It imports
// k8s.io/apimachinery, github.com/fluxcd/pkg/apis/meta and, of weft, only
// reconciler/api/status (whose Problem it mirrors); never
// controller-runtime, so the sidecar and clients may use it cheaply.
//
// +kubebuilder:object:generate=true
// +groupName=mesh.weft.dev
package v1alpha1
