package up

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema/mesh"
	"github.com/weft-dev/weft/sidecar/agent"
	"github.com/weft-dev/weft/up/demoapp"
)

// startInstance writes the instance's token, then runs its app and its
// agent (which runs Envoy) until the instance is stopped.
func (m *Mesh) startInstance(in *Instance, model *mesh.Model) (*runningInstance, error) {
	svc := model.Services[in.Service]
	id := in.Identity
	dir := filepath.Join(m.opts.StateDir, "run", in.NodeID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tok, err := ca.NewToken()
	if err != nil {
		return nil, err
	}
	if err := m.auth.Add(tok, id); err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(dir, "token")
	if err := ca.WriteTokenFile(tokenFile, tok); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "envoy.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	cfg := agent.Config{
		Identity:        id,
		Class:           in.Class,
		NodeID:          in.NodeID,
		CAAddress:       m.caAddr,
		TrustBundleFile: m.bundleFile,
		TokenFile:       tokenFile,
		CertTTL:         m.opts.CertTTL,
		XDSAddress:      m.xdsAddr,
		DeltaXDS:        m.opts.DeltaXDS,
		Socket:          socketPath(m.runtime, in.NodeID),
		BootstrapPath:   filepath.Join(dir, "envoy.yaml"),
		AdminSocket:     in.AdminSocket,
		Mesh:            model.Name,
		Service:         in.Service,
		Version:         in.Version,
		StatsAddress:    in.StatsAddr,
		HealthAddress:   "127.0.0.1:0",
		EnvoyBinary:     m.opts.Envoy,
		Concurrency:     m.opts.Concurrency,
		EnvoyOutput:     logf,
		Log:             m.log.With("node", in.NodeID),
	}
	env := appEnv(in, svc)
	ctx, cancel := context.WithCancel(m.ctx)
	ri := &runningInstance{in: in, cancel: cancel, done: make(chan struct{})}
	appDone := make(chan struct{})
	appLogFile, err := os.OpenFile(filepath.Join(dir, "app.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(appDone)
		defer appLogFile.Close()
		appCtx := context.WithValue(ctx, appLogKey{}, io.Writer(appLogFile))
		for ctx.Err() == nil {
			err := m.opts.RunApp(appCtx, in, env)
			if ctx.Err() != nil {
				return
			}
			m.log.Warn("app exited; restarting in 1s", "node", in.NodeID, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	go func() {
		defer close(ri.done)
		defer logf.Close()
		defer m.auth.Remove(tok)
		defer func() { <-appDone }()
		defer cancel()
		a, err := agent.New(cfg)
		if err != nil {
			m.log.Error("agent", "node", in.NodeID, "err", err)
			fmt.Fprintf(m.opts.Out, "weft up: instance %s: %v\n", in.NodeID, err)
			return
		}
		ri.agent.Store(a)
		go m.reportCert(ctx, in.NodeID, a)
		if err := m.opts.RunSidecar(ctx, a); err != nil && ctx.Err() == nil {
			m.log.Error("agent stopped", "node", in.NodeID, "err", err)
			fmt.Fprintf(m.opts.Out, "weft up: instance %s: agent: %v\n", in.NodeID, err)
		}
	}()
	return ri, nil
}

// reportCert tells the xDS server the expiry of the instance's
// certificate (for weft status): after every renewal, and again until the
// server (a restarted one, too) has recorded it — it ignores nodes that
// have not connected yet.
func (m *Mesh) reportCert(ctx context.Context, nodeID string, a *agent.Agent) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var lastSrv *xds.Server
	var lastExp time.Time
	confirmed := false
	for {
		if c := a.Certificate(); c != nil {
			srv := m.Server()
			if srv != lastSrv || !c.NotAfter.Equal(lastExp) || !confirmed {
				srv.SetCertExpiry(nodeID, c.NotAfter)
				lastSrv, lastExp, confirmed = srv, c.NotAfter, false
				for _, p := range srv.Status().Proxies {
					if p.NodeID == nodeID && p.CertExpiry.Equal(c.NotAfter) {
						confirmed = true
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// defaultSidecar runs the agent in this process (its Envoy is a child
// process that dies with it: Pdeathsig).
func defaultSidecar(ctx context.Context, a *agent.Agent) error { return a.Run(ctx) }

// appEnv is the environment of an instance's app:
//
//	WEFT_SERVICE, WEFT_VERSION, WEFT_INSTANCE (node id), WEFT_CLASS
//	WEFT_APP_ADDR   IP:port the app listens on (its first service port)
//	WEFT_APP_IP     the IP alone (the instance's loopback address)
//	PORT            that port alone
//	WEFT_PORT_<NAME> the app port of each named service port (upper case, '-' -> '_')
//	HTTP_PROXY / http_proxy  http://IP:15001, the outbound listener
//	NO_PROXY        empty
//
// plus the service's local.env.
func appEnv(in *Instance, svc *mesh.Service) []string {
	env := []string{
		"WEFT_SERVICE=" + in.Service,
		"WEFT_VERSION=" + in.Version,
		"WEFT_INSTANCE=" + in.NodeID,
		"WEFT_CLASS=" + in.Class,
		"WEFT_APP_ADDR=" + in.AppAddr(),
		"WEFT_APP_IP=" + in.IP,
		"HTTP_PROXY=" + in.OutboundProxy(),
		"http_proxy=" + in.OutboundProxy(),
		"NO_PROXY=", "no_proxy=",
	}
	if len(in.Ports) > 0 {
		env = append(env, "PORT="+strconv.Itoa(int(in.AppPorts[in.Ports[0]])))
	}
	for _, p := range svc.PortList() {
		name := strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))
		env = append(env, fmt.Sprintf("WEFT_PORT_%s=%d", name, in.AppPorts[p.Port]))
	}
	if svc.Local != nil {
		for k, v := range svc.Local.Env {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// ExecAppRunner runs each app as a child process in its own process
// group, killed with the group on stop and when weft dies (Pdeathsig):
// the service's local.command, or `<exe> demo-app`. Its output goes to
// <state>/run/<node>/app.log when logDir is set by Start.
func ExecAppRunner(exe string) AppRunner {
	return func(ctx context.Context, in *Instance, env []string) error {
		args := in.Command
		if len(args) == 0 {
			args = []string{exe, "demo-app"}
		}
		// $VAR and ${VAR} in the command expand from the app's
		// environment (PORT, WEFT_APP_IP, ...), then weft's.
		vars := map[string]string{}
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			vars[k] = v
		}
		expand := func(k string) string {
			if v, ok := vars[k]; ok {
				return v
			}
			return os.Getenv(k)
		}
		expanded := make([]string, len(args))
		for i, a := range args {
			expanded[i] = os.Expand(a, expand)
		}
		args = expanded
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if w := appLog(ctx); w != nil {
			cmd.Stdout, cmd.Stderr = w, w
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			return err
		case <-ctx.Done():
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		return nil
	}
}

type appLogKey struct{}

func appLog(ctx context.Context) io.Writer {
	w, _ := ctx.Value(appLogKey{}).(io.Writer)
	return w
}

// InProcessDemoApp runs the demo app of every instance in this process
// (tests; local.command is ignored).
func InProcessDemoApp(ctx context.Context, in *Instance, env []string) error {
	return demoapp.ListenAndServe(ctx, demoapp.Config{
		Addr: in.AppAddr(), Service: in.Service, Version: in.Version, Instance: in.NodeID,
		Proxy: in.OutboundProxy(),
	})
}
