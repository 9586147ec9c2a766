package schema

import (
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
func positions(files []*ast.File, root string) mesh.Positions {
	return walkPositions(files, root, false)
}

// walkPositions is positions; all records every field, not only those
// below mesh (definitions too).
func walkPositions(files []*ast.File, root string, all bool) mesh.Positions {
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
	for _, f := range fs {
		w := posWalker{ps: ps, file: f.rel, all: all}
		for _, d := range f.f.Decls {
			w.walk(d, "")
		}
	}
	return ps
}

func depth(rel string) int { return strings.Count(filepath.ToSlash(rel), "/") }

func inSchema(p mesh.Pos) bool {
	return strings.HasPrefix(filepath.ToSlash(p.File), "cue.mod/")
}

type posWalker struct {
	ps   mesh.Positions
	file string
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
