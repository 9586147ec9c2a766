package agent_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/sidecar/agent"
)

// TestEnvoyAdminOnlyOnUnixSocket: Envoy's admin interface (which can stop
// Envoy with POST /quitquitquit) is a unix socket of mode 0600 in a 0700
// directory, and the only TCP port the Envoy process listens on is its
// configured listener's. The agent reads the admin through the socket
// (readiness, AdminGet).
func TestEnvoyAdminOnlyOnUnixSocket(t *testing.T) {
	e := newMeshEnv(t)
	port := int(tooltest.FreePorts(t, 1)[0])
	var boot string
	a := e.startAgent(t, "admin", func(c *agent.Config) {
		c.Socket = filepath.Join(e.dir, "admin-run", "agent.sock")
		c.StaticResources = &bootstrapv3.Bootstrap_StaticResources{Listeners: []*listenerv3.Listener{mtlsListener(t, "inbound", port)}}
		boot = c.BootstrapPath
	})
	a.waitReady(t, 30*time.Second)

	sock := a.Config().AdminSocket
	if want := filepath.Join(e.dir, "admin-run", agent.AdminSocketName); sock != want {
		t.Errorf("admin socket %s, want %s", sock, want)
	}
	st, err := os.Stat(sock)
	if err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %s: %v, mode %v; want a socket of mode 0600", sock, err, st.Mode())
	}
	if dir, err := os.Stat(filepath.Dir(sock)); err != nil || dir.Mode().Perm() != 0o700 {
		t.Errorf("admin socket directory: %v, mode %v; want 0700", err, dir.Mode().Perm())
	}
	code, body, err := a.AdminGet(t.Context(), "/listeners")
	if err != nil || code != 200 || !strings.Contains(string(body), "inbound::") {
		t.Errorf("agent AdminGet /listeners: %d %v %q", code, err, body)
	}

	pid := envoyPID(t, boot)
	if pid == 0 {
		t.Fatal("no envoy process found")
	}
	ports := listeningTCPPorts(t, pid)
	if len(ports) != 1 || ports[0] != port {
		t.Errorf("envoy listens on TCP ports %v, want only its listener's %d (no admin port)", ports, port)
	}
}

// listeningTCPPorts are the local ports of the TCP sockets in LISTEN state
// that process pid holds (its /proc/<pid>/fd socket inodes matched against
// /proc/<pid>/net/tcp and tcp6).
func listeningTCPPorts(t *testing.T, pid int) []int {
	t.Helper()
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "net", table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			p, err := strconv.ParseInt(hexPort, 16, 32)
			if err == nil {
				ports = append(ports, int(p))
			}
		}
		f.Close()
	}
	return ports
}
