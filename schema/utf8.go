package schema

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/build"

	"github.com/weft-dev/weft/schema/mesh"
)

// Bytes that are not UTF-8 never reach a mesh silently. CUE source is UTF-8
// text, but the loader does not reject other bytes: it replaces each with
// U+FFFD, in string literals and labels alike, and interpolating a byte
// string ("\(b)" with b: '\xff') into a string does the same. Envoy would
// then receive U+FFFD where the author meant another character. So the
// loader refuses a source file that is not UTF-8, at the first bad byte of
// each line, and any U+FFFD in the evaluated mesh, which after the first
// check can only come from an interpolated byte string (or was typed as
// such, which weft cannot tell apart).

// maxUTF8Errors bounds the errors reported per file.
const maxUTF8Errors = 10

// checkSourceUTF8 reports the lines of the instance's files (the schema
// overlay aside) that are not UTF-8. files holds what readSource read, by
// slash path below the module root.
func checkSourceUTF8(inst *build.Instance, root string, files map[string][]byte) Errors {
	var out Errors
	for _, f := range inst.BuildFiles {
		rel := f.Filename
		if r, err := filepath.Rel(root, rel); err == nil {
			rel = r
		}
		if inSchema(mesh.Pos{File: rel}) || rel == SchemaFile {
			continue
		}
		b, ok := files[filepath.ToSlash(rel)]
		if !ok || utf8.Valid(b) {
			continue
		}
		out = append(out, invalidUTF8Lines(rel, b)...)
	}
	return out
}

func invalidUTF8Lines(file string, b []byte) Errors {
	var out Errors
	for n, line := range bytes.Split(b, []byte("\n")) {
		for col := 0; col < len(line); {
			r, size := utf8.DecodeRune(line[col:])
			if r != utf8.RuneError || size != 1 {
				col += size
				continue
			}
			out = append(out, &Error{
				Pos: mesh.Pos{File: file, Line: n + 1, Column: col + 1},
				Msg: fmt.Sprintf("byte 0x%02x is not UTF-8: CUE files are UTF-8 text, and CUE would silently turn this byte into U+FFFD", line[col]),
				Fix: `save the file as UTF-8 (for Latin-1: iconv -f latin1 -t utf-8), or write the character as an escape such as "\u00e9"`,
			})
			break // one error per line
		}
		if len(out) >= maxUTF8Errors {
			break
		}
	}
	return out
}

// replacementChar is U+FFFD in UTF-8 (CUE's JSON writes it as is).
var replacementChar = []byte("\uFFFD")

// checkReplacementChars reports every string and label of the mesh that
// holds U+FFFD; js is the mesh as JSON, so that the common case costs one
// scan.
func checkReplacementChars(v cue.Value, js []byte, pos mesh.Positions) Errors {
	if !bytes.Contains(js, replacementChar) {
		return nil
	}
	var out Errors
	var walk func(v cue.Value)
	walk = func(v cue.Value) {
		switch v.Kind() {
		case cue.StructKind:
			it, err := v.Fields()
			if err != nil {
				return
			}
			for it.Next() {
				if sel := it.Selector(); sel.IsString() && strings.ContainsRune(sel.Unquoted(), utf8.RuneError) {
					out = append(out, replacementError(it.Value(), pos, "field name"))
				}
				walk(it.Value())
			}
		case cue.ListKind:
			it, err := v.List()
			if err != nil {
				return
			}
			for it.Next() {
				walk(it.Value())
			}
		case cue.StringKind:
			if s, err := v.String(); err == nil && strings.ContainsRune(s, utf8.RuneError) {
				out = append(out, replacementError(v, pos, "value"))
			}
		}
	}
	walk(v)
	return out
}

func replacementError(v cue.Value, pos mesh.Positions, what string) *Error {
	path := valuePath(v.Path())
	return &Error{
		Pos:  pos.Lookup(path),
		Path: path,
		Msg:  fmt.Sprintf("the %s contains U+FFFD, the replacement character, which CUE writes in place of bytes that are not UTF-8 (for example a byte string such as '\\xff' interpolated into a string)", what),
		Fix:  "interpolate text, not bytes; weft refuses U+FFFD in a mesh because it cannot tell it from a replaced byte",
	}
}

// valuePath writes a value's path the way mesh.Positions keys it.
func valuePath(p cue.Path) string {
	var b strings.Builder
	for _, sel := range p.Selectors() {
		if sel.Type() == cue.IndexLabel {
			b.WriteString("[" + sel.String() + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		if sel.IsString() {
			b.WriteString(mesh.Label(sel.Unquoted()))
		} else {
			b.WriteString(sel.String())
		}
	}
	return b.String()
}
