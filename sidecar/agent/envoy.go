package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// envoyArgs is Envoy's command line, EnvoyArgs last. Envoy refuses an
// option given twice, so a --concurrency in EnvoyArgs replaces
// Concurrency.
func envoyArgs(cfg *Config) []string {
	args := []string{"-c", cfg.BootstrapPath, "--disable-hot-restart", "--log-level", cfg.EnvoyLogLevel}
	if !slices.ContainsFunc(cfg.EnvoyArgs, func(a string) bool {
		return a == "--concurrency" || strings.HasPrefix(a, "--concurrency=")
	}) {
		args = append(args, "--concurrency", strconv.Itoa(cfg.Concurrency))
	}
	return append(args, cfg.EnvoyArgs...)
}

// superviseEnvoy runs Envoy until ctx ends, restarting it with backoff
// when it exits on its own. On ctx's end it drains Envoy's listeners for
// DrainTimeout, sends SIGTERM, and SIGKILL if Envoy is still there 10s
// later.
func (a *Agent) superviseEnvoy(ctx context.Context) {
	defer close(a.envoyDone)
	backoff := a.cfg.RestartBackoff
	for {
		start := time.Now()
		// A previous Envoy's admin socket file would make the bind fail.
		if err := os.Remove(a.cfg.AdminSocket); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.cfg.Log.Warn("agent: removing a stale admin socket", "path", a.cfg.AdminSocket, "err", err)
		}
		cmd := exec.Command(a.cfg.EnvoyBinary, envoyArgs(&a.cfg)...)
		var out io.Writer = os.Stderr
		if a.cfg.EnvoyOutput != nil {
			out = a.cfg.EnvoyOutput
		}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = sysProcAttr()
		err := cmd.Start()
		if err == nil {
			a.envoyStarts.Add(1)
			a.cfg.Log.Info("agent: envoy started", "pid", cmd.Process.Pid, "bootstrap", a.cfg.BootstrapPath)
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err = <-exited:
			case <-ctx.Done():
				a.stopEnvoy(cmd, exited)
				return
			}
			a.cfg.Log.Warn("agent: envoy exited", "err", err, "uptime", time.Since(start).Round(time.Millisecond))
		} else {
			a.cfg.Log.Error("agent: cannot start envoy", "binary", a.cfg.EnvoyBinary, "err", err)
		}
		if time.Since(start) > time.Minute {
			backoff = a.cfg.RestartBackoff
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, MaxRestartBackoff)
	}
}

// stopEnvoy drains and terminates a running Envoy.
func (a *Agent) stopEnvoy(cmd *exec.Cmd, exited <-chan error) {
	if a.cfg.DrainTimeout > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		code, _, err := a.admin(ctx, http.MethodPost, "/drain_listeners?graceful")
		cancel()
		if err == nil && code == http.StatusOK {
			a.cfg.Log.Info("agent: draining envoy", "for", a.cfg.DrainTimeout)
			select {
			case <-time.After(a.cfg.DrainTimeout):
			case <-exited:
				return
			}
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	a.cfg.Log.Info("agent: envoy stopped")
}
