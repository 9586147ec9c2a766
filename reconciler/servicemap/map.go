package servicemap

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/signals"
	"github.com/weft-dev/weft/schema/mesh"
)

// Path is where a control plane mounts the map: the page at Path + "/",
// its JSON at APIPath.
const (
	Path    = "/map"
	APIPath = Path + "/api/graph"
)

// DefaultRefresh is how often the signals are read and the page fetches
// the graph again.
const DefaultRefresh = 5 * time.Second

//go:embed assets
var assets embed.FS

// Options configure a Map.
type Options struct {
	// Model returns the served revision's model (nil before the first).
	Model func() *mesh.Model
	// Status returns the control plane's status (nil: none shown).
	Status func() status.Status
	// Signals reads the live edges; give it Inbound (signals.Proxies or
	// signals.Prometheus with Inbound set) to see undeclared callers.
	Signals signals.Reader
	// Info describes the reader (Source, URL, Window).
	Info SignalsInfo
	// Refresh is the period of the signal reads and of the page's
	// fetches (default DefaultRefresh).
	Refresh time.Duration
	// Thresholds of edge health (zero: DefaultThresholds).
	Thresholds Thresholds
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Map serves the service map. Run reads the signals every Refresh, so
// that the proxies or Prometheus are read at one pace whatever the number
// of pages open; the handler serves the last read.
type Map struct {
	o Options

	mu    sync.Mutex
	edges []signals.Edge
	info  SignalsInfo
}

// New returns a Map; call Run to read signals.
func New(o Options) *Map {
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Map{o: o, info: o.Info}
}

// Run reads the signals now and every Refresh until ctx ends. A failed
// read keeps the previous edges and shows its error.
func (m *Map) Run(ctx context.Context) {
	t := time.NewTicker(m.o.Refresh)
	defer t.Stop()
	for {
		m.Read(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Read reads the signals once.
func (m *Map) Read(ctx context.Context) {
	if m.o.Signals == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, max(m.o.Refresh, 5*time.Second))
	defer cancel()
	edges, err := m.o.Signals.Edges(rctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.info.Error = err.Error()
		return
	}
	m.edges, m.info.Error, m.info.At = edges, "", m.o.Now()
}

// Graph is the map's current JSON value.
func (m *Map) Graph() *Graph {
	in := Input{Thresholds: m.o.Thresholds, Refresh: m.o.Refresh}
	if m.o.Model != nil {
		in.Model = m.o.Model()
	}
	if m.o.Status != nil {
		st := m.o.Status()
		in.Status = &st
	}
	m.mu.Lock()
	in.Edges, in.Signals = m.edges, m.info
	m.mu.Unlock()
	return Build(in)
}

// Handler serves, under Path: the page (GET /map/, /map/app.js,
// /map/style.css; GET /map redirects to /map/) and the JSON
// (GET /map/api/graph).
func (m *Map) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+APIPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(m.Graph())
	})
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	mux.HandleFunc("GET "+Path, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Path+"/", http.StatusMovedPermanently)
	})
	mux.Handle("GET "+Path+"/", http.StripPrefix(Path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		// The page loads nothing but itself.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})))
	return mux
}
