package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/load"

	"github.com/weft-dev/weft/schema/mesh"
)

// Options select what to load.
type Options struct {
	// Env names the environment overlay: DIR/environments/<Env> (or
	// DIR/<Env>) unified with the base. Empty loads the directory as is.
	Env string
	// Revision is recorded in the model (the git commit, for example).
	Revision string
}

// Load reads the mesh repository at dir and returns its validated model.
// The error, if any, is an Errors value listing every problem found.
func Load(dir string, opts Options) (*mesh.Model, error) {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	instDir, err := envDir(absDir, opts.Env)
	if err != nil {
		return nil, err
	}
	root := moduleRoot(instDir, absDir)
	v, pos, err := evaluate(instDir, root)
	if err != nil {
		return nil, err
	}
	m, err := decode(v, root)
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

// envDir finds the directory of an environment.
func envDir(dir, env string) (string, error) {
	if env == "" {
		return dir, nil
	}
	if strings.ContainsAny(env, `/\`) || env == "." || env == ".." {
		return "", fmt.Errorf("environment %q: must be a directory name such as dev", env)
	}
	for _, d := range []string{filepath.Join(dir, "environments", env), filepath.Join(dir, env)} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d, nil
		}
	}
	return "", fmt.Errorf("environment %q: no directory %s or %s (known: %s)",
		env, filepath.Join(dir, "environments", env), filepath.Join(dir, env), strings.Join(Environments(dir), ", "))
}

// Environments lists the environment overlays of a mesh repository: the
// subdirectories of DIR/environments, or else of DIR, holding CUE files.
func Environments(dir string) []string {
	for _, base := range []string{filepath.Join(dir, "environments"), dir} {
		var envs []string
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if !e.IsDir() || e.Name() == "cue.mod" || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if files, _ := filepath.Glob(filepath.Join(base, e.Name(), "*.cue")); len(files) > 0 {
				envs = append(envs, e.Name())
			}
		}
		if len(envs) > 0 {
			sort.Strings(envs)
			return envs
		}
	}
	return nil
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

// evaluate loads and evaluates the instance in dir with weft's own schema
// overlaid, so the repository's copy (written by `weft init`) can never
// disagree with the binary that compiles it.
func evaluate(dir, root string) (cue.Value, mesh.Positions, error) {
	overlay := map[string]load.Source{
		filepath.Join(root, SchemaFile): load.FromBytes(schemaSource),
	}
	modFile := filepath.Join(root, "cue.mod", "module.cue")
	if _, err := os.Stat(modFile); err != nil {
		overlay[modFile] = load.FromString("module: \"weft.local/mesh\"\nlanguage: version: \"v0.17.0\"\n")
	}
	cfg := &load.Config{Dir: dir, ModuleRoot: root, Overlay: overlay}
	insts := load.Instances([]string{"."}, cfg)
	if len(insts) != 1 {
		return cue.Value{}, nil, fmt.Errorf("load %s: expected one CUE package, found %d", dir, len(insts))
	}
	inst := insts[0]
	if inst.Err != nil {
		return cue.Value{}, nil, fromCUE(inst.Err, root)
	}
	if es := checkImport(inst, root); len(es) > 0 {
		return cue.Value{}, nil, es
	}
	pos, es := positions(inst.Files, root)
	if len(es) > 0 {
		return cue.Value{}, nil, es.sorted()
	}
	v := cuecontext.New().BuildInstance(inst)
	if err := v.Err(); err != nil {
		return cue.Value{}, nil, preferWritten(simplify(fromCUE(err, root), spansOf(inst.Files, root)), pos)
	}
	mv := v.LookupPath(cue.ParsePath("mesh"))
	if !mv.Exists() {
		return cue.Value{}, nil, Errors{{
			Pos:  fileStart(inst, root),
			Path: "mesh",
			Msg:  "no mesh field in package " + inst.PkgName,
			Fix:  `declare the mesh: import "weft.dev/weft" and write mesh: weft.#Mesh & {name: ..., trustDomain: ..., services: {...}}`,
		}}
	}
	if err := mv.Validate(cue.Concrete(true), cue.Final()); err != nil {
		return cue.Value{}, nil, preferWritten(simplify(fromCUE(err, root), spansOf(inst.Files, root)), pos)
	}
	return mv, pos, nil
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

// decode turns the validated CUE value into the model and records where
// every field was written.
func decode(v cue.Value, root string) (*mesh.Model, error) {
	var m mesh.Model
	// MarshalJSON + encoding/json allocates a third less than Value.Decode
	// (measured on the 1,000-service benchmark); the JSON tags are the contract.
	b, err := v.MarshalJSON()
	if err == nil {
		err = json.Unmarshal(b, &m)
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
