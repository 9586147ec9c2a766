package tooltest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// UnixHTTPClient is an HTTP client whose connections all go to the unix
// socket at path, whatever host a URL names: how tests reach an Envoy
// admin interface, which weft puts on a unix socket (mode 0600) rather
// than a TCP port.
func UnixHTTPClient(path string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			DisableKeepAlives: true,
		},
	}
}

// AdminGet GETs path (e.g. "/config_dump?resource=dynamic_route_configs")
// from the Envoy admin interface on the unix socket and returns the status
// code and body; the test fails if the socket does not answer.
func AdminGet(t testing.TB, socket, path string) (int, string) {
	t.Helper()
	code, body, err := TryAdminGet(socket, path)
	if err != nil {
		t.Fatalf("envoy admin %s on %s: %v", path, socket, err)
	}
	return code, body
}

// TryAdminGet is AdminGet returning the error (for polling loops).
func TryAdminGet(socket, path string) (int, string, error) {
	resp, err := UnixHTTPClient(socket).Get("http://envoy-admin" + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", fmt.Errorf("reading %s: %w", path, err)
	}
	return resp.StatusCode, string(b), nil
}
