// Package demoapp is `weft demo-app`, the workload `weft up` runs for a
// service without a local.command: a small HTTP service that answers
// every request with JSON naming itself (service, version, instance), the
// request it received (method, path, headers — so header injection and
// the caller's x-forwarded-client-cert are visible), and, when asked, the
// answers of its dependencies, called through the sidecar (HTTP_PROXY).
//
// Knobs, as query parameters or x-demo-* request headers (the header
// wins), to drive the traffic features of the mesh:
//
//	call=<service>[:<port>][/<path>]  call a dependency (repeatable; query only)
//	fail=<0..1>                       answer 503 with this probability
//	fail-instance=<instance>          answer 503 only on this instance
//	status=<code>                     answer with this status code
//	delay=<duration>                  wait before answering ("250ms")
//
// GET /_demo/count answers {"count": n}: the number of requests served
// so far (other than /_demo/*), e.g. to measure a mirror's share. GET
// /_demo/last answers the Answer of the last of them (404 before the
// first): what a mirror's copy looked like, whose answer nobody sees.
//
// It imports nothing of weft.
package demoapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Config is what the app says about itself.
type Config struct {
	Addr     string // listen address, e.g. 127.0.0.5:18080
	Service  string
	Version  string
	Instance string
	// Proxy is the HTTP proxy dependencies are called through (default
	// $HTTP_PROXY), used even for loopback names.
	Proxy string
	// Client calls dependencies (default: an http.Client using Proxy).
	Client *http.Client
}

// ConfigFromEnv reads WEFT_APP_ADDR (else 127.0.0.1:$PORT, else
// 127.0.0.1:8080), WEFT_SERVICE, WEFT_VERSION, WEFT_INSTANCE.
func ConfigFromEnv() Config {
	c := Config{
		Addr:     os.Getenv("WEFT_APP_ADDR"),
		Service:  os.Getenv("WEFT_SERVICE"),
		Version:  os.Getenv("WEFT_VERSION"),
		Instance: os.Getenv("WEFT_INSTANCE"),
	}
	if c.Addr == "" {
		port := os.Getenv("PORT")
		if port == "" {
			port = "8080"
		}
		c.Addr = net.JoinHostPort("127.0.0.1", port)
	}
	return c
}

// Answer is the JSON body of every answer.
type Answer struct {
	Service  string            `json:"service"`
	Version  string            `json:"version"`
	Instance string            `json:"instance"`
	Method   string            `json:"method"`
	Host     string            `json:"host"`
	Path     string            `json:"path"`
	Headers  map[string]string `json:"headers"`
	Status   int               `json:"status"`
	Calls    []Call            `json:"calls,omitempty"`
}

// Call is the outcome of calling one dependency.
type Call struct {
	URL    string  `json:"url"`
	Status int     `json:"status"`
	Error  string  `json:"error,omitempty"`
	Answer *Answer `json:"answer,omitempty"`
}

// App is the demo HTTP handler.
type App struct {
	cfg   Config
	count atomic.Int64
	last  atomic.Pointer[Answer]
}

// New returns the app.
func New(cfg Config) *App {
	if cfg.Client == nil {
		proxy := cfg.Proxy
		if proxy == "" {
			proxy = os.Getenv("HTTP_PROXY")
		}
		if proxy == "" {
			proxy = os.Getenv("http_proxy")
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if proxy != "" {
			// http.ProxyFromEnvironment skips loopback hosts; the mesh
			// wants every call through the sidecar.
			tr.Proxy = func(*http.Request) (*url.URL, error) { return url.Parse(proxy) }
		}
		tr.MaxIdleConnsPerHost = 64
		cfg.Client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	return &App{cfg: cfg}
}

// Count is the number of requests served (other than /_demo/*).
func (a *App) Count() int64 { return a.count.Load() }

func knob(r *http.Request, name string) string {
	if v := r.Header.Get("x-demo-" + name); v != "" {
		return v
	}
	return r.URL.Query().Get(name)
}

// ServeHTTP implements http.Handler.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_demo/count":
		writeJSON(w, http.StatusOK, map[string]int64{"count": a.count.Load()})
		return
	case "/_demo/last":
		if last := a.last.Load(); last != nil {
			writeJSON(w, http.StatusOK, last)
		} else {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no request served yet"})
		}
		return
	}
	a.count.Add(1)
	_, _ = io.Copy(io.Discard, r.Body)
	ans := &Answer{
		Service: a.cfg.Service, Version: a.cfg.Version, Instance: a.cfg.Instance,
		Method: r.Method, Host: r.Host, Path: r.URL.RequestURI(),
		Headers: map[string]string{}, Status: http.StatusOK,
	}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ans.Headers[strings.ToLower(k)] = strings.Join(r.Header.Values(k), ",")
	}
	if d := knob(r, "delay"); d != "" {
		if dur, err := time.ParseDuration(d); err == nil {
			select {
			case <-time.After(dur):
			case <-r.Context().Done():
				return
			}
		}
	}
	if s := knob(r, "status"); s != "" {
		if code, err := strconv.Atoi(s); err == nil && code >= 100 && code < 600 {
			ans.Status = code
		}
	}
	if f := knob(r, "fail"); f != "" {
		if p, err := strconv.ParseFloat(f, 64); err == nil && rand.Float64() < p {
			ans.Status = http.StatusServiceUnavailable
		}
	}
	if fi := knob(r, "fail-instance"); fi != "" && fi == a.cfg.Instance {
		ans.Status = http.StatusServiceUnavailable
	}
	for _, target := range r.URL.Query()["call"] {
		ans.Calls = append(ans.Calls, a.call(r.Context(), target, r.Header))
	}
	a.last.Store(ans)
	writeJSON(w, ans.Status, ans)
}

// propagated are the request headers passed on to dependencies.
// The trace context: x-request-id (Envoy's request id, which also carries
// its sampling decision), W3C traceparent and tracestate (Envoy's
// OpenTelemetry tracer) and B3, so that one trace spans every hop.
var propagated = []string{
	"x-canary", "x-request-id", "traceparent", "tracestate",
	"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3",
}

func (a *App) call(ctx context.Context, target string, in http.Header) Call {
	hostport, path, _ := strings.Cut(target, "/")
	u := "http://" + hostport + "/" + path
	c := Call{URL: u}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	for _, h := range propagated {
		if v := in.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := a.cfg.Client.Do(req)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	defer resp.Body.Close()
	c.Status = resp.StatusCode
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var sub Answer
	if err := json.Unmarshal(body, &sub); err == nil && sub.Service != "" {
		c.Answer = &sub
	} else if len(body) > 0 {
		c.Error = strings.TrimSpace(string(body))
	}
	return c
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// ListenAndServe serves the app on cfg.Addr until ctx ends.
func ListenAndServe(ctx context.Context, cfg Config) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("demo-app: %w", err)
	}
	srv := &http.Server{Handler: New(cfg), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
