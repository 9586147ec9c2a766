package schema

import (
	"context"
	"fmt"

	"cuelang.org/go/mod/modfile"
	"cuelang.org/go/mod/module"
)

// noRegistry is the CUE module registry of the loader: there is none. A
// mesh repository imports the CUE standard library, weft's schema and its
// own packages (cue.mod/pkg included); weft never downloads a module while
// loading a revision (no network access, nothing unbounded read).
type noRegistry struct{}

func (noRegistry) err(m string) error {
	return fmt.Errorf("weft does not download CUE modules (%s): copy the package into cue.mod/pkg/<import path>/", m)
}

func (r noRegistry) ModFile(_ context.Context, mv module.Version) (*modfile.File, error) {
	return nil, r.err(mv.String())
}

func (r noRegistry) Fetch(_ context.Context, mv module.Version) (module.SourceLoc, error) {
	return module.SourceLoc{}, r.err(mv.String())
}

func (r noRegistry) ModuleVersions(_ context.Context, mpath string) ([]string, error) {
	return nil, r.err(mpath)
}
