package schema

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/load"

	"github.com/weft-dev/weft/schema/mesh"
)

// Options select what to load.
type Options struct {
	// Env names the environment overlay: DIR/environments/<Env> (or
	// DIR/<Env>) unified with the base. Empty loads the directory as is,
	// or, when the directory is itself an environment directory of its
	// module, that environment (ResolveEnv).
	Env string
	// Revision is recorded in the model (the git commit, for example).
	Revision string
	// Limits bound what is read (zero: the defaults).
	Limits Limits
}

// Load reads the mesh repository at dir and returns its validated model.
// The error, if any, is an Errors value listing every problem found.
func Load(dir string, opts Options) (*mesh.Model, error) {
	return LoadContext(context.Background(), dir, opts)
}

// LoadContext is Load whose reading of files stops when ctx ends (the
// error then wraps ctx.Err()). CUE's evaluation itself cannot be
// interrupted: a caller that needs a deadline runs LoadContext where an
// overrun can be abandoned (package reconciler/pipeline does).
//
// Only regular files inside the CUE module are read, within opts.Limits:
// a symbolic link out of the module, a device, FIFO or socket, a file
// over the per-file limit or a read past the total limit is an Error
// naming the file — for CUE files and @embed alike.
func LoadContext(ctx context.Context, dir string, opts Options) (*mesh.Model, error) {
	dir, opts.Env = ResolveEnv(dir, opts.Env)
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	instDir, err := EnvDir(absDir, opts.Env)
	if err != nil {
		return nil, err
	}
	root := moduleRoot(instDir, absDir)
	v, pos, vroot, err := evaluate(ctx, instDir, root, opts.Limits)
	if err != nil {
		return nil, err
	}
	m, err := decode(v, vroot, pos)
	if err != nil {
		return nil, err
	}
	m.Positions = pos
	m.Environment, m.Revision = opts.Env, opts.Revision
	resolveDefaults(m)
	if es := check(m, v); len(es) > 0 {
		return nil, es.sorted()
	}
	return m, nil
}

// moduleRoot is the nearest directory at or above dir holding cue.mod, or
// fallback: a bare directory of CUE files loads as its own module.
func moduleRoot(dir, fallback string) string {
	for d := dir; ; {
		if fi, err := os.Stat(filepath.Join(d, "cue.mod")); err == nil && fi.IsDir() {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return fallback
		}
		d = parent
	}
}

// evaluate loads and evaluates the instance in dir. The module is read
// by readSource alone; cue/load sees those files only, as an overlay on a
// directory that does not exist on disk (so it cannot fall back to
// reading anything itself), with weft's own schema at SchemaFile: the
// repository's copy (written by `weft init`) can never disagree with the
// binary that compiles it. No CUE registry is consulted (noRegistry).
// Positions are relative to the module root either way.
func evaluate(ctx context.Context, dir, root string, limits Limits) (v cue.Value, pos mesh.Positions, vroot string, err error) {
	src, err := readSource(ctx, root, limits)
	if err != nil {
		return cue.Value{}, nil, "", fmt.Errorf("load %s: %w", root, err)
	}
	if r := src.Refused(); len(r) > 0 {
		return cue.Value{}, nil, "", r
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return cue.Value{}, nil, "", fmt.Errorf("load %s: %w", dir, err)
	}
	vroot, cleanup, err := virtualRoot()
	if err != nil {
		return cue.Value{}, nil, "", err
	}
	defer cleanup()
	overlay := make(map[string]load.Source, len(src.files)+2)
	for name, b := range src.files {
		overlay[filepath.Join(vroot, filepath.FromSlash(name))] = load.FromBytes(b)
	}
	overlay[filepath.Join(vroot, SchemaFile)] = load.FromBytes(schemaSource)
	if _, ok := src.files["cue.mod/module.cue"]; !ok {
		overlay[filepath.Join(vroot, "cue.mod", "module.cue")] = load.FromString("module: \"weft.local/mesh\"\nlanguage: version: \"v0.17.0\"\n")
	}
	cfg := &load.Config{Dir: filepath.Join(vroot, rel), ModuleRoot: vroot, Overlay: overlay, Registry: noRegistry{}}
	insts := load.Instances([]string{"."}, cfg)
	if len(insts) != 1 {
		return cue.Value{}, nil, "", fmt.Errorf("load %s: expected one CUE package, found %d", dir, len(insts))
	}
	inst := insts[0]
	if inst.Err != nil {
		return cue.Value{}, nil, "", fromCUE(inst.Err, vroot)
	}
	if es := checkImport(inst, vroot); len(es) > 0 {
		return cue.Value{}, nil, "", es
	}
	if es := checkSourceUTF8(inst, vroot, src.files); len(es) > 0 {
		return cue.Value{}, nil, "", es.sorted()
	}
	pos, es := positions(inst.Files, vroot)
	if len(es) > 0 {
		return cue.Value{}, nil, "", es.sorted()
	}
	v = cuecontext.New().BuildInstance(inst)
	if err := v.Err(); err != nil {
		return cue.Value{}, nil, "", placeUnpositioned(preferWritten(simplify(fromCUE(err, vroot), spansOf(inst.Files, vroot)), pos), inst.Files, vroot)
	}
	mv := v.LookupPath(cue.ParsePath("mesh"))
	if !mv.Exists() {
		return cue.Value{}, nil, "", Errors{{
			Pos:  fileStart(inst, vroot),
			Path: "mesh",
			Msg:  "no mesh field in package " + inst.PkgName,
			Fix:  `declare the mesh: import "weft.dev/weft" and write mesh: weft.#Mesh & {name: ..., trustDomain: ..., services: {...}}`,
		}}
	}
	if err := mv.Validate(cue.Concrete(true), cue.Final()); err != nil {
		return cue.Value{}, nil, "", placeUnpositioned(preferWritten(simplify(fromCUE(err, vroot), spansOf(inst.Files, vroot)), pos), inst.Files, vroot)
	}
	return mv, pos, vroot, nil
}

// virtualRoot returns a path that does not exist on disk and that no one
// else can create (it is inside a fresh directory of mode 0700): the
// loader's overlay is mounted there, so that cue/load, which reads the
// disk for whatever its overlay lacks, finds nothing but the overlay.
func virtualRoot() (string, func(), error) {
	tmp, err := os.MkdirTemp("", "weft-load-")
	if err != nil {
		return "", nil, fmt.Errorf("load: %w", err)
	}
	return filepath.Join(tmp, "module"), func() { os.RemoveAll(tmp) }, nil
}

// preferWritten makes the primary position of each error the place where
// its field was written. CUE lists the positions of every conjunct, and
// the first may be the `mesh: weft.#Mesh &` reference that brought the
// constraint, or only the schema's. Among CUE's positions the one on the
// field's own line wins (it has the value's column); otherwise the
// field's (or its nearest written ancestor's) position is used.
func preferWritten(es Errors, pos mesh.Positions) Errors {
	for _, e := range es {
		written := pos.Lookup(e.Path)
		if !written.IsValid() {
			continue
		}
		all := append([]mesh.Pos{e.Pos}, e.Also...)
		best := -1
		for i, p := range all {
			if p.File == written.File && p.Line == written.Line {
				best = i
				break
			}
		}
		if best < 0 {
			if e.Pos.IsValid() && !inSchema(e.Pos) {
				continue // CUE named a user position off the field's line: keep it
			}
			all = append([]mesh.Pos{written}, all...)
			best = 0
		}
		e.Pos = all[best]
		e.Also = e.Also[:0]
		for i, p := range all {
			if i != best && p.IsValid() {
				e.Also = append(e.Also, p)
			}
		}
	}
	return es.sorted()
}

// checkImport insists that the package imports the schema: a mesh value
// not constrained by #Mesh would pass CUE and fail in confusing ways later.
func checkImport(inst *build.Instance, root string) Errors {
	for _, imp := range inst.ImportPaths {
		if imp == ImportPath {
			return nil
		}
	}
	return Errors{{
		Pos:  fileStart(inst, root),
		Path: "mesh",
		Msg:  fmt.Sprintf("package %s does not import %q", inst.PkgName, ImportPath),
		Fix:  `add import "weft.dev/weft" and write mesh: weft.#Mesh & {...}`,
	}}
}

func fileStart(inst *build.Instance, root string) mesh.Pos {
	if len(inst.BuildFiles) == 0 {
		return mesh.Pos{File: ".", Line: 1, Column: 1}
	}
	f := inst.BuildFiles[0].Filename
	if r, err := filepath.Rel(root, f); err == nil {
		f = r
	}
	return mesh.Pos{File: f, Line: 1, Column: 1}
}

// decode turns the validated CUE value into the model; a U+FFFD anywhere
// in it is an error (utf8.go).
func decode(v cue.Value, root string, pos mesh.Positions) (*mesh.Model, error) {
	var m mesh.Model
	// MarshalJSON + encoding/json allocates a third less than Value.Decode
	// (measured on the 1,000-service benchmark); the JSON tags are the contract.
	b, err := v.MarshalJSON()
	if err == nil {
		if es := checkReplacementChars(v, b, pos); len(es) > 0 {
			return nil, es.sorted()
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, decodeErrors(err, v, pos)
		}
	}
	if err != nil {
		var es Errors
		if es = fromCUE(err, root); len(es) == 0 {
			return nil, fmt.Errorf("decode mesh: %w", err)
		}
		return nil, es
	}
	for name, s := range m.Services {
		s.Name = name
		if s.Authz != nil {
			allow := v.LookupPath(cue.MakePath(cue.Str("services"), cue.Str(name), cue.Str("authz"), cue.Str("allow")))
			s.Authz.AllowSet = allow.Exists()
		}
	}
	return &m, nil
}

// resolveDefaults fills every field a service left unset from the mesh
// defaults, so that consumers never consult Defaults.
func resolveDefaults(m *mesh.Model) {
	for name, s := range m.Services {
		*s = mesh.Resolve(name, *s, m.Defaults)
	}
}

// IsErrors reports whether err is a list of definition errors (as opposed
// to an I/O failure).
func IsErrors(err error) bool {
	var es Errors
	return errors.As(err, &es)
}

// ModuleRoot returns the absolute module root of the mesh repository at
// dir: positions in errors and in the model are relative to it.
func ModuleRoot(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	return moduleRoot(abs, abs)
}
