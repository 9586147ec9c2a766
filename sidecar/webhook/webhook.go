package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/weft-dev/weft/sidecar/inject"
)

// Path is where the webhook is served (the MutatingWebhookConfiguration's
// clientConfig.service.path).
const Path = "/inject"

// Config of the webhook.
type Config struct {
	// Options returns the injection options for one request (called for
	// every request: the trust bundle comes from the controller's CA).
	Options func(ctx context.Context) (inject.Options, error)
	// Log receives one line per pod (default: discard).
	Log *slog.Logger
}

// New is the webhook's http.Handler.
func New(c Config) http.Handler {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return &admission.Webhook{Handler: &handler{c}}
}

type handler struct{ c Config }

// Handle implements admission.Handler.
func (h *handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" || req.Operation != admissionv1.Create || req.SubResource != "" {
		return admission.Allowed("weft injects pods when they are created only")
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("weft injector: decoding the pod: %w", err))
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	opts, err := h.c.Options(ctx)
	if err != nil {
		h.c.Log.Error("weft injector: no options", "namespace", req.Namespace, "pod", name, "err", err)
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("weft injector: %w", err))
	}
	out, err := inject.Pod(&pod, req.Namespace, opts)
	if err != nil {
		h.c.Log.Info("weft injector: denied", "namespace", req.Namespace, "pod", name, "reason", err)
		return admission.Denied(err.Error())
	}
	if !out.Injected {
		h.c.Log.Info("weft injector: not injected", "namespace", req.Namespace, "pod", name, "reason", out.Skipped)
		return admission.Allowed("not injected: " + out.Skipped).WithWarnings(out.Warnings...)
	}
	mutated, err := json.Marshal(&pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	h.c.Log.Info("weft injector: injected", "namespace", req.Namespace, "pod", name, "service", out.Service)
	return admission.PatchResponseFromRaw(req.Object.Raw, mutated).WithWarnings(out.Warnings...)
}
