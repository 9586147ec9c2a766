package mesh

import (
	"fmt"
	"strings"
)

// Pos is a source position in a mesh repository, relative to its root.
type Pos struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
}

// IsValid reports whether p names a file.
func (p Pos) IsValid() bool { return p.File != "" }

// String is "file:line:column", or "file" for a whole file (Line 0).
func (p Pos) String() string {
	if !p.IsValid() {
		return "-"
	}
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Positions maps CUE field paths ("mesh.services.orders.routes.split.to.v2")
// to where they were written.
type Positions map[string]Pos

// Lookup returns the position of path, or of its nearest ancestor that has
// one: a value that the schema filled in (a default) is reported where its
// enclosing struct was written.
func (ps Positions) Lookup(path string) Pos {
	for path != "" {
		if p, ok := ps[path]; ok {
			return p
		}
		path = parentPath(path)
	}
	return Pos{}
}

func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// ServicePath is the CUE path of a service.
func ServicePath(service string) string { return "mesh.services." + Label(service) }

// RoutePath is the CUE path of a service's route, by route name
// ("mesh.services.reviews.routes.split").
func RoutePath(service, route string) string {
	return ServicePath(service) + ".routes." + Label(route)
}

// Label quotes a CUE field label when it is not an identifier.
func Label(s string) string {
	for i, r := range s {
		ok := r == '_' || r == '$' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}
