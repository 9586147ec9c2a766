package up_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"testing"
	"time"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/up"
	"github.com/weft-dev/weft/up/demoapp"
)

const pathMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["reviews"]
			authz: deny: [{paths: ["/admin", "/admin/*"]}, {methods: ["DELETE"]}]
		}
		reviews: {
			ports: http: port: 9080
			versions: v1: labels: version: "v1"
			authz: deny: [{paths: ["/admin", "/admin/*"]}, {methods: ["DELETE"]}]
		}
`

// deniedSpellings are ways to write a path that a backend may serve as
// /admin or below it (issue 8: /admin;x, /admin%2Fx and /admin%5Cx
// reached the app).
var deniedSpellings = []string{
	"/admin",
	"/admin/",
	"/admin/x",
	"//admin",
	"/./admin",
	"/x/../admin",
	"/%61dmin",
	"/%2e/admin",
	"/x/%2e%2e/admin",
	"/x/%2E%2E/admin/x",
	"/admin;x",
	"/admin;jsessionid=0123ABC",
	"/x/..;/admin",
	"/admin%3Bx",
	"/admin%2Fx",
	"/admin%2fx",
	"/admin%5Cx",
	"/admin%5cx",
	"/admin%252Fx",
	"/%2561dmin",
	"/ADMIN",
	"/Admin/x",
	"/%41DMIN",
	"/admin\\x",
	"/\\admin",
	"/admin#fragment",
	"/admin?x=1",
	"/admin/?x=/public",
	"//x/..//ADMIN;x",
	"/x/%2e%2e%2fadmin",
	"/public/..%5cadmin",
	"http://reviews/admin",
}

// allowedPaths still reach the app, with the path it then sees.
var allowedPaths = []struct{ send, app string }{
	{"/", "/"},
	{"/administrator", "/administrator"},
	{"/adm%69n-panel", "/admin-panel"},
	{"/x/../products/1", "/products/1"},
	{"/search?q=/admin;x%2F", "/search?q=/admin;x%2F"},
}

// A deny rule on /admin and /admin/* refuses every spelling of those
// paths that a backend may serve as them, through real Envoys: on the
// plaintext chain of an edge service (outside traffic) and on the mTLS
// chain of a mesh service (a caller holding a mesh certificate), with
// the request line written byte for byte. Refused means a 403 or a 400
// (after following Envoy's redirect to the unescaped path, on the edge)
// and the app's request counter unchanged; the allowed paths get 200 from
// the app.
func TestDenyByPathSpellings(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, pathMesh)
	tm := startMesh(t, dir, nil)

	fe, rv := tm.instance("frontend-v1"), tm.instance("reviews-v1")
	cert, err := tm.CA().ServingCertificate(cav1.Identity{TrustDomain: "t.example", Namespace: "t", ServiceAccount: "frontend"}, nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	targets := []struct {
		name string
		rt   rawTarget
		app  string
	}{
		{"edge plaintext", rawTarget{addr: fe.Addr(8080), host: "frontend"}, fe.AppAddr()},
		{"mTLS", rawTarget{addr: rv.Addr(9080), host: "reviews", tls: meshClientTLS(cert, tm.CA().TrustPool())}, rv.AppAddr()},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			var table strings.Builder
			for _, p := range deniedSpellings {
				before := appCount(t, tg.app)
				hops, a, err := tg.rt.follow(p)
				fmt.Fprintf(&table, "  %-28q %s\n", p, strings.Join(hops, " -> "))
				if err != nil {
					t.Errorf("%q: %v", p, err)
					continue
				}
				final := hops[len(hops)-1]
				if final != "400" && final != "403" {
					t.Errorf("%q: answered %s, want 403 or 400", p, strings.Join(hops, " -> "))
				}
				if a != nil {
					t.Errorf("%q: the app answered (it saw %q)", p, a.Path)
				}
				if got := appCount(t, tg.app) - before; got != 0 {
					t.Errorf("%q: the app received %d requests", p, got)
				}
			}
			for _, p := range allowedPaths {
				hops, a, err := tg.rt.follow(p.send)
				fmt.Fprintf(&table, "  %-28q %s (app saw %q)\n", p.send, strings.Join(hops, " -> "), appPath(a))
				if err != nil || hops[len(hops)-1] != "200" || a == nil || a.Path != p.app {
					t.Errorf("%q: %v %v, app saw %q; want 200 from the app with %q", p.send, hops, err, appPath(a), p.app)
				}
			}
			// A method deny rule: any case of the method.
			for _, m := range []string{"DELETE", "delete", "Delete"} {
				before := appCount(t, tg.app)
				resp, _, err := tg.rt.do(m, "/x")
				code := 0
				if resp != nil {
					code = resp.StatusCode
				}
				fmt.Fprintf(&table, "  %-28s %d\n", m+" /x", code)
				if err != nil || (code != 400 && code != 403) || appCount(t, tg.app) != before {
					t.Errorf("%s /x: %d %v, want 403 or 400 before the app", m, code, err)
				}
			}
			t.Logf("%d denied spellings, %d allowed paths:\n%s", len(deniedSpellings), len(allowedPaths), table.String())
		})
	}
}

func appPath(a *demoapp.Answer) string {
	if a == nil {
		return ""
	}
	return a.Path
}

// appCount is the number of requests the demo app at addr has served.
func appCount(t *testing.T, addr string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/_demo/count")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Count int64 }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Count
}

// meshClientTLS is a TLS client configuration holding a mesh workload
// certificate; it checks that the server's certificate is from the mesh
// CA (workload certificates carry only a SPIFFE id, no DNS name).
func meshClientTLS(cert *tls.Certificate, roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{*cert},
		InsecureSkipVerify: true, // verified below, without a host name
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		},
	}
}

// rawTarget sends HTTP/1.1 requests whose request line is written byte
// for byte (Go's client would clean or escape some of the spellings).
type rawTarget struct {
	addr, host string
	tls        *tls.Config // nil: plaintext
}

// send sends one request on a new connection and reads the answer.
func (rt rawTarget) send(target string) (*http.Response, []byte, error) {
	return rt.do("GET", target)
}

// do sends one request with the given method on a new connection.
func (rt rawTarget) do(method, target string) (*http.Response, []byte, error) {
	conn, err := net.DialTimeout("tcp", rt.addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	if rt.tls != nil {
		conn = tls.Client(conn, rt.tls)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", method, target, rt.host); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// follow sends target and follows up to three redirects, as a browser
// would. It returns the status of each answer and the demo app's answer
// (nil unless the last one is the app's).
func (rt rawTarget) follow(target string) ([]string, *demoapp.Answer, error) {
	var hops []string
	for i := 0; ; i++ {
		resp, body, err := rt.send(target)
		if err != nil {
			return append(hops, "error"), nil, err
		}
		hops = append(hops, fmt.Sprint(resp.StatusCode))
		loc := resp.Header.Get("Location")
		if resp.StatusCode/100 != 3 || loc == "" || i == 3 {
			var a demoapp.Answer
			if json.Unmarshal(body, &a) == nil && a.Service != "" {
				return hops, &a, nil
			}
			return hops, nil, nil
		}
		u, err := url.Parse(loc)
		if err != nil {
			return hops, nil, fmt.Errorf("redirect to %q: %w", loc, err)
		}
		target = u.RequestURI()
		hops[len(hops)-1] += " " + target
	}
}

// keepAliveClient sends every request through class's outbound listener
// on one kept-alive connection; reused reports whether the last request
// went over a connection used before.
type keepAliveClient struct {
	c      *http.Client
	reused bool
}

func newKeepAliveClient(tm *testMesh, class string) *keepAliveClient {
	in := tm.instance(class)
	pu, _ := url.Parse(in.OutboundProxy())
	tr := &http.Transport{Proxy: http.ProxyURL(pu), MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute}
	tm.t.Cleanup(tr.CloseIdleConnections)
	return &keepAliveClient{c: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (k *keepAliveClient) get(u string) (int, error) {
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { k.reused = i.Reused }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := k.c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

const keepAliveMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["api"]
		}
		api: {
			ports: http: port: 9080
			versions: v1: labels: version: "v1"
			authz: allow: [%s]
		}
`

const allowFrontend = `{from: ["frontend"]}`

// Removing an allow takes effect on the next request after the proxies
// ACK, also on a connection that stays open (issue 8: 24 of 60 calls were
// still allowed on kept-alive connections while the old filter chain
// drained), and re-allowing too; the authorization change modifies and
// drains no listener. Over state-of-the-world and delta xDS.
func TestAuthzChangeOnOpenConnection(t *testing.T) {
	for _, delta := range []bool{false, true} {
		name := map[bool]string{false: "sotw", true: "delta"}[delta]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeMesh(t, dir, fmt.Sprintf(keepAliveMesh, allowFrontend))
			tm := startMesh(t, dir, func(o *up.Options) { o.DeltaXDS = delta })
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			api := tm.instance("api-v1")
			k := newKeepAliveClient(tm, "frontend-v1")
			call := func() int {
				t.Helper()
				code, err := k.get("http://api:9080/x")
				if err != nil {
					t.Fatalf("frontend -> api: %v", err)
				}
				return code
			}
			for i := 0; i < 5; i++ {
				if code := call(); code != 200 {
					t.Fatalf("before the change: %d, want 200", code)
				}
			}
			counters := []string{
				"listener_manager.listener_modified",
				"listener_manager.listener_added",
				"listener_manager.listener_removed",
				"listener_manager.total_listeners_draining",
			}
			const inboundConns = "http.inbound_9080_tls.downstream_cx_total"
			before := map[string]int64{}
			for _, in := range tm.Instances() {
				for _, c := range counters {
					before[in.NodeID+" "+c] = envoyStat(t, &in, c)
				}
			}
			connsBefore := envoyStat(t, api, inboundConns)

			apply := func(allow string) {
				t.Helper()
				rev := tm.Server().Revision()
				writeMesh(t, dir, fmt.Sprintf(keepAliveMesh, allow))
				for tm.Server().Revision() == rev {
					select {
					case <-ctx.Done():
						t.Fatalf("allow: [%s] was never served; last attempt %+v", allow, tm.Server().Status().LastAttempt)
					case <-time.After(20 * time.Millisecond):
					}
				}
				tm.waitReady(ctx) // every proxy has ACKed it
			}

			apply("") // nobody may call api
			const allowDenied = "http.inbound_9080_tls.rbac.allow.denied"
			deniedBefore := envoyStat(t, api, allowDenied)
			allowed := 0
			const n = 60
			for i := 0; i < n; i++ {
				if code := call(); code != http.StatusForbidden {
					allowed++
					t.Errorf("request %d after the allow was removed: %d, want 403", i, code)
				}
				if !k.reused {
					t.Fatalf("request %d did not go over the kept-alive connection", i)
				}
			}
			if got := envoyStat(t, api, allowDenied) - deniedBefore; got != n {
				t.Errorf("%s grew by %d, want %d: api's allow rules refused every request", allowDenied, got, n)
			}
			apply(allowFrontend)
			first := call()
			after := 0
			for i := 0; i < 20; i++ {
				if call() == 200 {
					after++
				}
			}
			t.Logf("allow removed: %d of %d requests on the kept-alive connection allowed; allow restored: first request %d, then %d of 20 allowed", allowed, n, first, after)
			if first != 200 || after != 20 {
				t.Errorf("after re-allowing: first request %d, then %d of 20 allowed; want 200 and 20", first, after)
			}
			if !k.reused {
				t.Error("the last request did not go over the kept-alive connection")
			}
			// One upstream connection from frontend's Envoy to api's carried
			// everything: the rules changed under an open connection.
			if got := envoyStat(t, api, inboundConns); got != connsBefore {
				t.Errorf("%s went from %d to %d: the requests did not all use the open connection", inboundConns, connsBefore, got)
			}
			for _, in := range tm.Instances() {
				for _, c := range counters {
					if got, was := envoyStat(t, &in, c), before[in.NodeID+" "+c]; got != was {
						t.Errorf("%s: %s went from %d to %d after two authz changes", in.NodeID, c, was, got)
					}
				}
			}
		})
	}
}

const tcpAuthzMesh = `
		app: {
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["db"]
		}
		db: {
			ports: pg: {port: 5432, protocol: "tcp"}
			versions: v1: labels: version: "v1"
			authz: allow: [%s]
		}
`

// On a TCP port, network RBAC decides once per connection and its rules
// are in the filter chain (docs/decisions.md, "Authorization without a
// listener drain"): once the proxies ACK a revision that removes the
// allow, a new connection is refused and one opened before keeps going
// until the drained chain closes it; re-allowing admits the next new
// connection.
func TestTCPAuthzChange(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, fmt.Sprintf(tcpAuthzMesh, `{from: ["app"]}`))
	tm := startMesh(t, dir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// app's TCP listener for db (tcp_proxy over mTLS to db's inbound; db's
	// app is the demo app, which speaks HTTP).
	dbVia := tm.instance("app-v1").Addr(5432)
	apply := func(allow string) {
		t.Helper()
		rev := tm.Server().Revision()
		writeMesh(t, dir, fmt.Sprintf(tcpAuthzMesh, allow))
		for tm.Server().Revision() == rev {
			select {
			case <-ctx.Done():
				t.Fatalf("allow: [%s] was never served", allow)
			case <-time.After(20 * time.Millisecond):
			}
		}
		tm.waitReady(ctx)
	}

	open, err := newTCPConn(dbVia)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if code, err := open.get(); err != nil || code != 200 {
		t.Fatalf("before the change: %d %v, want 200", code, err)
	}
	apply("")
	if code, err := tcpGet(dbVia); err == nil {
		t.Errorf("a new connection after the allow was removed: %d, want it closed", code)
	}
	code, err := open.get()
	t.Logf("allow removed: new connection refused; the connection opened before answered %d (%v) while its chain drains", code, err)
	apply(`{from: ["app"]}`)
	if code, err := tcpGet(dbVia); err != nil || code != 200 {
		t.Errorf("a new connection after re-allowing: %d %v, want 200", code, err)
	}
}

// tcpConn sends HTTP/1.1 requests over one TCP connection.
type tcpConn struct {
	net.Conn
	r *bufio.Reader
}

func newTCPConn(addr string) (*tcpConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &tcpConn{Conn: c, r: bufio.NewReader(c)}, nil
}

func (c *tcpConn) get() (int, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: db\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// tcpGet sends one request on a new connection.
func tcpGet(addr string) (int, error) {
	c, err := newTCPConn(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.get()
}
