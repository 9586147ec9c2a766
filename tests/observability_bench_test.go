package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/schema/mesh"
)

// BenchmarkProxyObservability measures what weft's observability costs a
// proxy: one real Envoy (frontend's compiled static bootstrap) in front of
// a Go HTTP server, loaded by fortio through its outbound listener (one
// Envoy worker thread), with observability off (metrics: false), with the
// per-request stats only (the default), plus a JSON access log to a file,
// plus tracing of every request to a real Jaeger. Each variant runs at
// full speed (16 connections, no rate limit) and at a fixed 500 req/s;
// the raw lines carry req/s and p99-ms of each.
func BenchmarkProxyObservability(b *testing.B) {
	envoy, fortio := tooltest.Envoy(b), tooltest.Fortio(b)
	upstream := startUpstream(b)
	otlp := startJaegerBench(b)
	for _, v := range []struct {
		name string
		obs  *mesh.Observability
	}{
		{"off", &mesh.Observability{Metrics: ptrBool(false)}},
		{"metrics", nil}, // the default
		{"metrics+accesslog", &mesh.Observability{
			AccessLog: &mesh.AccessLog{Enabled: true, Output: filepath.Join(b.TempDir(), "access.log")},
		}},
		{"metrics+accesslog+tracing", &mesh.Observability{
			AccessLog: &mesh.AccessLog{Enabled: true, Output: filepath.Join(b.TempDir(), "access.log")},
			Tracing:   &mesh.Tracing{Collector: otlp, SamplingPercent: 100},
		}},
	} {
		b.Run(v.name, func(b *testing.B) {
			addr := startProxy(b, envoy, upstream, v.obs)
			for i := 0; i < b.N; i++ {
				for _, load := range []struct {
					name string
					args []string
				}{
					{"max", []string{"-qps", "0", "-c", "16"}},
					{"500qps", []string{"-qps", "500", "-c", "8"}},
				} {
					rps, p99 := runFortio(b, fortio, addr, load.args)
					b.ReportMetric(rps, load.name+"-req/s")
					b.ReportMetric(p99, load.name+"-p99-ms")
				}
			}
		})
	}
}

func ptrBool(v bool) *bool { return &v }

// startUpstream serves 200 "ok" on loopback.
func startUpstream(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// startProxy runs frontend's static bootstrap (frontend calls reviews,
// whose single endpoint is upstream, mTLS off) and returns its outbound
// listener's address.
func startProxy(b *testing.B, envoy, upstream string, obs *mesh.Observability) string {
	ports := tooltest.FreePorts(b, 4)
	m := &mesh.Model{Name: "bench", TrustDomain: "bench.example", Observability: obs,
		Defaults: mesh.Defaults{Namespace: "bench", MTLS: mesh.MTLSDisable},
		Services: map[string]*mesh.Service{
			"frontend": {Ports: map[string]mesh.Port{"http": {Port: 8080, Protocol: mesh.HTTP}},
				Versions: map[string]*mesh.Version{"v1": {Endpoints: []string{"127.0.0.1:1"}}}, Calls: []string{"reviews"}},
			"reviews": {Ports: map[string]mesh.Port{"http": {Port: 9080, Protocol: mesh.HTTP}},
				Versions: map[string]*mesh.Version{"v1": {Endpoints: []string{upstream}}}},
		}}
	res, err := compiler.Compile(m, nil, compiler.Options{Revision: "bench", InboundPort: ports[0], OutboundPort: ports[1]})
	if err != nil {
		b.Fatal(err)
	}
	boot, err := compiler.Bootstrap(res.Class("frontend-v1"), compiler.BootstrapOptions{AdminPort: ports[2], StatsPort: ports[3]})
	if err != nil {
		b.Fatal(err)
	}
	y, err := compiler.MarshalYAMLObject(boot)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	cfg := filepath.Join(dir, "bootstrap.yaml")
	if err := os.WriteFile(cfg, y, 0o644); err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "envoy.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(envoy, "-c", cfg, "--log-level", "error", "--concurrency", "1", "--base-id", strconv.Itoa(int(ports[2])))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Host = "reviews:9080"
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			lb, _ := os.ReadFile(logf.Name())
			b.Fatalf("proxy not serving: %v\n%s", err, lb)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runFortio loads addr for 10 seconds and returns the achieved req/s and
// the p99 latency in milliseconds.
func runFortio(b *testing.B, fortio, addr string, args []string) (float64, float64) {
	out := filepath.Join(b.TempDir(), "fortio.json")
	cmd := exec.Command(fortio, append(append([]string{"load", "-quiet", "-t", "10s", "-json", out, "-H", "Host: reviews:9080"}, args...), "http://"+addr+"/")...)
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("fortio: %v\n%s", err, o)
	}
	r := readFortio(b, out)
	return r.QPS, r.P99
}

// readFortio reads fortio's JSON report at path; every answer must have
// been a 200 and the report must hold the 50th and 99th percentiles.
func readFortio(b testing.TB, path string) fortioResult {
	b.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var r struct {
		ActualQPS         float64
		RetCodes          map[string]int
		DurationHistogram struct {
			Count       int
			Percentiles []struct {
				Percentile float64
				Value      float64
			}
		}
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		b.Fatal(err)
	}
	if r.RetCodes["200"] != r.DurationHistogram.Count {
		b.Fatalf("fortio: %d of %d answers were 200: %v", r.RetCodes["200"], r.DurationHistogram.Count, r.RetCodes)
	}
	out := fortioResult{QPS: r.ActualQPS, Count: r.DurationHistogram.Count, P50: -1, P99: -1}
	for _, p := range r.DurationHistogram.Percentiles {
		switch p.Percentile {
		case 50:
			out.P50 = p.Value * 1000
		case 99:
			out.P99 = p.Value * 1000
		}
	}
	if out.P50 < 0 || out.P99 < 0 {
		b.Fatalf("fortio reported no p50 or p99: %s", raw)
	}
	return out
}

// startJaegerBench runs Jaeger all-in-one (OTLP/gRPC in, memory storage)
// and returns its OTLP address.
func startJaegerBench(b *testing.B) string {
	ports := tooltest.FreePorts(b, 3)
	dir := b.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	conf := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {receivers: [otlp], exporters: [jaeger_storage_exporter]}
  telemetry: {metrics: {level: none}, logs: {level: warn}}
extensions:
  jaeger_query: {storage: {traces: mem}, http: {endpoint: "127.0.0.1:%d"}, grpc: {endpoint: "127.0.0.1:%d"}}
  jaeger_storage: {backends: {mem: {memory: {max_traces: 1000}}}}
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:%d"}}}
exporters:
  jaeger_storage_exporter: {trace_storage: mem}
`, ports[0], ports[1], ports[2])
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(tooltest.Jaeger(b), "--config", cfg)
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			b.Fatalf("jaeger not listening on %s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
