package policies

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"

	"github.com/weft-dev/weft/schema/mesh"
)

// Error is a problem with the policies themselves: a Rego file that does
// not parse or compile, a data file that does not load, a configuration
// that names no rule. Pos is in the policy file when OPA says where.
type Error struct {
	Pos mesh.Pos
	Msg string
}

func (e *Error) Error() string {
	if !e.Pos.IsValid() {
		return e.Msg
	}
	if e.Pos.Line == 0 {
		return e.Pos.File + ": " + e.Msg
	}
	return e.Pos.String() + ": " + e.Msg
}

// Errors are all the problems found while loading the policies. The
// engine is not built when there is any: a broken policy is never skipped.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Findings reports the errors as findings of the pseudo rule RulePolicy.
func (es Errors) Findings() []Finding {
	out := make([]Finding, len(es))
	for i, e := range es {
		out[i] = Finding{Rule: RulePolicy, Severity: Deny, Msg: e.Msg, Pos: e.Pos,
			Fix: "fix the policy file: `opa check` and `opa test` on the folder show the same errors"}
	}
	return out
}

// IsErrors reports whether err lists problems of the policies (as opposed
// to an unexpected failure).
func IsErrors(err error) bool {
	var es Errors
	return errors.As(err, &es)
}

// names maps OPA's file names (as the loader saw them) to the names weft
// reports: relative to the mesh repository's root for files inside it,
// "weft:policies/bundle/..." for the embedded bundle, absolute otherwise.
type names struct {
	root string
}

const bundlePrefix = "weft:policies/"

func (n names) display(file string) string {
	if strings.HasPrefix(file, "bundle/") {
		return bundlePrefix + file
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return file
	}
	if n.root != "" {
		if rel, err := filepath.Rel(n.root, abs); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.ToSlash(rel)
		}
	}
	return abs
}

func (n names) pos(loc *ast.Location) mesh.Pos {
	if loc == nil || loc.File == "" {
		return mesh.Pos{}
	}
	return mesh.Pos{File: n.display(loc.File), Line: loc.Row, Column: loc.Col}
}

// fromOPA converts OPA's loader and compiler errors into Errors with
// weft's file names.
func (n names) fromOPA(err error) Errors {
	var out Errors
	var add func(error)
	add = func(err error) {
		var le loader.Errors
		var aes ast.Errors
		var ae *ast.Error
		switch {
		case errors.As(err, &le):
			for _, e := range le {
				add(e)
			}
		case errors.As(err, &aes):
			for _, e := range aes {
				add(e)
			}
		case errors.As(err, &ae):
			msg := ae.Code + ": " + ae.Message
			if ae.Details != nil {
				if lines := ae.Details.Lines(); len(lines) > 0 {
					msg += "\n\t" + strings.Join(lines, "\n\t")
				}
			}
			out = append(out, &Error{Pos: n.pos(ae.Location), Msg: msg})
		default:
			out = append(out, &Error{Msg: n.rewrite(err.Error())})
		}
	}
	add(err)
	return out
}

// rewrite replaces the loader's file names in a plain error message.
func (n names) rewrite(msg string) string {
	if n.root != "" {
		msg = strings.ReplaceAll(msg, n.root+string(filepath.Separator), "")
	}
	return strings.ReplaceAll(msg, "bundle/", bundlePrefix+"bundle/")
}

func errorf(format string, args ...any) *Error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}
