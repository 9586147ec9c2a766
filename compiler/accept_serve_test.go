package compiler

import (
	"fmt"
	"testing"

	"github.com/weft-dev/weft/schema/mesh"
)

// TestEnvoyHeaderValuesLiteral: a header value with % reaches the client
// as written. Envoy would read "%DOWNSTREAM_REMOTE_ADDRESS%" as a command
// (and reject "100%"); the compiler writes every % as %%.
func TestEnvoyHeaderValuesLiteral(t *testing.T) {
	h := newHarness(t)
	appPort := h.app(t)
	rv := svc("reviews", appPort)
	rv.MTLS = mesh.MTLSDisable
	values := map[string]string{"x-progress": "100%", "x-peer": "%DOWNSTREAM_REMOTE_ADDRESS%", "x-both": "50%% off%"}
	rv.Headers = &mesh.Headers{Response: &mesh.HeaderOps{Set: values}}
	fe := calls(svc("frontend", 8080), "reviews")
	fe.MTLS = mesh.MTLSDisable
	m := newModel(fe, rv)
	rvProxy := h.proxy(t, m, "reviews-v1")
	m.Services["reviews"].Versions["v1"].Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", rvProxy.inbound)}
	feProxy := h.proxy(t, m, "frontend-v1")

	code, hdr, body := feProxy.get(t, fmt.Sprintf("reviews:%d", appPort), "/")
	if code != 200 {
		t.Fatalf("GET /: %d %q", code, body)
	}
	for k, v := range values {
		if got := hdr.Get(k); got != v {
			t.Errorf("response header %s = %q, want %q as written", k, got, v)
		}
	}
}
