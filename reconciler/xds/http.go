package xds

import (
	"encoding/json"
	"net/http"
)

// StatusPath is where Handler serves the status.
const StatusPath = "/status"

// Handler serves GET /status: the Status as JSON (package
// reconciler/api/status).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+StatusPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Status())
	})
	return mux
}
