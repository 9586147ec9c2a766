package agent_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/catest"
	"github.com/weft-dev/weft/internal/tooltest"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/sidecar/agent"
)

// TestAgentServesCertificateOverSDS: an agent obtains orders' certificate
// from the CA with its token and serves it to a real Envoy over SDS; the
// Envoy's mTLS listener presents it (the handshake shows orders' SPIFFE
// id), accepts a mesh client, refuses a client of another CA and plain
// text. The private key never touches the disk.
func TestAgentServesCertificateOverSDS(t *testing.T) {
	e := newMeshEnv(t)
	port := int(tooltest.FreePorts(t, 1)[0])
	a := e.startAgent(t, "sds", func(c *agent.Config) {
		c.StaticResources = &bootstrapv3.Bootstrap_StaticResources{Listeners: []*listenerv3.Listener{mtlsListener(t, "inbound", port)}}
	})
	a.waitReady(t, 30*time.Second)

	// The socket is private to the pod.
	if st, err := os.Stat(a.Config().Socket); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: %v, mode %v; want 0600", a.Config().Socket, err, st.Mode().Perm())
	}
	// Envoy's /certs shows the CA-issued certificate.
	serial := a.Certificate().SerialNumber.Text(16)
	if certs := a.adminGet(t, "/certs"); !strings.Contains(certs, orders.String()) || !strings.Contains(certs, serial) {
		t.Errorf("envoy /certs does not show %s serial %s:\n%s", orders, serial, certs)
	}
	client := catest.WorkloadCert(t, e.ca, frontend)
	body, leaf, err := mtlsGet(port, e.ca.TrustPool(), &client)
	if err != nil {
		t.Fatalf("mesh client: %v", err)
	}
	if body != "hello from inbound" || leaf.URIs[0].String() != "spiffe://shop.example/ns/shop/sa/orders" || leaf.SerialNumber.Text(16) != serial {
		t.Errorf("mesh client got %q from %v serial %x, want orders' certificate serial %s", body, leaf.URIs, leaf.SerialNumber, serial)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.ca.TrustPool()}); err != nil {
		t.Errorf("served certificate does not verify against the mesh root: %v", err)
	}

	// A client whose certificate comes from another CA is refused.
	otherCA, err := ca.New(ca.Config{TrustDomain: trustDomain, StateDir: filepath.Join(e.dir, "other-ca")})
	if err != nil {
		t.Fatal(err)
	}
	intruder := catest.WorkloadCert(t, otherCA, frontend)
	if body, _, err := mtlsGet(port, e.ca.TrustPool(), &intruder); err == nil {
		t.Errorf("client of another CA got %q, want the handshake refused", body)
	}
	// So is a client without a certificate, and plain text.
	if body, _, err := mtlsGet(port, e.ca.TrustPool(), nil); err == nil {
		t.Errorf("client without certificate got %q", body)
	}
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/hello", port)); err == nil {
		resp.Body.Close()
		t.Errorf("plaintext: %s, want the connection refused", resp.Status)
	}

	// The key never reaches the disk: nothing under the agent's directory
	// holds a private key.
	filepath.Walk(e.dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || info.Mode()&os.ModeSocket != 0 || strings.HasPrefix(path, filepath.Join(e.dir, "ca")) || strings.HasPrefix(path, filepath.Join(e.dir, "other-ca")) {
			return nil
		}
		if b, _ := os.ReadFile(path); strings.Contains(string(b), "PRIVATE KEY") {
			t.Errorf("%s holds a private key", path)
		}
		return nil
	})

	// The health endpoint agrees.
	resp, err := http.Get("http://" + a.HealthAddr() + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("agent /ready: %s", resp.Status)
	}
}

// TestAgentRotation: with a 10s lifetime the agent renews about every 5s;
// requests on new connections through Envoy's mTLS listener never fail
// while Envoy's certificate changes at least three times.
func TestAgentRotation(t *testing.T) {
	e := newMeshEnv(t)
	port := int(tooltest.FreePorts(t, 1)[0])
	const ttl = 10 * time.Second
	a := e.startAgent(t, "rot", func(c *agent.Config) {
		c.CertTTL = ttl
		c.StaticResources = &bootstrapv3.Bootstrap_StaticResources{Listeners: []*listenerv3.Listener{mtlsListener(t, "inbound", port)}}
	})
	a.waitReady(t, 30*time.Second)
	first := a.Certificate()
	if life := time.Until(first.NotAfter); life > ttl || life < ttl-5*time.Second {
		t.Fatalf("certificate lifetime %s, want about %s", life, ttl)
	}

	client := catest.WorkloadCert(t, e.ca, frontend)
	var (
		mu       sync.Mutex
		serials  []string // distinct serials Envoy presented, in order
		requests atomic.Int64
		failures []error
		stop     = make(chan struct{})
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, leaf, err := mtlsGet(port, e.ca.TrustPool(), &client)
			requests.Add(1)
			mu.Lock()
			if err != nil {
				failures = append(failures, err)
			} else if s := leaf.SerialNumber.Text(16); len(serials) == 0 || serials[len(serials)-1] != s {
				serials = append(serials, s)
				if time.Until(leaf.NotAfter) <= 0 {
					failures = append(failures, errors.New("envoy presented an expired certificate"))
				}
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	start := time.Now()
	deadline := start.Add(40 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(serials)
		mu.Unlock()
		if n >= 4 { // the first certificate and three renewals
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	st := a.Status()
	t.Logf("%d requests in %s, %d failed; Envoy presented %d certificates; agent renewed %d times",
		requests.Load(), time.Since(start).Round(time.Millisecond), len(failures), len(serials), st.Renewals)
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during rotation; first: %v", len(failures), requests.Load(), failures[0])
	}
	if len(serials) < 4 {
		t.Errorf("Envoy presented %d distinct certificates (%v) in 40s, want >= 4 (3 renewals)", len(serials), serials)
	}
	if st.Renewals < 3 {
		t.Errorf("agent renewed %d times, want >= 3", st.Renewals)
	}
}
