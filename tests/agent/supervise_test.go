package agent_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/catest"
	"github.com/weft-dev/weft/internal/tooltest"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/weft-dev/weft/sidecar/agent"
)

// envoyPID is the pid of the Envoy serving admin port (from /proc: the
// process whose command line names the agent's bootstrap).
func envoyPID(t *testing.T, bootstrap string) int {
	t.Helper()
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), bootstrap) {
			return pid
		}
	}
	return 0
}

// TestAgentSupervisesEnvoy: an Envoy that dies is restarted; the agent is
// not ready meanwhile and ready again once the new Envoy has its listener
// and certificate. Stopping the agent stops Envoy.
func TestAgentSupervisesEnvoy(t *testing.T) {
	e := newMeshEnv(t)
	port := int(tooltest.FreePorts(t, 1)[0])
	var boot string
	a := e.startAgent(t, "sup", func(c *agent.Config) {
		c.RestartBackoff = 500 * time.Millisecond
		c.StaticResources = &bootstrapv3.Bootstrap_StaticResources{Listeners: []*listenerv3.Listener{mtlsListener(t, "inbound", port)}}
		boot = c.BootstrapPath
	})
	a.waitReady(t, 30*time.Second)
	pid := envoyPID(t, boot)
	if pid == 0 {
		t.Fatal("no envoy process found")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the agent notices that Envoy is gone", func() bool { return !a.Status().Ready })
	if code := httpStatus("http://" + a.HealthAddr() + "/ready"); code != 503 {
		t.Errorf("agent /ready %d while Envoy is down, want 503", code)
	}
	eventually(t, 30*time.Second, "Envoy restarted and ready", func() bool {
		st := a.Status()
		return st.Ready && st.EnvoyStarts == 2
	})
	client := catest.WorkloadCert(t, e.ca, frontend)
	if body, _, err := mtlsGet(port, e.ca.TrustPool(), &client); err != nil || body != "hello from inbound" {
		t.Errorf("after the restart: %q %v", body, err)
	}
	newPID := envoyPID(t, boot)
	if newPID == 0 || newPID == pid {
		t.Fatalf("envoy pid %d after restart (was %d)", newPID, pid)
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(newPID, 0); err == nil {
		t.Errorf("envoy %d still running after the agent stopped", newPID)
	}
}

// TestAgentUnknownToken: an agent whose token the CA does not know gets
// no certificate, starts no Envoy and says why it is not ready.
func TestAgentUnknownToken(t *testing.T) {
	e := newMeshEnv(t)
	bad := filepath.Join(e.dir, "bad.token")
	if err := os.WriteFile(bad, []byte("not-registered-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := e.startAgent(t, "badtoken", func(c *agent.Config) { c.TokenFile = bad })
	a.expectRunErr = true
	eventually(t, 10*time.Second, "the agent reports the refusal", func() bool {
		return strings.Contains(a.Status().Reason, "Unauthenticated")
	})
	if st := a.Status(); st.Ready || st.EnvoyStarts != 0 || st.Serial != "" {
		t.Errorf("status %+v, want not ready, no Envoy, no certificate", st)
	}
	if err := a.stop(); err == nil || !strings.Contains(err.Error(), "unknown token") {
		t.Errorf("Run: %v, want it to end with the CA's refusal", err)
	}
}
