package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"cuelang.org/go/cue"

	"github.com/weft-dev/weft/schema/mesh"
)

// decodeErrors explains why a mesh that CUE validated does not fit the Go
// model: a value the schema's types allow but the model's cannot hold. It
// finds the offending values in v (the error itself does not name map
// keys, so not which service) and reports each where it was written:
//
//   - a duration beyond Go's range (about 292 years, "9999999999h");
//   - a number beyond its Go type (a circuit breaker threshold above
//     4294967295).
//
// An error it cannot place is reported as it is, without a position.
func decodeErrors(err error, v cue.Value, pos mesh.Positions) Errors {
	var out Errors
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if i := strings.LastIndexByte(field, '.'); i >= 0 {
			field = field[i+1:]
		}
		walkLeaves(v, func(path string, leaf cue.Value, label string) {
			if label != field || (leaf.Kind() != cue.IntKind && leaf.Kind() != cue.FloatKind) {
				return
			}
			if s := fmt.Sprint(leaf); s != te.Value && !strings.HasPrefix(te.Value, "number "+s) {
				return
			}
			out = append(out, &Error{
				Pos:  pos.Lookup(path),
				Path: path,
				Msg:  fmt.Sprintf("%s does not fit in %s", leaf, te.Type),
				Fix:  fmt.Sprintf("use a value from 0 to %s", maxOf(te.Type.String())),
			})
		})
	default:
		walkLeaves(v, func(path string, leaf cue.Value, _ string) {
			s, err := leaf.String()
			if err != nil || !durationSyntax.MatchString(s) {
				return
			}
			if _, err := time.ParseDuration(s); err == nil {
				return
			}
			out = append(out, &Error{
				Pos:  pos.Lookup(path),
				Path: path,
				Msg:  fmt.Sprintf("duration %q is longer than a duration can be (about 292 years)", s),
				Fix:  `write a shorter duration; Envoy accepts up to "2562047h47m15s"`,
			})
		})
	}
	if len(out) == 0 {
		return Errors{{Msg: "the mesh does not fit weft's model: " + err.Error()}}
	}
	return out.sorted()
}

// durationSyntax is #Duration of the schema.
var durationSyntax = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`)

func maxOf(goType string) string {
	switch goType {
	case "uint32":
		return "4294967295"
	case "int32":
		return "2147483647"
	}
	return "the largest the field allows"
}

// walkLeaves calls f with the path (as mesh.Positions writes it), the
// value and the label of every scalar below v.
func walkLeaves(v cue.Value, f func(path string, leaf cue.Value, label string)) {
	switch v.Kind() {
	case cue.StructKind:
		it, err := v.Fields()
		if err != nil {
			return
		}
		for it.Next() {
			walkLeaves(it.Value(), f)
		}
	case cue.ListKind:
		it, err := v.List()
		if err != nil {
			return
		}
		for it.Next() {
			walkLeaves(it.Value(), f)
		}
	default:
		sels := v.Path().Selectors()
		label := ""
		if n := len(sels); n > 0 && sels[n-1].IsString() {
			label = sels[n-1].Unquoted()
		}
		f(valuePath(v.Path()), v, label)
	}
}
