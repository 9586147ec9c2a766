package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// AppHealthPrefix starts the paths of the app probes on the health
// endpoint.
const AppHealthPrefix = "/app-health/"

// AppHealthPath is the health endpoint's path for the probe kind ("livez",
// "readyz" or "startupz") of container.
func AppHealthPath(container, kind string) string {
	return AppHealthPrefix + container + "/" + kind
}

// The kinds of AppProbe.
const (
	ProbeHTTP  = "http"
	ProbeHTTPS = "https"
	ProbeTCP   = "tcp"
	ProbeGRPC  = "grpc"
)

// AppProbe is one of the app's probes as kubelet would have run it
// against the pod, run by the agent against 127.0.0.1 instead.
type AppProbe struct {
	// Kind is http, https (certificate not verified, as kubelet does), tcp
	// or grpc (grpc.health.v1).
	Kind string `json:"kind"`
	Port int32  `json:"port"`
	// Path and Headers of an HTTP probe.
	Path    string        `json:"path,omitempty"`
	Headers []ProbeHeader `json:"headers,omitempty"`
	// GRPCService is the service name a gRPC probe asks about.
	GRPCService string `json:"grpcService,omitempty"`
	// TimeoutSeconds of one probe (0: kubelet's default, 1 s).
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`
}

// ProbeHeader is an HTTP header of a probe.
type ProbeHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// AppProbes are the app's probes by health endpoint path (AppHealthPath).
type AppProbes map[string]AppProbe

// serveAppProbe runs the probe of r's path and answers 200 when the app
// passed it (an HTTP status in [200, 400), a TCP connection, gRPC
// SERVING), 503 with what failed otherwise, and 404 for a path the
// injector did not register.
func (a *Agent) serveAppProbe(w http.ResponseWriter, r *http.Request) {
	p, ok := a.cfg.AppProbes[r.URL.Path]
	if !ok {
		http.Error(w, "no app probe "+r.URL.Path, http.StatusNotFound)
		return
	}
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if err := runProbe(ctx, p); err != nil {
		http.Error(w, "app probe failed: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// runProbe runs p against 127.0.0.1 until ctx ends.
func runProbe(ctx context.Context, p AppProbe) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Port)))
	switch p.Kind {
	case ProbeHTTP, ProbeHTTPS:
		return httpProbe(ctx, p, addr)
	case ProbeTCP:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	case ProbeGRPC:
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: p.GRPCService})
		if err != nil {
			return err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("gRPC health %s", resp.GetStatus())
		}
		return nil
	}
	return fmt.Errorf("unknown probe kind %q", p.Kind)
}

func httpProbe(ctx context.Context, p AppProbe, addr string) error {
	scheme := "http"
	if p.Kind == ProbeHTTPS {
		scheme = "https"
	}
	path := p.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/weft-agent")
	for _, h := range p.Headers {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{
		Transport: &http.Transport{
			// kubelet does not verify an HTTPS probe's certificate either.
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback probe, as kubelet's
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP %d from %s%s", resp.StatusCode, addr, path)
	}
	return nil
}
