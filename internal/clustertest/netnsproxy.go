package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// The netns proxy is how a process outside the cluster's network
// namespace (the test binary) reaches addresses inside it (the apiserver
// on 127.0.0.1:6443, pods, ClusterIPs) without entering the namespace
// itself: a helper process runs inside the namespace (started with
// nsenter --net) and listens on a unix socket in the work dir. Unix
// sockets with a path are reachable from every network namespace, so a
// client in the host's namespace connects to the socket and asks, in one
// line, for a TCP connection: "dial tcp <host:port>\n". The helper dials
// from inside the namespace, answers "ok\n" (or "error <why>\n") and from
// then on copies bytes both ways.
//
// The other direction, "listen tcp <host:port> <unix socket>\n": the
// helper listens on host:port inside the namespace, answers "ok
// <address>\n", and connects every connection it accepts to the unix
// socket (where the client listens) until the request's connection
// closes. That puts a server of the test process (a webhook, a control
// plane) at an address pods and the apiserver can reach.
//
// The helper is this very binary (a test binary or the cluster CLI),
// started again with proxyFlag as its first argument: the package's init
// function sees the flag, serves, and never returns to main. That needs
// no extra build and no extra tool. The flag's value (the socket path)
// names the work dir on the process's command line, so Teardown finds
// the process even when its PID file is gone.
const proxyFlag = "-weft-clustertest-netns-proxy="

// dnsFlag, after proxyFlag, makes the helper also serve the cluster DNS
// on that address (see dns.go), with the admin kubeconfig path after it.
const dnsFlag = "-weft-clustertest-dns="

func init() {
	if len(os.Args) < 2 || !strings.HasPrefix(os.Args[1], proxyFlag) {
		return
	}
	socket := strings.TrimPrefix(os.Args[1], proxyFlag)
	var dns, kubeconfigPath string
	if len(os.Args) >= 4 && strings.HasPrefix(os.Args[2], dnsFlag) {
		dns, kubeconfigPath = strings.TrimPrefix(os.Args[2], dnsFlag), os.Args[3]
	}
	if err := serveProxy(socket, dns, kubeconfigPath); err != nil {
		fmt.Fprintln(os.Stderr, "netns proxy:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serveProxy listens on socket (replacing a stale one) and serves until
// killed.
func serveProxy(socket, dns, kubeconfigPath string) error {
	_ = os.Remove(socket)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		return err
	}
	if dns != "" {
		go func() {
			if err := serveDNS(dns, kubeconfigPath); err != nil {
				fmt.Fprintln(os.Stderr, "netns proxy: cluster DNS:", err)
				os.Exit(1)
			}
		}()
	}
	fmt.Fprintf(os.Stderr, "netns proxy: serving on %s (pid %d)\n", socket, os.Getpid())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go handleProxyConn(c)
	}
}

func handleProxyConn(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := readLine(c)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	fields := strings.Fields(line)
	if len(fields) == 4 && fields[0] == "listen" && strings.HasPrefix(fields[1], "tcp") {
		serveListen(c, fields[1], fields[2], fields[3])
		return
	}
	if len(fields) != 3 || fields[0] != "dial" || !strings.HasPrefix(fields[1], "tcp") {
		fmt.Fprintf(c, "error bad request %q: want \"dial tcp HOST:PORT\" or \"listen tcp HOST:PORT SOCKET\"\n", line)
		return
	}
	network, addr := fields[1], fields[2]
	up, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		fmt.Fprintf(c, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	defer up.Close()
	if _, err := io.WriteString(c, "ok\n"); err != nil {
		return
	}
	splice(c, up)
}

// serveListen listens on addr in the namespace and relays every accepted
// connection to the unix socket target, until ctl closes.
func serveListen(ctl net.Conn, network, addr, target string) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		fmt.Fprintf(ctl, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	defer ln.Close()
	if _, err := fmt.Fprintf(ctl, "ok %s\n", ln.Addr()); err != nil {
		return
	}
	go func() {
		_, _ = io.Copy(io.Discard, ctl) // returns when the client closes
		ln.Close()
	}()
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := net.DialTimeout("unix", target, 10*time.Second)
			if err != nil {
				return
			}
			defer out.Close()
			splice(in, out)
		}()
	}
}

// listenThrough asks the proxy at socket to listen on addr inside the
// namespace and relay to the unix socket target. It returns the address
// listened on and a function that stops the listener.
func listenThrough(socket, network, addr, target string) (string, func(), error) {
	c, err := net.DialTimeout("unix", socket, 10*time.Second)
	if err != nil {
		return "", nil, fmt.Errorf("clustertest: netns proxy %s: %w", socket, err)
	}
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(c, "listen %s %s %s\n", network, addr, target); err != nil {
		c.Close()
		return "", nil, fmt.Errorf("clustertest: netns proxy: %w", err)
	}
	reply, err := readLine(c)
	if err == nil && !strings.HasPrefix(reply, "ok ") {
		err = errors.New(strings.TrimPrefix(reply, "error "))
	}
	if err != nil {
		c.Close()
		return "", nil, fmt.Errorf("clustertest: listen on %s %s in the cluster's netns: %w", network, addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	return strings.TrimPrefix(reply, "ok "), func() { c.Close() }, nil
}

// splice copies both ways until both directions end, passing a half close
// on.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// readLine reads up to '\n' one byte at a time, so that nothing after the
// line is consumed.
func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < 1024 {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return string(b), nil
			}
			b = append(b, one[0])
		}
		if err != nil {
			return "", err
		}
	}
	return "", errors.New("request line too long")
}

// dialThrough connects to addr inside the namespace through the proxy at
// socket.
func dialThrough(ctx context.Context, socket, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("clustertest: netns proxy %s: %w", socket, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := fmt.Fprintf(c, "dial %s %s\n", network, addr); err != nil {
		c.Close()
		return nil, fmt.Errorf("clustertest: netns proxy: %w", err)
	}
	reply, err := readLine(c)
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("clustertest: dial %s %s in the cluster's netns: %w", network, addr, err)
	}
	if reply != "ok" {
		c.Close()
		return nil, fmt.Errorf("clustertest: dial %s %s in the cluster's netns: %s", network, addr, strings.TrimPrefix(reply, "error "))
	}
	if !stop() {
		c.Close()
		return nil, ctx.Err()
	}
	_ = c.SetDeadline(time.Time{})
	return &proxiedConn{Conn: c, remote: addr}, nil
}

// proxiedConn reports the address it reaches as its remote address.
type proxiedConn struct {
	net.Conn
	remote string
}

func (p *proxiedConn) RemoteAddr() net.Addr { return proxiedAddr(p.remote) }

// CloseWrite half-closes: the proxy passes it on to the far end.
func (p *proxiedConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}

type proxiedAddr string

func (a proxiedAddr) Network() string { return "tcp" }
func (a proxiedAddr) String() string  { return string(a) }
