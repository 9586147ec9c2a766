package schema

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"cuelang.org/go/cue/ast"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"

	"github.com/weft-dev/weft/schema/mesh"
)

// Error is one problem in a mesh definition.
type Error struct {
	// Pos is where the problem was written; Also lists other positions
	// involved (the other side of a conflict, the schema constraint).
	Pos  mesh.Pos
	Also []mesh.Pos
	// Path is the CUE field path ("mesh.services.orders.routes.create.to").
	Path string
	// Msg says what is wrong, Fix what would make it right.
	Msg string
	Fix string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	for _, p := range e.Also {
		fmt.Fprintf(&b, "\n\tsee also: %s", p)
	}
	if e.Fix != "" {
		fmt.Fprintf(&b, "\n\tfix: %s", e.Fix)
	}
	return b.String()
}

// Errors is every problem found in one load, sorted by position.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// WithBase returns the errors with their file names joined to base, so that
// a CLI can print paths relative to the user's working directory.
func (es Errors) WithBase(base string) Errors {
	out := make(Errors, len(es))
	for i, e := range es {
		c := *e
		c.Pos = rebase(base, c.Pos)
		c.Also = make([]mesh.Pos, len(e.Also))
		for j, p := range e.Also {
			c.Also[j] = rebase(base, p)
		}
		out[i] = &c
	}
	return out
}

func rebase(base string, p mesh.Pos) mesh.Pos {
	if p.IsValid() && !filepath.IsAbs(p.File) {
		p.File = filepath.Join(base, p.File)
	}
	return p
}

// Sorted orders es in place by file, line, column, then message, and
// returns it: the order every caller prints errors in.
func (es Errors) Sorted() Errors { return es.sorted() }

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		return es[i].Msg < es[j].Msg
	})
	return es
}

// fromCUE converts CUE's errors into weft errors with positions relative to
// root, user positions first and fix hints for the common mistakes.
func fromCUE(err error, root string) Errors {
	var out Errors
	seen := map[string]bool{}
	for _, ce := range cueerrors.Errors(err) {
		format, args := ce.Msg()
		msg := fmt.Sprintf(format, args...)
		path := cuePath(ce.Path())
		if isDisjunctionSummary(msg) {
			continue // its parts are reported on their own
		}
		importFailed := msg == "import failed"
		if importFailed {
			// CUE's message is only "import failed", on the path of
			// the importing package; the cause is the wrapped error.
			path = ""
		}
		msg = withCause(ce, msg, root)
		var user, schema []mesh.Pos
		for _, tp := range cueerrors.Positions(ce) {
			p := relPos(tp, root)
			if !p.IsValid() {
				continue
			}
			if inSchema(p) {
				schema = append(schema, p)
			} else {
				user = append(user, p)
			}
		}
		e := &Error{Path: path, Msg: msg}
		all := append(user, schema...)
		if len(all) > 0 {
			e.Pos, e.Also = all[0], all[1:]
		}
		e.Fix = cueFix(msg, path, len(user) >= 2 && len(schema) == 0)
		if importFailed {
			e.Fix = importFix
		}
		key := e.Error()
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, e)
	}
	return out.sorted()
}

func relPos(tp token.Pos, root string) mesh.Pos {
	if !tp.IsValid() || tp.Filename() == "" {
		return mesh.Pos{}
	}
	f := tp.Filename()
	if r, err := filepath.Rel(root, f); err == nil && !strings.HasPrefix(r, "..") {
		f = r
	}
	return mesh.Pos{File: f, Line: tp.Line(), Column: tp.Column()}
}

// cuePath renders a CUE error path with list indices in brackets, the
// notation mesh.Positions uses.
func cuePath(sels []string) string {
	var b strings.Builder
	for _, s := range sels {
		if isIndex(s) {
			b.WriteString("[" + s + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

func isIndex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

var disjunctionSummary = regexp.MustCompile(`^\d+ errors in empty disjunction`)

func isDisjunctionSummary(msg string) bool { return disjunctionSummary.MatchString(msg) }

// hints map CUE messages to what the user should do; the first match wins.
var hints = []struct {
	re  *regexp.Regexp
	fix func(m []string, path string, betweenFiles bool) string
}{
	{regexp.MustCompile(`field not allowed`), func(_ []string, path string, _ bool) string {
		if isRoutePath(parentOf(path)) && lastElem(path) == "name" {
			return "remove name: a route's name is its key in routes (routes: {<name>: {match: ..., to: ...}})"
		}
		return fmt.Sprintf("remove %q or fix its spelling: the schema (weft.dev/weft) does not define it", lastElem(path))
	}},
	{regexp.MustCompile(`mismatched types list and struct`), func(_ []string, path string, _ bool) string {
		if strings.HasSuffix(path, ".routes") {
			return "routes is now a map keyed by route name: write routes: {<name>: {match: ..., to: ...}}"
		}
		return "use a struct ({...}), not a list"
	}},
	{regexp.MustCompile(`conflicting values (.+) and (.+) \(mismatched types (\S+) and (\S+)\)`), func(m []string, _ string, _ bool) string {
		return fmt.Sprintf("use a value of the type the schema expects (%s or %s, whichever is not yours)", m[3], m[4])
	}},
	{regexp.MustCompile(`conflicting values (.+) and (.+)`), func(m []string, _ string, betweenFiles bool) string {
		if betweenFiles {
			return fmt.Sprintf("two files set different values (%s and %s); keep one, or mark the base's value as a default (*value | _) so that an environment can override it", m[1], m[2])
		}
		return fmt.Sprintf("use the value the schema allows here (%s or %s, whichever is not yours)", m[1], m[2])
	}},
	{regexp.MustCompile(`=~"\^\(\[0-9\]\+`), func(_ []string, _ string, _ bool) string {
		return `write a duration such as "250ms", "5s" or "1m30s"`
	}},
	{regexp.MustCompile(`=~"\^\[a-z\]\(\[-a-z0-9\]`), func(_ []string, _ string, _ bool) string {
		return "use a DNS label: lowercase letters, digits and '-', starting with a letter, at most 63 characters"
	}},
	{regexp.MustCompile(`=~"\^\(\[A-Za-z0-9\]`), func(_ []string, _ string, _ bool) string {
		return `write a host name or IP address with an optional port, such as "api.example.com" or "10.0.0.7:8443"`
	}},
	{regexp.MustCompile(`out of bound ([^)]+)`), func(m []string, _ string, _ bool) string {
		return fmt.Sprintf("use a value %s", m[1])
	}},
	{regexp.MustCompile(`does not match`), func(_ []string, _ string, _ bool) string {
		return "change the value to match the pattern the schema gives"
	}},
	{regexp.MustCompile(`MaxFields\(1\)`), func(_ []string, _ string, _ bool) string {
		return "set exactly one of the alternatives (for a path: prefix, exact or regex)"
	}},
	{regexp.MustCompile(`MinFields\(1\)`), func(_ []string, path string, _ bool) string {
		return fmt.Sprintf("give %q at least one entry", lastElem(path))
	}},
	{regexp.MustCompile(`incomplete value|non-concrete value|cannot reference|not concrete`), func(_ []string, path string, _ bool) string {
		return fmt.Sprintf("set a concrete value for %q", lastElem(path))
	}},
	{regexp.MustCompile(`field is required but not present`), func(_ []string, path string, _ bool) string {
		if lastElem(path) == "match" && isRoutePath(parentOf(path)) {
			return fmt.Sprintf("add match to route %s (match: {} matches every request); if it is meant to change a route of the base, "+
				"the base has no route %s (any more): use the route's current name", lastElem(parentOf(path)), lastElem(parentOf(path)))
		}
		return fmt.Sprintf("add the required field %q", lastElem(path))
	}},
	{regexp.MustCompile(`^expected |unexpected|illegal|missing ',' |string literal not terminated`), func(_ []string, _ string, _ bool) string {
		return "fix the CUE syntax at this position (`cue fmt` reports the same error)"
	}},
}

// cueFix is the fix for a CUE message at path; betweenFiles says that
// every position of the error is in the user's files (two files set the
// value), none in the schema.
func cueFix(msg, path string, betweenFiles bool) string {
	for _, h := range hints {
		if m := h.re.FindStringSubmatch(msg); m != nil {
			return h.fix(m, path, betweenFiles)
		}
	}
	return ""
}

// parentOf is path without its last element.
func parentOf(path string) string {
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return ""
}

// isRoutePath reports whether path is one route of a service,
// mesh.services.<name>.routes.<route>.
func isRoutePath(path string) bool { return isRoutesPath(parentOf(path)) }

func lastElem(path string) string {
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return strings.TrimSuffix(path[i+1:], "]")
	}
	return path
}

// attachEmbeds returns the loader's refusals; a refused file that a CUE
// error names (an @embed of it) gets that error's position, the line of
// the @embed attribute, first.
func attachEmbeds(refused, cueErrs Errors) Errors {
	return refused
}

// placeUnpositioned gives an error that CUE reported without a position
// (a structural cycle in a definition) the position where its path is
// written in the package's files.
func placeUnpositioned(es Errors, files []*ast.File, root string) Errors {
	var all mesh.Positions
	for _, e := range es {
		if e.Pos.IsValid() || e.Path == "" {
			continue
		}
		if all == nil {
			all, _ = walkPositions(files, root, true)
		}
		if p := all.Lookup(e.Path); p.IsValid() {
			e.Pos = p
		}
	}
	return es.sorted()
}

const importFix = "import the CUE standard library, weft.dev/weft or a package of this module (cue.mod/pkg included): weft does not download CUE modules"

// withCause appends to msg the causes CUE wrapped in ce and left out of
// its message (`import failed` alone, `@embed` alone): `import failed:
// cannot find package "example.com/x": ...`.
func withCause(ce cueerrors.Error, msg, root string) string {
	for err := errors.Unwrap(ce); err != nil; err = errors.Unwrap(err) {
		text := err.Error()
		if ie, ok := err.(cueerrors.Error); ok {
			f, a := ie.Msg()
			text = fmt.Sprintf(f, a...)
		}
		text = strings.TrimSpace(strings.ReplaceAll(text, root+string(filepath.Separator), ""))
		if text != "" && !strings.Contains(msg, text) {
			msg += ": " + text
		}
	}
	return msg
}
