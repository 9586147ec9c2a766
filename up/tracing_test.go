package up_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/up/demoapp"
)

// jaegerConfig is a Jaeger v2 (all-in-one) configuration: OTLP/gRPC in,
// memory storage, the query API on its own ports, nothing else.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: %[1]s
    grpc:
      endpoint: %[2]s
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %[3]s
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// startJaeger runs Jaeger all-in-one on free loopback ports and returns
// its OTLP/gRPC address and its query API's base URL.
func startJaeger(t *testing.T) (otlp, query string) {
	t.Helper()
	bin := tooltest.Jaeger(t)
	ports := tooltest.FreePorts(t, 3)
	query = fmt.Sprintf("127.0.0.1:%d", ports[0])
	otlp = fmt.Sprintf("127.0.0.1:%d", ports[2])
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(jaegerConfig, query, fmt.Sprintf("127.0.0.1:%d", ports[1]), otlp)), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "jaeger.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none") // no self-tracing to localhost:4317
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("jaeger.log:\n%s", b)
		}
	})
	waitFor(t, 60*time.Second, "jaeger query API", func() (bool, string) {
		resp, err := http.Get("http://" + query + "/api/services")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return otlp, "http://" + query
}

// jaegerTrace is a trace as Jaeger's query API returns it.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		Tags []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

func getTrace(query, id string) (*jaegerTrace, error) {
	resp, err := http.Get(query + "/api/traces/" + id)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if len(r.Data) == 0 {
		return nil, fmt.Errorf("no trace %s", id)
	}
	return &r.Data[0], nil
}

// TestTracingAndAccessLogs: a request through frontend -> orders ->
// payments, with a W3C traceparent from the client, is one trace in a real
// Jaeger with the spans of every proxy on the way (inbound and outbound at
// frontend and orders, inbound at payments), each named by its mesh
// service, every span's parent in the trace; and every proxy's JSON access
// log has a line for it with its request id, trace id and response code.
func TestTracingAndAccessLogs(t *testing.T) {
	otlp, query := startJaeger(t)
	dir := t.TempDir()
	writeMeshWith(t, dir, `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["orders"]
		}
		orders: {
			ports: http: port: 8083
			versions: v1: labels: version: "v1"
			calls: ["payments"]
		}
		payments: {
			ports: http: port: 8084
			versions: v1: labels: version: "v1"
		}
`, fmt.Sprintf(`observability: {
		accessLog: output: "stdout"
		tracing: {collector: %q, samplingPercent: 100}
	}`, otlp))
	tm := startMesh(t, dir, nil)
	in := tm.instance("frontend-v1")

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest(http.MethodGet, "http://"+in.Addr(8080)+chainPath, nil)
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var a demoapp.Answer
	err = json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(a.Calls) != 1 || a.Calls[0].Answer == nil ||
		len(a.Calls[0].Answer.Calls) != 1 || a.Calls[0].Answer.Calls[0].Status != http.StatusOK {
		t.Fatalf("the chain did not answer 200 all the way: %d %+v (%v)", resp.StatusCode, a, err)
	}
	requestID := a.Headers["x-request-id"]
	if requestID == "" || a.Calls[0].Answer.Calls[0].Answer.Headers["x-request-id"] != requestID {
		t.Errorf("x-request-id %q at frontend, %q at payments: want the same", requestID, a.Calls[0].Answer.Calls[0].Answer.Headers["x-request-id"])
	}
	if tp := a.Calls[0].Answer.Calls[0].Answer.Headers["traceparent"]; !strings.Contains(tp, traceID) {
		t.Errorf("payments' app got traceparent %q, want trace %s", tp, traceID)
	}

	// Envoy exports spans every 5 seconds.
	var tr *jaegerTrace
	waitFor(t, 60*time.Second, "the trace in Jaeger", func() (bool, string) {
		tr, err = getTrace(query, traceID)
		if err != nil {
			return false, err.Error()
		}
		return len(tr.Spans) >= 5, fmt.Sprintf("%d spans", len(tr.Spans))
	})
	perService := map[string]int{}
	ids := map[string]bool{}
	for _, s := range tr.Spans {
		perService[tr.Processes[s.ProcessID].ServiceName]++
		ids[s.SpanID] = true
	}
	want := map[string]int{"frontend": 2, "orders": 2, "payments": 1}
	for svc, n := range want {
		if perService[svc] != n {
			t.Errorf("%d spans from %s's proxy, want %d (inbound%s)", perService[svc], svc, n, map[bool]string{true: " and outbound"}[n == 2])
		}
	}
	for _, s := range tr.Spans {
		for _, r := range s.References {
			if r.RefType == "CHILD_OF" && !ids[r.SpanID] && r.SpanID != "00f067aa0ba902b7" {
				t.Errorf("span %s (%s) has a parent %s outside the trace", s.SpanID, s.OperationName, r.SpanID)
			}
		}
	}

	// The access logs: one JSON line per proxy and direction.
	state := filepath.Dir(filepath.Dir(tm.PrometheusConfigPath()))
	lines := map[string]int{}
	waitFor(t, 20*time.Second, "access log lines", func() (bool, string) {
		lines = map[string]int{}
		for _, node := range []string{"frontend-v1-0", "orders-v1-0", "payments-v1-0"} {
			f, err := os.Open(filepath.Join(state, "run", node, "envoy.log"))
			if err != nil {
				return false, err.Error()
			}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var l map[string]any
				if json.Unmarshal(sc.Bytes(), &l) != nil || l["request_id"] != requestID {
					continue
				}
				if l["trace_id"] != traceID || fmt.Sprint(l["response_code"]) != "200" || l["start_time"] == nil || l["duration_ms"] == nil {
					t.Errorf("%s: access log line %s: want trace_id %s, response_code 200, start_time and duration_ms", node, sc.Text(), traceID)
				}
				lines[node+" "+fmt.Sprint(l["direction"])]++
			}
			f.Close()
		}
		return len(lines) == 5, fmt.Sprint(lines)
	})
	var got []string
	for k := range lines {
		got = append(got, k)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != "frontend-v1-0 inbound,frontend-v1-0 outbound,orders-v1-0 inbound,orders-v1-0 outbound,payments-v1-0 inbound" {
		t.Errorf("access log lines for request %s: %v", requestID, lines)
	}
}

// writeMeshWith is writeMesh with extra fields of the mesh (e.g. its
// observability block).
func writeMeshWith(t *testing.T, dir, services, extra string) {
	t.Helper()
	writeMesh(t, dir, services)
	p := filepath.Join(dir, "mesh.cue")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "\tdefaults: namespace: \"t\"\n", "\tdefaults: namespace: \"t\"\n\t"+extra+"\n", 1)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
