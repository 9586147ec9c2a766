package up_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/up"
	"github.com/weft-dev/weft/up/demoapp"
)

// writeMesh writes a mesh repository: cue.mod/module.cue and mesh.cue
// (package mesh, importing the schema as weft).
func writeMesh(t testing.TB, dir, services string) {
	t.Helper()
	files := map[string]string{
		"cue.mod/module.cue": "module: \"example.com/t\"\nlanguage: version: \"v0.17.0\"\n",
		"mesh.cue": `package mesh

import "weft.dev/weft"

mesh: weft.#Mesh & {
	name:        "t"
	trustDomain: "t.example"
	defaults: namespace: "t"
	services: {
` + services + `
	}
}
`,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ipBase is a random 127.x.y.1 so that tests (and packages run in
// parallel) do not share addresses.
func ipBase() string {
	return fmt.Sprintf("127.%d.%d.1", 10+rand.IntN(200), 1+rand.IntN(250))
}

type testMesh struct {
	*up.Mesh
	t   testing.TB
	out *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// startMesh runs dir with up.Start (in-process demo apps, the project's
// Envoy) and waits until every instance has ACKed.
func startMesh(t testing.TB, dir string, tweak func(*up.Options)) *testMesh {
	t.Helper()
	out := &syncBuffer{}
	o := up.Options{
		Dir:      dir,
		StateDir: t.TempDir(),
		Poll:     100 * time.Millisecond,
		IPBase:   ipBase(),
		Envoy:    tooltest.Envoy(t),
		RunApp:   up.InProcessDemoApp,
		Out:      out,
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if tweak != nil {
		tweak(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := up.Start(context.Background(), o)
	if err != nil {
		t.Fatalf("up.Start: %v\n%s", err, out)
	}
	tm := &testMesh{Mesh: m, t: t, out: out}
	t.Cleanup(func() {
		instances := m.Instances() // Stop forgets them
		if err := m.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if t.Failed() {
			t.Logf("weft up output:\n%s", out)
			for _, in := range instances {
				b, _ := os.ReadFile(filepath.Join(o.StateDir, "run", in.NodeID, "envoy.log"))
				t.Logf("%s envoy.log:\n%s", in.NodeID, b)
			}
		}
	})
	tm.waitReady(ctx)
	return tm
}

func (tm *testMesh) waitReady(ctx context.Context) {
	tm.t.Helper()
	if err := tm.WaitReady(ctx); err != nil {
		st := tm.Server().Status()
		b, _ := json.MarshalIndent(st, "", "  ")
		tm.t.Fatalf("mesh not ready: %v\nstatus: %s\noutput:\n%s", err, b, tm.out)
	}
}

// instance returns the first replica of a class.
func (tm *testMesh) instance(class string) *up.Instance {
	tm.t.Helper()
	in := tm.Instance(class + "-0")
	if in == nil {
		tm.t.Fatalf("no instance %s-0", class)
	}
	return in
}

// client returns an HTTP client that sends through class's outbound
// listener, as its app does (HTTP_PROXY).
func (tm *testMesh) client(class string) *http.Client {
	in := tm.instance(class)
	pu, _ := url.Parse(in.OutboundProxy())
	tr := &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConnsPerHost: 16}
	tm.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get sends one request and decodes the demo app's answer (nil if the
// body is not one).
func get(c *http.Client, u string, hdr map[string]string) (int, *demoapp.Answer, http.Header, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a demoapp.Answer
	if json.Unmarshal(b, &a) != nil || a.Service == "" {
		return resp.StatusCode, nil, resp.Header, nil
	}
	return resp.StatusCode, &a, resp.Header, nil
}

// parallel runs n requests on w workers.
func parallel(n, w int, f func(i int)) {
	var wg sync.WaitGroup
	ch := make(chan int)
	for k := 0; k < w; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		ch <- i
	}
	close(ch)
	wg.Wait()
}

// waitAttempted waits until the pipeline has tried revision rev (served
// or refused).
func (tm *testMesh) waitAttempted(ctx context.Context, rev, what string) {
	tm.t.Helper()
	for {
		if a := tm.Server().Status().LastAttempt; a != nil && a.Revision == rev {
			return
		}
		select {
		case <-ctx.Done():
			tm.t.Fatalf("%s (%s) was never attempted", what, rev)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
