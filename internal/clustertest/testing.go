package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/images"
	"github.com/weft-dev/weft/internal/tooltest"
)

// Start brings a cluster up for t and tears it down in t.Cleanup (the
// component logs are printed if t failed). Without root or without the
// Debian packages and tools it skips t with what is missing and how to
// install it — except under CI=true, where it fails: CI installs all of
// it, so a missing piece there is a broken setup. Options.Images defaults
// to the images built from this work tree ([BuildImages]).
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	requireMachine(t, opts.ToolsBin)
	opts.defaultImages(t)
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.logAll(t.Logf)
		}
		if err := c.Down(); err != nil {
			t.Errorf("clustertest: teardown: %v", err)
		}
		t.Logf("clustertest: %s", c.Timings())
	})
	return c
}

// requireMachine skips (or, under CI=true, fails) t when the machine
// cannot run a cluster.
func requireMachine(t testing.TB, bin string) {
	t.Helper()
	missing := Missing(bin)
	if len(missing) == 0 {
		return
	}
	msg := "clustertest: " + describeMissing(missing)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "\n(CI=true, so this fails instead of skipping)")
	}
	t.Skip(msg)
}

var (
	buildOnce sync.Once
	built     *images.Result
	buildErr  error
)

// BuildImages builds weft's images from this work tree into
// <repo>/out/images, as `make images` does (a build whose inputs did not
// change since the last one only relinks the binaries), once per test
// binary. The result names the OCI layout and the binaries that went into
// the images (Inputs.Weft is the weft binary of localhost/weft).
func BuildImages(t testing.TB) *images.Result {
	t.Helper()
	buildOnce.Do(func() {
		root := tooltest.RepoRoot()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		built, buildErr = images.Build(ctx, images.Options{Root: root, Out: filepath.Join(root, "out", "images")})
	})
	if buildErr != nil {
		t.Fatalf("clustertest: building the images: %v", buildErr)
	}
	return built
}

// defaultImages fills in Options.Images and PauseRef from BuildImages.
func (o *Options) defaultImages(t testing.TB) {
	if o.Images == "" {
		o.Images = BuildImages(t).Layout
		o.PauseRef = images.Ref(images.PauseName, images.DefaultTag)
	}
}

// Timings lists the phases: "leftovers removed 0.1s, …, up 14.2s, down 1.3s".
func (c *Cluster) Timings() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	parts := make([]string, 0, len(c.Phases))
	for _, p := range c.Phases {
		parts = append(parts, fmt.Sprintf("%s %s", p.Name, p.Took.Round(10*time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

// Phase returns how long the named phase took (0 if it did not happen).
func (c *Cluster) Phase(name string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.Phases {
		if p.Name == name {
			return p.Took
		}
	}
	return 0
}

func (c *Cluster) logAll(logf func(string, ...any)) {
	for _, name := range []string{"netns-proxy", "containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		if _, err := os.Stat(c.layout.logFile(name)); err == nil {
			logf("--- %s (last 40 lines of %s):\n%s", name, c.layout.logFile(name), c.LogTail(name, 40))
		}
	}
}

// Forward listens on 127.0.0.1 (a free port, in this process's network
// namespace) and forwards each connection to addr inside the cluster's
// netns, until t ends. It returns the local address: for a process that
// runs outside the netns and must reach something inside.
func (c *Cluster) Forward(t testing.TB, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer in.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				out, err := c.DialContext(ctx, "tcp", addr)
				cancel()
				if err != nil {
					return
				}
				defer out.Close()
				splice(in, out)
			}()
		}
	}()
	return ln.Addr().String()
}

// Listen returns a listener in this process whose connections are those
// made to addr inside the cluster's netns ("10.244.0.1:9443": the node
// address, which pods and the apiserver reach; port 0 picks one, see the
// returned address). A Service without a selector plus an EndpointSlice
// naming NodeIP and the port then routes cluster traffic to a server the
// test runs itself (a webhook, a control plane). Both stop when t ends.
func (c *Cluster) Listen(t testing.TB, addr string) (net.Listener, string) {
	t.Helper()
	sock := filepath.Join(c.layout.run(""), fmt.Sprintf("listen-%d-%d.sock", os.Getpid(), listenSeq.Add(1)))
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	inside, stop, err := listenThrough(c.layout.proxySocket(), "tcp", addr, sock)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop()
		ln.Close()
	})
	return ln, inside
}

var listenSeq atomic.Int64

// HostKubeconfig writes an admin kubeconfig whose server is a [Forward]
// of the apiserver (https://127.0.0.1:<port>; the serving certificate
// names 127.0.0.1), for processes outside the netns: a controller, weft
// or kubectl started by the test without nsenter. It works while t runs.
func (c *Cluster) HostKubeconfig(t testing.TB) string {
	t.Helper()
	addr := c.Forward(t, fmt.Sprintf("127.0.0.1:%d", APIServerPort))
	kc, err := kubeconfig(c.layout.pki(), clientIdentities()["admin"].file, "https://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "admin.kubeconfig")
	if err := os.WriteFile(p, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Shared starts one cluster for a whole test binary. Use it from TestMain:
//
//	var cluster = clustertest.Shared{}
//	func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }
//	func TestX(t *testing.T) { c := cluster.Get(t); … }
//
// The cluster starts at the first Get (so a run whose tests all skip or
// are filtered out starts none) and is torn down after m.Run.
type Shared struct {
	// Options for the cluster; Images defaults to BuildImages'.
	Options Options

	once    sync.Once
	cluster *Cluster
	err     error
	logs    strings.Builder
	mu      sync.Mutex
}

// Main runs the tests and tears the cluster down after them.
func (s *Shared) Main(m *testing.M) int {
	code := m.Run()
	s.mu.Lock()
	c := s.cluster
	s.mu.Unlock()
	if c != nil {
		if code != 0 {
			c.logAll(func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
		}
		if err := c.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "clustertest: teardown:", err)
			if code == 0 {
				code = 1
			}
		}
		fmt.Fprintf(os.Stderr, "clustertest: %s: %s\n", c.Name, c.Timings())
	}
	return code
}

// Get returns the shared cluster, starting it on the first call; it skips
// t (or fails it under CI=true) on a machine that cannot run one, and
// fails every caller if the start failed.
func (s *Shared) Get(t testing.TB) *Cluster {
	t.Helper()
	requireMachine(t, s.Options.ToolsBin)
	s.once.Do(func() {
		opts := s.Options
		opts.defaultImages(t)
		opts.Logf = func(f string, a ...any) {
			s.mu.Lock()
			defer s.mu.Unlock()
			fmt.Fprintf(&s.logs, f+"\n", a...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		c, err := Up(ctx, opts)
		s.mu.Lock()
		s.cluster, s.err = c, err
		s.mu.Unlock()
	})
	if s.err != nil {
		var me *MissingError
		if errors.As(s.err, &me) {
			t.Skip(s.err)
		}
		t.Fatalf("clustertest: the shared cluster did not start: %v", s.err)
	}
	s.mu.Lock()
	t.Logf("clustertest: shared cluster %s:\n%s", s.cluster.Name, s.logs.String())
	s.logs.Reset()
	s.mu.Unlock()
	return s.cluster
}
