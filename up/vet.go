package up

import (
	"context"
	"fmt"
	"strings"

	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// PolicyGate is the policy gate of `weft vet`: the default bundle, the
// repository's policies/ folder and extra folders, evaluated on the
// model; any deny finding rejects the revision with the findings'
// file:line. Warnings are not reported here.
func PolicyGate(extra []string) GateFunc {
	return func(ctx context.Context, dir string) (xds.VetFunc, error) {
		eng, err := policies.New(ctx, policies.Options{Dirs: policies.PolicyDirs(dir, extra), Root: schema.ModuleRoot(dir)})
		if err != nil {
			return nil, err
		}
		return func(m *mesh.Model) error {
			fs, err := eng.Eval(ctx, policies.Input{Model: m})
			if err != nil {
				return err
			}
			var denies denyError
			for _, f := range fs {
				if f.Severity == policies.Deny {
					denies = append(denies, f)
				}
			}
			if len(denies) > 0 {
				return denies
			}
			return nil
		}, nil
	}
}

// denyError is the deny findings of a revision; it lists them with their
// positions for the status (xds.ProblemLister).
type denyError []policies.Finding

func (d denyError) Error() string {
	lines := make([]string, len(d))
	for i, f := range d {
		lines[i] = f.String()
	}
	return fmt.Sprintf("%d policy deny finding(s):\n%s", len(d), strings.Join(lines, "\n"))
}

func (d denyError) Problems() []status.Problem {
	out := make([]status.Problem, len(d))
	for i, f := range d {
		out[i] = status.Problem{File: f.Pos.File, Line: f.Pos.Line, Column: f.Pos.Column, Path: f.Path,
			Message: f.Rule + ": " + f.Msg, Fix: f.Fix}
	}
	return out
}

var _ xds.ProblemLister = denyError(nil)
