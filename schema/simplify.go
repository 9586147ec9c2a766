package schema

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"

	"github.com/weft-dev/weft/schema/mesh"
)

// CUE reports a value that fails a disjunction once per alternative, with
// the fix of whichever message it is. simplify rewrites what is noise to a
// user, using the positions CUE gives and where the files (the user's and
// the schema) write defaults (*x) and disjunctions (a | b):
//
//   - an enum ("GET" | "HEAD" | ...): one "conflicting values" error per
//     allowed value. They become one error naming the value and the
//     allowed values, the default first (and, for a gRPC method name in
//     methods, where it belongs).
//   - two files setting an enum field to two allowed values: the conflict
//     between the files, not the value's conflicts with the enum.
//   - a default (`*100 | _` in the base, `*[...] | [...#RetryOn]` in the
//     schema): a value that breaks the field's constraint also conflicts
//     with the default, and the conflict's fix ("mark the base's value as a
//     default") is wrong, since it is one. The errors that come from the
//     default alternative are dropped when the field has another error:
//     the constraint the value violates.
//   - a constraint or a literal (#Name | "*"): a conflict with the literal
//     and the constraint's error. They become the constraint's error, whose
//     fix also names the literal.
//   - the one value the schema allows (preset: "security"): the error says
//     which of the two values is the schema's.

// span is the extent of a default-marked expression (*value) in a file.
type span struct {
	file     string
	from, to mesh.Pos
}

func (s span) contains(p mesh.Pos) bool {
	return p.File == s.file && !before(p, s.from) && before(p, s.to)
}

func before(a, b mesh.Pos) bool {
	return a.Line < b.Line || (a.Line == b.Line && a.Column < b.Column)
}

// sourceSpans are the default-marked expressions (*value) and the
// disjunctions (a | b) of the user's files and of the schema.
type sourceSpans struct {
	defaults, alternatives []span
}

func inAny(spans []span, p mesh.Pos) bool {
	for _, s := range spans {
		if s.contains(p) {
			return true
		}
	}
	return false
}

// spansOf finds the spans of the user's files and of the schema.
func spansOf(files []*ast.File, root string) sourceSpans {
	sch := schemaSpans()
	out := sourceSpans{defaults: slices.Clone(sch.defaults), alternatives: slices.Clone(sch.alternatives)}
	for _, f := range files {
		rel := f.Filename
		if r, err := filepath.Rel(root, rel); err == nil {
			rel = r
		}
		out.add(f, rel)
	}
	return out
}

// schemaSpans are the spans of the embedded schema, at the path errors
// give it (SchemaFile).
var schemaSpans = sync.OnceValue(func() sourceSpans {
	var out sourceSpans
	if f, err := parser.ParseFile(SchemaFile, schemaSource); err == nil {
		out.add(f, SchemaFile)
	}
	return out
})

func (ss *sourceSpans) add(f *ast.File, rel string) {
	at := func(n ast.Node) span {
		from, to := n.Pos(), n.End()
		return span{
			file: rel,
			from: mesh.Pos{File: rel, Line: from.Line(), Column: from.Column()},
			to:   mesh.Pos{File: rel, Line: to.Line(), Column: to.Column()},
		}
	}
	ast.Walk(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.UnaryExpr:
			if x.Op == token.MUL {
				ss.defaults = append(ss.defaults, at(x))
			}
		case *ast.BinaryExpr:
			if x.Op == token.OR {
				ss.alternatives = append(ss.alternatives, at(x))
			}
		}
		return true
	}, nil)
}

var conflictRe = regexp.MustCompile(`^conflicting values (.+) and (.+)$`)

// conflict parses a "conflicting values A and B" message (not a type
// mismatch).
func conflict(msg string) (a, b string, ok bool) {
	m := conflictRe.FindStringSubmatch(msg)
	if m == nil || strings.Contains(msg, "(mismatched types") {
		return "", "", false
	}
	return m[1], m[2], true
}

// simplify rewrites the noise described above; errors keep their order
// otherwise.
func simplify(es Errors, spans sourceSpans) Errors {
	var out Errors
	done := map[string]bool{}
	for _, e := range es {
		if done[e.Path] {
			continue
		}
		group := samePath(es, e.Path)
		if enum := enumError(group, spans); enum != nil {
			done[e.Path] = true
			out = append(out, enum)
			continue
		}
		if files := betweenFiles(group, spans.defaults); len(files) > 0 && len(files) < len(group) {
			// Two files set the field: that is the error; the value's
			// conflicts with the schema's alternatives follow from it.
			done[e.Path] = true
			out = append(out, files...)
			continue
		}
		out = append(out, e)
	}
	out = mergeAlternatives(dropDefaultConflicts(out, spans.defaults))
	for i, e := range out {
		out[i] = schemaValue(e)
	}
	return out
}

// schemaValue rewrites a conflict between the user's value and the one
// value the schema allows there (preset: "security"), naming which is
// which: the schema's is the one written at a schema position.
func schemaValue(e *Error) *Error {
	a, b, ok := conflict(e.Msg)
	if !ok {
		return e
	}
	for _, p := range append([]mesh.Pos{e.Pos}, e.Also...) {
		if p.File != SchemaFile {
			continue
		}
		for _, pair := range [][2]string{{a, b}, {b, a}} {
			if schemaTextAt(p, pair[0]) {
				c := *e
				c.Msg = fmt.Sprintf("%s is not allowed here: the schema allows only %s", pair[1], pair[0])
				c.Fix = "use " + pair[0]
				return &c
			}
		}
	}
	return e
}

// schemaLines is the embedded schema, by line.
var schemaLines = sync.OnceValue(func() []string { return strings.Split(string(schemaSource), "\n") })

// schemaTextAt reports whether the schema has text at position p.
func schemaTextAt(p mesh.Pos, text string) bool {
	lines := schemaLines()
	if p.Line < 1 || p.Line > len(lines) || p.Column < 1 || p.Column > len(lines[p.Line-1]) {
		return false
	}
	return strings.HasPrefix(lines[p.Line-1][p.Column-1:], text)
}

// betweenFiles are the conflicts of a group whose positions are all in the
// user's files, none in a default: two files set different values.
func betweenFiles(group Errors, defaults []span) Errors {
	var out Errors
	for _, e := range group {
		if _, _, ok := conflict(e.Msg); !ok || len(e.Also) == 0 {
			continue
		}
		user := true
		for _, p := range append([]mesh.Pos{e.Pos}, e.Also...) {
			user = user && !inSchema(p) && !inAny(defaults, p)
		}
		if user {
			out = append(out, e)
		}
	}
	return out
}

func samePath(es Errors, path string) Errors {
	var g Errors
	for _, e := range es {
		if e.Path == path {
			g = append(g, e)
		}
	}
	return g
}

// enumError is the one error for a group of conflicts at one path that
// all share the user's value, each with a value written as an alternative
// of a disjunction: an enum the value is not part of. Nil when the group
// is anything else (two values written for one field conflict with each
// other, not with an enum).
func enumError(group Errors, spans sourceSpans) *Error {
	if len(group) < 2 {
		return nil
	}
	counts := map[string]int{}
	for _, e := range group {
		a, b, ok := conflict(e.Msg)
		if !ok {
			return nil
		}
		counts[a]++
		if b != a {
			counts[b]++
		}
	}
	value := ""
	for v, n := range counts {
		if n == len(group) {
			value = v
		}
	}
	if value == "" {
		return nil
	}
	type literal struct {
		text string
		pos  mesh.Pos
	}
	var lits []literal
	seen := map[string]bool{}
	for _, e := range group {
		a, b, _ := conflict(e.Msg)
		other := a
		if a == value {
			other = b
		}
		own := ownPosition(e, group)
		if !inAny(spans.alternatives, own) {
			return nil
		}
		if seen[other] {
			// The same value from two disjunctions (a default and the
			// enum it defaults): the enum's place orders it.
			for i := range lits {
				if lits[i].text == other && own.File == lits[i].pos.File && before(own, lits[i].pos) {
					lits[i].pos = own
				}
			}
			continue
		}
		seen[other] = true
		lits = append(lits, literal{other, own})
	}
	// The default first, then in the order the schema (or the base)
	// writes them.
	slices.SortStableFunc(lits, func(x, y literal) int {
		dx, dy := inAny(spans.defaults, x.pos), inAny(spans.defaults, y.pos)
		switch {
		case dx != dy:
			if dx {
				return -1
			}
			return 1
		case x.pos.File != y.pos.File:
			return strings.Compare(x.pos.File, y.pos.File)
		case before(x.pos, y.pos):
			return -1
		case before(y.pos, x.pos):
			return 1
		}
		return 0
	})
	allowed := make([]string, len(lits))
	for i, l := range lits {
		allowed[i] = l.text
	}
	first := group[0]
	e := &Error{Pos: first.Pos, Path: first.Path}
	if p := lits[0].pos; p.IsValid() {
		e.Also = []mesh.Pos{p}
	}
	e.Msg, e.Fix = enumMessage(first.Path, value, allowed)
	return e
}

// ownPosition is the position of e that the other errors of its group do
// not have: where its alternative (the allowed value) is written.
func ownPosition(e *Error, group Errors) mesh.Pos {
	for _, p := range append([]mesh.Pos{e.Pos}, e.Also...) {
		shared := true
		for _, o := range group {
			if o != e && !slices.Contains(append([]mesh.Pos{o.Pos}, o.Also...), p) {
				shared = false
				break
			}
		}
		if !shared {
			return p
		}
	}
	return mesh.Pos{}
}

// grpcMethod is a gRPC method path, /package.Service/Method.
var grpcMethod = regexp.MustCompile(`^"/[A-Za-z_][\w.]*/\w+"$`)

func enumMessage(path, value string, allowed []string) (msg, fix string) {
	list := strings.Join(allowed, ", ")
	if strings.HasSuffix(field(path), ".methods") && grpcMethod.MatchString(value) {
		msg = fmt.Sprintf("%s is a gRPC method, not an HTTP method (%s)", value, list)
		where := "paths: [" + value + "]"
		if strings.Contains(path, ".match.") {
			where = "match: path: exact: " + value
		}
		return msg, fmt.Sprintf("put gRPC methods in paths: /pkg.Service/Method (here %s); every gRPC call is a POST", where)
	}
	msg = fmt.Sprintf("%s is not one of the allowed values: %s", value, list)
	for _, a := range allowed {
		if strings.EqualFold(a, value) {
			return msg, fmt.Sprintf("write %s (the values are case-sensitive)", a)
		}
	}
	return msg, "use one of " + list
}

// dropDefaultConflicts removes the errors that come from a default
// alternative (a conflict, of values or of list lengths, with a position
// inside a *value) when the same field has an error that does not: the
// value's real problem.
func dropDefaultConflicts(es Errors, defaults []span) Errors {
	fromDefault := make([]bool, len(es))
	for i, e := range es {
		if _, _, ok := conflict(e.Msg); !ok && !strings.HasPrefix(e.Msg, "incompatible list lengths") {
			continue
		}
		for _, p := range append([]mesh.Pos{e.Pos}, e.Also...) {
			fromDefault[i] = fromDefault[i] || inAny(defaults, p)
		}
	}
	var out Errors
	for i, e := range es {
		if fromDefault[i] && hasOtherError(es, fromDefault, field(e.Path)) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// field is a path without its trailing list indexes: the field whose
// value is the disjunction.
func field(path string) string {
	for strings.HasSuffix(path, "]") {
		i := strings.LastIndex(path, "[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return path
}

func hasOtherError(es Errors, fromDefault []bool, f string) bool {
	for i, e := range es {
		if !fromDefault[i] && (e.Path == f || strings.HasPrefix(e.Path, f+".") || strings.HasPrefix(e.Path, f+"[")) {
			return true
		}
	}
	return false
}

// mergeAlternatives folds, at each path, the conflicts of a value with
// literal alternatives into the error of the constraint the value also
// fails ("invalid value V (...)"): one error whose fix names the literals.
func mergeAlternatives(es Errors) Errors {
	literals := map[*Error][]string{}
	drop := map[*Error]bool{}
	for _, e := range es {
		a, b, ok := conflict(e.Msg)
		if !ok {
			continue
		}
		for _, o := range es {
			if o == e || o.Path != e.Path {
				continue
			}
			if _, _, isConflict := conflict(o.Msg); isConflict {
				continue
			}
			switch {
			case strings.HasPrefix(o.Msg, "invalid value "+b+" "):
				literals[o] = append(literals[o], a)
			case strings.HasPrefix(o.Msg, "invalid value "+a+" "):
				literals[o] = append(literals[o], b)
			default:
				continue
			}
			drop[e] = true
			break
		}
	}
	var out Errors
	for _, e := range es {
		if drop[e] {
			continue
		}
		if lits := literals[e]; len(lits) > 0 {
			c := *e
			alt := "or " + strings.Join(lits, " or ")
			if c.Fix == "" {
				c.Fix = "use a value the schema allows, " + alt
			} else {
				c.Fix += "; " + alt
			}
			e = &c
		}
		out = append(out, e)
	}
	return out
}
