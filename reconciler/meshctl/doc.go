// Package meshctl is weft's command line over Meshes in a cluster, in
// the style of the flux CLI: `weft get meshes` (the table of `flux get
// kustomizations`), `weft reconcile mesh NAME [--with-source]` (the
// reconcile.fluxcd.io/requestedAt annotation, then wait for Ready,
// printing progress as flux does) and `weft status --kubeconfig/--namespace`
// (a Mesh's status: Ready, revisions, proxies, NACKs and the last
// failure with file:line). cmd/weft binds its flags and calls it.
//
// It reads and annotates objects through a controller-runtime client
// (KubeFlags: --kubeconfig, --context, --namespace, as kubectl and flux
// read them); the source object is read unstructured, so any Flux source
// kind works.
//
// It imports reconciler/api/mesh/v1alpha1 of weft, client-go,
// controller-runtime's client and Flux's meta API; never the controller,
// the xDS server, sidecar, cmd or up.
package meshctl
