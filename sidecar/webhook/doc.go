// Package webhook is the sidecar injector's admission webhook: a thin
// http.Handler (controller-runtime's admission.Webhook) that decodes an
// AdmissionReview of a pod being created, injects it with sidecar/inject
// — the same code as `weft inject -f` — and answers with the JSON patch
// between the pod it received and the injected one. It holds no
// injection logic of its own.
//
//	h := webhook.New(webhook.Config{Options: func(ctx context.Context) (inject.Options, error) { ... }})
//	mux.Handle(webhook.Path, h)     // served over TLS by the controller (cmd/weft composes it)
//
// What it answers (environments/deploy/webhook.yaml selects the requests:
// CREATE of pods in namespaces labelled weft.dev/inject=enabled, never the
// system namespaces nor weft's own):
//
//   - an injected pod: allowed, with the patch (none when the pod was
//     already injected with the same options: injecting is idempotent);
//   - a pod that is not injected (the weft.dev/inject: disabled
//     annotation, hostNetwork, a namespace never injected, no mesh service
//     name): allowed unchanged; a pod without a service name also gets an
//     admission warning (kubectl prints it) saying how to name one;
//   - a pod whose weft.dev/ annotations are invalid: denied, with the
//     annotation, its value and what is expected;
//   - when Config.Options fails (the controller has no CA root yet): an
//     error (HTTP 500 in the review): with the webhook's failurePolicy
//     Fail the pod is not created and the ReplicaSet retries, rather than
//     a pod running outside the mesh.
//
// # Imports
//
// sidecar/inject of weft; controller-runtime's admission package and the
// Kubernetes API types.
package webhook
