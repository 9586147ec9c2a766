package tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
)

// layering lists, for each pipeline folder of DESIGN.md, the weft folders
// (import-path prefixes relative to the module) that its packages may depend
// on. Data flows one way, top to bottom:
//
//	schema -> policies -> compiler -> reconciler -> sidecar
//
// Every folder may also use itself and internal/ (leaf helpers). The check is
// transitive: everything a package pulls in, directly or through any other
// weft package (internal/ included), must be allowed for the package's folder,
// so a helper cannot smuggle a lower stage into a higher one. Test-only
// imports (_test.go files) count too: a suite that needs several stages at
// once belongs in tests/. Folders not listed here (cmd/, tests/, internal/,
// and whatever composes a control plane with sidecars for `weft up`) may
// import anything, but no pipeline folder may import them — in particular
// nothing in the pipeline imports cmd/.
var layering = map[string][]string{
	"schema":     {"schema"},
	"policies":   {"schema", "policies"},
	"compiler":   {"schema", "compiler"},
	"reconciler": {"schema", "policies", "compiler", "reconciler"},
	// The sidecar may use the control plane's API types and clients only.
	"sidecar": {"schema", "compiler", "reconciler/api", "sidecar"},
}

// everywhere is allowed for every folder.
var everywhere = []string{"internal"}

// forbiddenExternal lists, per folder, third-party import-path prefixes its
// packages must not build with (tests excepted): the compiler stays pure
// (Kubernetes API types yes, clients no), and the API types stay cheap to
// import for the sidecar and clients.
var forbiddenExternal = map[string][]string{
	"schema":         {"k8s.io/client-go", "sigs.k8s.io/controller-runtime"},
	"policies":       {"k8s.io/client-go", "sigs.k8s.io/controller-runtime"},
	"compiler":       {"k8s.io/client-go", "sigs.k8s.io/controller-runtime"},
	"reconciler/api": {"k8s.io/client-go", "sigs.k8s.io/controller-runtime"},
}

type goPackage struct {
	ImportPath   string
	Dir          string
	Imports      []string
	Deps         []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

func TestLayering(t *testing.T) {
	module, pkgs := listModule(t)

	// Sanity: the table must talk about the folders that exist.
	if _, ok := pkgs[module+"/schema"]; !ok {
		t.Fatalf("go list found no %s/schema package: is the test looking at the right module?", module)
	}

	rel := func(path string) (string, bool) {
		if path == module {
			return "", true
		}
		r, ok := strings.CutPrefix(path, module+"/")
		return r, ok
	}
	under := func(r, prefix string) bool { return r == prefix || strings.HasPrefix(r, prefix+"/") }

	names := make([]string, 0, len(pkgs))
	for name := range pkgs {
		names = append(names, name)
	}
	sort.Strings(names)

	checked := 0
	for _, name := range names {
		p := pkgs[name]
		r, _ := rel(name)
		top, _, _ := strings.Cut(r, "/")
		allowed, ok := layering[top]
		if !ok {
			continue
		}
		checked++
		allowed = append(slices.Clone(allowed), everywhere...)

		// Everything this package's build or its tests pull in.
		deps := map[string]bool{}
		for _, d := range p.Deps {
			deps[d] = true
		}
		for _, ti := range slices.Concat(p.TestImports, p.XTestImports) {
			deps[ti] = true
			if q, ok := pkgs[ti]; ok {
				for _, d := range q.Deps {
					deps[d] = true
				}
			}
		}
		delete(deps, name)

		var bad []string
		for d := range deps {
			dr, ok := rel(d)
			if !ok {
				continue // standard library or third party
			}
			if !slices.ContainsFunc(allowed, func(a string) bool { return under(dr, a) }) {
				bad = append(bad, d)
			}
		}
		sort.Strings(bad)
		for _, d := range bad {
			t.Errorf("%s must not depend on %s (%s/ may use only %s/): %s",
				r, strings.TrimPrefix(d, module+"/"), top, strings.Join(allowed, "/, "),
				strings.ReplaceAll(importChain(pkgs, name, d), module+"/", ""))
		}
	}
	for _, name := range names {
		r, _ := rel(name)
		for folder, prefixes := range forbiddenExternal {
			if !under(r, folder) {
				continue
			}
			for _, d := range pkgs[name].Deps {
				for _, pre := range prefixes {
					if d == pre || strings.HasPrefix(d, pre+"/") {
						t.Errorf("%s must not build with %s (%s/ stays free of %s): %s", r, d, folder, pre,
							strings.ReplaceAll(importChain(pkgs, name, d), module+"/", ""))
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatalf("no package under %v: nothing was checked", keys(layering))
	}
	t.Logf("checked %d pipeline packages of %d in %s", checked, len(pkgs), module)
}

// listModule runs `go list -e -json ./...` at the module root. -e keeps a
// package that a colleague is mid-way through editing in the listing (with
// its imports) instead of failing the whole check.
func listModule(t *testing.T) (module string, pkgs map[string]*goPackage) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	root := moduleRoot(t)

	out := run(t, root, goBin, "list", "-m", "-f", "{{.Path}}")
	module = strings.TrimSpace(out)

	out = run(t, root, goBin, "list", "-e", "-json=ImportPath,Dir,Imports,Deps,TestImports,XTestImports,Error", "./...")
	pkgs = map[string]*goPackage{}
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var p goPackage
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		if p.Error != nil {
			t.Logf("note: go list reports an error in %s (checked anyway): %s", p.ImportPath, p.Error.Err)
		}
		pkgs[p.ImportPath] = &p
	}
	return module, pkgs
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	return filepath.Dir(filepath.Dir(file))
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// importChain shows one import path from pkg to dep, e.g.
// "schema/x -> internal/y -> compiler", following direct imports (test
// imports for the first step).
func importChain(pkgs map[string]*goPackage, from, to string) string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		p, ok := pkgs[cur]
		if !ok {
			continue
		}
		next := p.Imports
		if cur == from {
			next = slices.Concat(p.Imports, p.TestImports, p.XTestImports)
		}
		for _, n := range next {
			if _, seen := prev[n]; seen {
				continue
			}
			prev[n] = cur
			if n == to {
				var chain []string
				for c := to; c != ""; c = prev[c] {
					chain = append(chain, c)
				}
				slices.Reverse(chain)
				return strings.Join(chain, " -> ")
			}
			queue = append(queue, n)
		}
	}
	return from + " -> ... -> " + to
}

func keys(m map[string][]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
