package fluxtest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/internal/tooltest"
)

// SourceController is a running Flux source-controller.
type SourceController struct {
	// Client talks to the apiserver with a scheme that knows Flux's
	// source.toolkit.fluxcd.io/v1 kinds (see [Scheme]).
	Client client.Client
	// StorageURL is where artifacts are served: http://127.0.0.1:PORT.
	StorageURL string
	// StoragePath is the artifact storage folder (in t.TempDir()).
	StoragePath string

	t testing.TB
}

// Scheme is kubetest's default scheme plus source.toolkit.fluxcd.io/v1.
func Scheme() *runtime.Scheme {
	s := kubetest.DefaultScheme()
	utilruntime.Must(sourcev1.AddToScheme(s))
	return s
}

// CRDDir is the folder holding source-controller's CRDs, as `make tools`
// copies them from the module (config/crd/bases): .tools/crd/source-controller
// beside the tools' bin folder, or $WEFT_FLUX_CRDS.
func CRDDir() string {
	if d := os.Getenv("WEFT_FLUX_CRDS"); d != "" {
		return d
	}
	return filepath.Join(filepath.Dir(tooltest.BinDir()), "crd", "source-controller")
}

// StartSourceController installs source-controller's CRDs into env and runs
// the controller against it (all namespaces, no leader election, storage,
// metrics and health on 127.0.0.1), and waits until its /readyz answers.
// t.Cleanup stops it (SIGTERM, SIGKILL after 10 s); its log is printed if
// the test failed.
func StartSourceController(t testing.TB, env *kubetest.Env) *SourceController {
	t.Helper()
	kubetest.RequireBinaries(t, tooltest.BinDir(), "source-controller")
	if _, err := os.Stat(filepath.Join(CRDDir(), "source.toolkit.fluxcd.io_gitrepositories.yaml")); err != nil {
		msg := fmt.Sprintf("fluxtest: source-controller's CRDs are not in %s: run `make tools` (%v)", CRDDir(), err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	started := time.Now()
	env.InstallCRDs(CRDDir())

	c, err := client.New(env.Config, client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatalf("fluxtest: client: %v", err)
	}
	sc := &SourceController{Client: c, StoragePath: filepath.Join(t.TempDir(), "storage"), t: t}
	if err := os.MkdirAll(sc.StoragePath, 0o755); err != nil {
		t.Fatal(err)
	}
	ports := tooltest.FreePorts(t, 3)
	storage, metrics, health := addr(ports[0]), addr(ports[1]), addr(ports[2])
	sc.StorageURL = "http://" + storage

	out := &tooltest.Output{}
	cmd := exec.Command(filepath.Join(tooltest.BinDir(), "source-controller"),
		"--storage-path="+sc.StoragePath,
		"--storage-addr="+storage,
		"--storage-adv-addr="+storage,
		"--metrics-addr="+metrics,
		"--health-addr="+health,
		"--events-addr=",
		"--enable-leader-election=false",
		"--watch-all-namespaces=true",
		"--log-level=info",
		"--log-encoding=console",
	)
	// It has no --kubeconfig flag; controller-runtime reads $KUBECONFIG.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig, "RUNTIME_NAMESPACE=default")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("fluxtest: starting source-controller: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		stopping := time.Now()
		stop(cmd, exited, 10*time.Second)
		t.Logf("fluxtest: source-controller stopped in %s", time.Since(stopping).Round(time.Millisecond))
		if t.Failed() {
			t.Logf("--- source-controller log:\n%s", out)
		}
	})
	if err := waitReady("http://"+health+"/readyz", exited, 60*time.Second); err != nil {
		t.Fatalf("fluxtest: source-controller: %v\n--- its log:\n%s", err, out)
	}
	t.Logf("fluxtest: source-controller ready in %s (CRDs installed, storage %s)", time.Since(started).Round(time.Millisecond), sc.StorageURL)
	return sc
}

func addr(port uint32) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))) }

// waitReady polls url until it answers 200, the process exits, or timeout.
func waitReady(url string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("exited before it was ready")
		default:
		}
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s: %w", timeout, last)
}

// stop sends SIGTERM, then SIGKILL if the process has not exited after grace.
func stop(cmd *exec.Cmd, exited <-chan struct{}, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-exited
	}
}
