package serving_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/kube/kubetesting"
	"github.com/weft-dev/weft/reconciler/kube/serving"
	"github.com/weft-dev/weft/reconciler/pipeline"
)

// A replica is a controller replica in its own process: this test binary
// run again with replicaEnv set, composing the serving side on a manager
// the way `weft controller` does (leader election on the Lease
// weft-controller-leader, the CA root Secret, xDS and CA listeners, the
// endpoints feed) plus the Mesh reconciler's part that matters here: once
// the cache has synced, every replica runs the revision through the
// pipeline with the Feed as Endpoints hook and Publisher. It serves its
// state as JSON on GET /state of its status address.

const replicaEnv = "WEFT_TEST_REPLICA"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(replicaEnv); cfg != "" {
		os.Exit(replicaMain(cfg))
	}
	os.Exit(m.Run())
}

// replicaConfig is a replica's configuration (JSON in replicaEnv).
type replicaConfig struct {
	Name        string
	Kubeconfig  string
	Namespace   string
	TrustDomain string
	MeshDir     string
	Revision    string
	XDS, CA     string // listen addresses
	Status      string // the /state listener
}

// replicaState is what GET /state answers.
type replicaState struct {
	Leader      bool          `json:"leader"`
	Ready       bool          `json:"ready"`
	CreatedRoot bool          `json:"createdRoot"`
	Reconciled  string        `json:"reconciled"` // the revision the pipeline served, or its error
	Endpoints   int           `json:"endpoints"`  // served by the feed
	Excluded    int           `json:"excluded"`
	Updates     int           `json:"updates"`   // endpoint updates published
	OnElected   bool          `json:"onElected"` // serving.OnElected ran
	XDS         status.Status `json:"xds"`
}

func replicaMain(raw string) int {
	var cfg replicaConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", cfg.Name)
	if err := runReplica(cfg, log); err != nil {
		log.Error("replica failed", "error", err)
		return 1
	}
	return 0
}

func runReplica(cfg replicaConfig, log *slog.Logger) error {
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return err
	}
	var co cache.Options
	serving.CacheOptions(&co)
	mopts := kubetesting.ManagerOptions(co, cfg.Namespace, serving.LeaseName)
	mopts.LeaderElectionReleaseOnCancel = true
	mgr, err := manager.New(rc, mopts)
	if err != nil {
		return err
	}
	s, err := serving.Setup(mgr, serving.Options{
		Namespace: cfg.Namespace, TrustDomain: cfg.TrustDomain, XDSAddress: cfg.XDS, CAAddress: cfg.CA,
		ExtraIPs: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtraDNSNames: []string{"localhost"},
		RootPollInterval: 200 * time.Millisecond, Logger: log,
	})
	if err != nil {
		return err
	}
	var electedRan atomic.Bool
	if err := serving.OnElected(mgr, func(context.Context) { electedRan.Store(true) }); err != nil {
		return err
	}
	reconciled := make(chan string, 1)
	reconciled <- ""
	// Every replica compiles and serves: not a leader-only runnable (a
	// bare RunnableFunc would be one).
	err = mgr.Add(serving.Everywhere(func(ctx context.Context) error {
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return nil
		}
		p := &pipeline.Pipeline{Gate: &pipeline.Gate{NoPolicies: true}, Endpoints: s.Feed.Endpoints, Publisher: s.Publisher, Check: s.CheckTrustDomain}
		_, err := p.Reconcile(ctx, pipeline.Revision{Name: cfg.Revision, Dir: cfg.MeshDir})
		<-reconciled
		if err != nil {
			reconciled <- "error: " + err.Error()
		} else {
			reconciled <- cfg.Revision
		}
		log.Info("reconciled", "revision", cfg.Revision, "error", err)
		return nil
	}))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/heap", pprof.Handler("heap").ServeHTTP)
	mux.HandleFunc("GET /debug/pprof/allocs", pprof.Handler("allocs").ServeHTTP)
	mux.HandleFunc("GET /heap", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(map[string]uint64{"heapAlloc": ms.HeapAlloc, "sys": ms.Sys, "heapSys": ms.HeapSys, "heapReleased": ms.HeapReleased})
	})
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, _ *http.Request) {
		r := <-reconciled
		reconciled <- r
		fs := s.Feed.Stats()
		st := replicaState{Leader: serving.IsLeader(mgr), CreatedRoot: s.RootCreated(), Reconciled: r, XDS: s.XDS.Status(),
			Endpoints: fs.Endpoints, Excluded: len(s.Feed.Excluded()), Updates: fs.Updates, OnElected: electedRan.Load()}
		select {
		case <-s.Ready():
			st.Ready = true
		default:
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	ln, err := net.Listen("tcp", cfg.Status)
	if err != nil {
		return err
	}
	go http.Serve(ln, mux)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return mgr.Start(ctx)
}

// replica is a running replica process.
type replica struct {
	name         string
	xds, ca, web string
	cmd          *exec.Cmd
	out          *tooltest.Output
	done         chan struct{}
}

// startReplica runs a replica with cfg (its addresses are picked here).
func startReplica(t testing.TB, cfg replicaConfig) *replica {
	t.Helper()
	ports := tooltest.FreePorts(t, 3)
	addr := func(p uint32) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	cfg.XDS, cfg.CA, cfg.Status = addr(ports[0]), addr(ports[1]), addr(ports[2])
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{name: cfg.Name, xds: cfg.XDS, ca: cfg.CA, web: cfg.Status, out: &tooltest.Output{}, done: make(chan struct{})}
	r.cmd = exec.Command(os.Args[0], "-test.run=^$")
	// GOGC as environments/deploy/controller.yaml sets it for the
	// controller (TestReplicaGOGCIsTheDeployment's checks that they agree).
	r.cmd.Env = append(os.Environ(), "GOGC="+deployGOGC, replicaEnv+"="+string(raw))
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		r.stop()
		if strings.Contains(r.out.String(), "WARNING: DATA RACE") {
			t.Errorf("replica %s: the race detector reported a race", r.name)
		}
		if t.Failed() {
			t.Logf("--- replica %s output:\n%s", r.name, tail(r.out.String()))
		}
	})
	return r
}

func tail(s string) string {
	const max = 16 << 10
	if len(s) > max {
		return "[...]\n" + s[len(s)-max:]
	}
	return s
}

// kill ends the replica as a crash does (SIGKILL: no lease released, no
// stream closed cleanly).
func (r *replica) kill() {
	_ = r.cmd.Process.Kill()
	<-r.done
}

// stop ends the replica as Kubernetes does (SIGTERM), and kills it after
// 20s.
func (r *replica) stop() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		r.kill()
	}
}

// state reads the replica's /state (false if it does not answer).
func (r *replica) state() (replicaState, bool) {
	var st replicaState
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + r.web + "/state")
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return st, false
	}
	return st, true
}

// waitState polls the replica's state until cond holds.
func (r *replica) waitState(t testing.TB, d time.Duration, what string, cond func(replicaState) bool) replicaState {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, ok := r.state()
		if ok && cond(st) {
			return st
		}
		select {
		case <-r.done:
			t.Fatalf("replica %s exited while waiting for %s", r.name, what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s: %s: not within %s (state %+v)", r.name, what, d, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tcpProxy stands for the controller's Service: it forwards each
// connection to the first backend that accepts it, in order, and closes
// both sides when either ends.
type tcpProxy struct {
	ln       net.Listener
	backends []string
}

func startProxy(t testing.TB, backends ...string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, backends: backends}
	go p.serve()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *tcpProxy) forward(c net.Conn) {
	var b net.Conn
	for _, addr := range p.backends {
		var err error
		if b, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			break
		}
	}
	if b == nil {
		c.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
	<-done
	c.Close()
	b.Close()
}

// deployGOGC is the GOGC of the controller's Deployment.
const deployGOGC = "50"

// TestReplicaGOGCIsTheDeployment: the replicas of these tests and
// benchmarks run with the garbage collector setting of the controller's
// Deployment, so that BenchmarkServingMemory measures what is deployed.
func TestReplicaGOGCIsTheDeployment(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(tooltest.RepoRoot(), "environments", "deploy", "controller.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "- name: GOGC\n              value: \"" + deployGOGC + "\""; !strings.Contains(string(b), want) {
		t.Errorf("environments/deploy/controller.yaml does not set GOGC=%s for the controller; change deployGOGC or the Deployment", deployGOGC)
	}
}
