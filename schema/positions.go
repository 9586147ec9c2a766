package schema

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"cuelang.org/go/cue/ast"

	"github.com/weft-dev/weft/schema/mesh"
)

// positions records where each field below mesh was written, from the
// syntax of the user's files rather than the evaluated value: it is an
// order of magnitude cheaper than asking every evaluated value for its
// conjuncts, and it sees exactly what the user wrote. Files are visited from
// the module root down, so an environment's position for a field replaces
// the base's. Fields the schema filled in (defaults) get no entry;
// Positions.Lookup falls back to the enclosing struct.
//
// The same walk finds what the schema cannot report well: routes written
// as a list (the form before routes were keyed by name) are returned as
// errors.
func positions(files []*ast.File, root string) (mesh.Positions, Errors) {
	return walkPositions(files, root, false)
}

// walkPositions is positions; all records every field, not only those
// below mesh (definitions too).
func walkPositions(files []*ast.File, root string, all bool) (mesh.Positions, Errors) {
	type file struct {
		rel string
		f   *ast.File
	}
	var fs []file
	for _, f := range files {
		rel := f.Filename
		if r, err := filepath.Rel(root, rel); err == nil {
			rel = r
		}
		if !inSchema(mesh.Pos{File: rel}) {
			fs = append(fs, file{rel, f})
		}
	}
	sort.SliceStable(fs, func(i, j int) bool { return depth(fs[i].rel) < depth(fs[j].rel) })
	ps := mesh.Positions{}
	var es Errors
	for _, f := range fs {
		w := posWalker{ps: ps, file: f.rel, errs: &es, all: all}
		for _, d := range f.f.Decls {
			w.walk(d, "")
		}
	}
	return ps, es
}

func depth(rel string) int { return strings.Count(filepath.ToSlash(rel), "/") }

func inSchema(p mesh.Pos) bool {
	return strings.HasPrefix(filepath.ToSlash(p.File), "cue.mod/")
}

type posWalker struct {
	ps   mesh.Positions
	file string
	errs *Errors
	all  bool
}

func (w posWalker) record(path string, n ast.Node) {
	if !w.all && path != "mesh" && !strings.HasPrefix(path, "mesh.") && !strings.HasPrefix(path, "mesh[") {
		return
	}
	if p := n.Pos(); p.IsValid() {
		w.ps[path] = mesh.Pos{File: w.file, Line: p.Line(), Column: p.Column()}
	}
}

func (w posWalker) pos(n ast.Node) mesh.Pos {
	p := n.Pos()
	return mesh.Pos{File: w.file, Line: p.Line(), Column: p.Column()}
}

func (w posWalker) walk(n ast.Node, path string) {
	switch x := n.(type) {
	case *ast.Field:
		name, _, err := ast.LabelName(x.Label)
		if err != nil {
			return // a pattern or dynamic label: no fixed path
		}
		p := mesh.Label(name)
		if id, ok := x.Label.(*ast.Ident); ok && strings.HasPrefix(id.Name, "#") {
			p = id.Name // a definition: CUE's paths name it as written
		}
		if path != "" {
			p = path + "." + p
		}
		w.record(p, x.Label)
		w.walk(x.Value, p)
	case *ast.StructLit:
		for _, e := range x.Elts {
			w.walk(e, path)
		}
	case *ast.ListLit:
		if isRoutesPath(path) {
			*w.errs = append(*w.errs, routeListError(path, w.pos(x), x))
			return
		}
		for i, e := range x.Elts {
			if _, ok := e.(*ast.Ellipsis); ok {
				continue
			}
			if id, ok := e.(*ast.Ident); ok && id.Name == "_" {
				// A placeholder (an overlay's `routes: [_, {...}]`)
				// writes nothing: the element keeps the position of
				// the file that defines it.
				continue
			}
			p := path + "[" + strconv.Itoa(i) + "]"
			w.record(p, e)
			w.walk(e, p)
		}
	case *ast.BinaryExpr:
		w.walk(x.X, path)
		w.walk(x.Y, path)
	case *ast.UnaryExpr:
		w.walk(x.X, path)
	case *ast.ParenExpr:
		w.walk(x.X, path)
	case *ast.EmbedDecl:
		w.walk(x.Expr, path)
	}
}

// isRoutesPath reports whether path is a service's routes field,
// mesh.services.<name>.routes.
func isRoutesPath(path string) bool {
	rest, ok := strings.CutPrefix(path, "mesh.services.")
	if !ok {
		return false
	}
	name, ok := strings.CutSuffix(rest, ".routes")
	return ok && name != "" && (!strings.ContainsAny(name, ".[") || strings.HasPrefix(name, `"`))
}

// routeListError reports routes written as a list, the form before routes
// were keyed by name, with the keyed form of the same routes as the fix.
func routeListError(path string, pos mesh.Pos, list *ast.ListLit) *Error {
	var entries []string
	overlay := false
	unnamed := 0
	for _, e := range list.Elts {
		switch x := e.(type) {
		case *ast.Ident:
			overlay = overlay || x.Name == "_"
		case *ast.StructLit:
			name, fields := routeListEntry(x)
			if name == "" {
				unnamed++
				name = "<name>"
			}
			label := name
			if name != "<name>" {
				label = mesh.Label(name)
			}
			entries = append(entries, fmt.Sprintf("%s: {%s}", label, strings.Join(fields, ", ")))
		}
	}
	if len(entries) == 0 {
		entries = []string{"<name>: {match: ..., to: ...}"}
	}
	var fix string
	if overlay {
		fix = fmt.Sprintf("change a route by its name, with no placeholders: routes: {%s}", strings.Join(entries, ", "))
	} else {
		fix = fmt.Sprintf("write routes: {%s}: each route under its name, without name:; "+
			"routes are tried by precedence (exact path, regex, longer prefix, methods, more headers), not in the order written, and priority: N moves one first",
			strings.Join(entries, ", "))
	}
	if unnamed > 0 {
		fix += fmt.Sprintf("; give the %d unnamed route(s) a name", unnamed)
	}
	return &Error{Pos: pos, Path: path, Msg: "routes is now a map keyed by route name, not a list", Fix: fix}
}

// routeListEntry reads the name and the other field labels of a route
// written as a list element.
func routeListEntry(s *ast.StructLit) (name string, fields []string) {
	for _, d := range s.Elts {
		f, ok := d.(*ast.Field)
		if !ok {
			continue
		}
		label, _, err := ast.LabelName(f.Label)
		if err != nil {
			continue
		}
		if label == "name" {
			if lit, ok := f.Value.(*ast.BasicLit); ok {
				if n, err := strconv.Unquote(lit.Value); err == nil {
					name = n
					continue
				}
			}
		}
		fields = append(fields, label+": ...")
	}
	return name, fields
}
