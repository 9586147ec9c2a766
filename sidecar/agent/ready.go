package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// readyPoll is how often the agent asks Envoy's admin whether it is ready.
const readyPoll = 200 * time.Millisecond

// checkEnvoy asks Envoy's admin whether it is ready to serve: /ready says
// LIVE, /listeners has at least one listener, and /certs shows a
// certificate with the workload's SPIFFE id (unless ReadyWithoutCert).
// It returns "" when ready, else why not.
func (a *Agent) checkEnvoy(ctx context.Context) string {
	get := func(path string) (int, []byte, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return a.AdminGet(ctx, path)
	}
	code, body, err := get("/ready")
	if err != nil {
		return "envoy admin unreachable: " + err.Error()
	}
	if code != http.StatusOK || strings.TrimSpace(string(body)) != "LIVE" {
		return fmt.Sprintf("envoy not live: %d %s", code, strings.TrimSpace(string(body)))
	}
	code, body, err = get("/listeners?format=json")
	if err != nil || code != http.StatusOK {
		return fmt.Sprintf("envoy /listeners: %d %v", code, err)
	}
	var ls struct {
		ListenerStatuses []json.RawMessage `json:"listener_statuses"`
	}
	if err := json.Unmarshal(body, &ls); err != nil {
		return "envoy /listeners: " + err.Error()
	}
	if len(ls.ListenerStatuses) == 0 {
		return "envoy has no listeners yet"
	}
	if a.cfg.ReadyWithoutCert {
		return ""
	}
	code, body, err = get("/certs")
	if err != nil || code != http.StatusOK {
		return fmt.Sprintf("envoy /certs: %d %v", code, err)
	}
	if !certsShow(body, a.cfg.Identity.String()) {
		return "envoy does not have the workload certificate yet"
	}
	return ""
}

// certsShow reports whether Envoy's /certs output holds a certificate
// chain with URI SAN id.
func certsShow(body []byte, id string) bool {
	var certs struct {
		Certificates []struct {
			CertChain []struct {
				SerialNumber    string `json:"serial_number"`
				SubjectAltNames []struct {
					URI string `json:"uri"`
				} `json:"subject_alt_names"`
			} `json:"cert_chain"`
		} `json:"certificates"`
	}
	if json.Unmarshal(body, &certs) != nil {
		return false
	}
	for _, c := range certs.Certificates {
		for _, cc := range c.CertChain {
			for _, san := range cc.SubjectAltNames {
				if san.URI == id {
					return true
				}
			}
		}
	}
	return false
}

// healthHandler answers, on Config.HealthAddress:
//
//	GET /ready      200 "ready" when Envoy is ready, else 503 "not ready: <reason>"
//	GET /healthz    200 while the agent runs (liveness)
//	GET /status     200, Status as JSON
//	GET /app-health/<container>/<kind>   the app's rewritten probes (AppProbes)
func (a *Agent) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		st := a.Status()
		if !st.Ready {
			http.Error(w, "not ready: "+st.Reason, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.Status())
	})
	mux.HandleFunc("GET "+AppHealthPrefix, a.serveAppProbe)
	return mux
}

// readPodLabels reads the downward API's labels file in dir (lines
// key="value"); nil without one.
func readPodLabels(dir string) map[string]string {
	if dir == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "labels"))
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		out[k] = v
	}
	return out
}

// adminHost is the host of the admin URLs; the connection goes to the
// admin socket whatever the URL says.
const adminHost = "http://envoy-admin"

// adminMaxBody bounds what is read of one admin page (a config dump of a
// large class is a few MB).
const adminMaxBody = 32 << 20

// AdminClient is an HTTP client whose every connection goes to the unix
// socket at path: Envoy's admin interface (Config.AdminSocket). URLs may
// name any host (e.g. "http://envoy-admin/ready").
func AdminClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}
}

// AdminGet reads one page of Envoy's admin interface (e.g.
// "/stats?filter=^listener_manager"), over the admin socket: the status
// code and at most 32 MiB of body.
func (a *Agent) AdminGet(ctx context.Context, path string) (int, []byte, error) {
	return a.admin(ctx, http.MethodGet, path)
}

func (a *Agent) admin(ctx context.Context, method, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, adminHost+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := a.adminClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, adminMaxBody))
	return resp.StatusCode, b, err
}
