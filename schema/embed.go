package schema

import (
	_ "embed"
	"path"
)

// ImportPath is the CUE import path of the schema.
const ImportPath = "weft.dev/weft"

// SchemaFile is the schema's path inside a mesh repository.
var SchemaFile = path.Join("cue.mod", "pkg", ImportPath, "weft.cue")

//go:embed cue/weft.cue
var schemaSource []byte

// Source returns the CUE source of the schema.
func Source() []byte { return append([]byte(nil), schemaSource...) }
