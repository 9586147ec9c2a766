package policies

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/weft-dev/weft/schema/mesh"
)

// bundleFS is the default policy bundle: the rules, their tests (left
// out when compiling, run by `opa test`) and data.json, the default
// configuration.
//
//go:embed bundle
var bundleFS embed.FS

// Options say which policies an engine compiles besides the default bundle.
type Options struct {
	// Dirs are folders of Rego (.rego) and data (.json, .yaml) files
	// compiled together with the default bundle: a mesh repository's
	// policies/ folder, `weft vet --policy DIR`. Every one must exist.
	Dirs []string
	// Root is the mesh repository's root: policy files inside it are
	// reported relative to it, like the positions of the mesh.
	Root string
}

// Rule is one rule: a Rego package below weft.rules that has deny or warn
// rules.
type Rule struct {
	// ID is the package path below weft.rules, dot separated.
	ID string
	// Title, Description and Fix come from the package's METADATA block
	// (title, description, custom.fix).
	Title, Description, Fix string
	// Kinds are its deny/warn rule names ("deny", "warn_drift", ...).
	Kinds []string
	// Severity is Deny when any of its kinds denies, else Warn.
	Severity Severity
	// Builtin is true for the rules of weft's default bundle.
	Builtin bool
	// Pos is where its package is declared (the first file of it).
	Pos mesh.Pos
	// Config is its configuration.
	Config RuleConfig
}

// Engine evaluates compiled policies: build it once with New, then call
// Eval for every environment and revision. It is safe for concurrent use.
type Engine struct {
	// queries evaluate the rules in groups, concurrently (one group per
	// core, up to one per rule): each is data.weft.internal.engine.g<N>.r.
	queries []rego.PreparedEvalQuery
	rules   map[string]*Rule
	slots   []slot
	config  *Config
}

// slot is one deny/warn rule of one package, evaluated as one key of the
// engine's aggregate rule.
type slot struct {
	rule     string
	kind     string
	severity Severity
}

var (
	rulesRef  = ast.MustParseRef("data.weft.rules")
	engineRef = ast.MustParseRef("data.weft.internal")
	kindRE    = regexp.MustCompile(`^(deny|warn)(_[A-Za-z0-9_]+)?$`)
)

// New loads and compiles the default bundle and the folders of opts. Any
// file that does not parse, any rule that does not compile and any
// configuration naming no rule is an error (Errors, each with its file and
// line where OPA gives one): nothing is skipped.
func New(ctx context.Context, opts Options) (*Engine, error) {
	n := names{root: opts.Root}
	skip := func(_ string, info fs.FileInfo, depth int) bool {
		name := info.Name()
		if info.IsDir() {
			return depth > 0 && strings.HasPrefix(name, ".")
		}
		return strings.HasSuffix(name, "_test.rego")
	}
	fl := loader.NewFileLoader().WithProcessAnnotation(true).WithRegoVersion(ast.RegoV1)
	builtin, err := fl.WithFS(bundleFS).Filtered([]string{"bundle"}, skip)
	if err != nil {
		return nil, n.fromOPA(err)
	}
	modules := map[string]*ast.Module{}
	builtinFiles := map[string]bool{}
	for name, f := range builtin.Modules {
		modules[name] = f.Parsed
		builtinFiles[name] = true
	}
	data := builtin.Documents
	if len(opts.Dirs) > 0 {
		for _, d := range opts.Dirs {
			if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
				return nil, Errors{errorf("policy folder %s: not a directory", d)}
			}
		}
		user, err := loader.NewFileLoader().WithProcessAnnotation(true).WithRegoVersion(ast.RegoV1).Filtered(opts.Dirs, skip)
		if err != nil {
			return nil, n.fromOPA(err)
		}
		for name, f := range user.Modules {
			modules[name] = f.Parsed
		}
		data = mergeData(data, user.Documents)
	}

	rules, slots, errs := discover(modules, builtinFiles, n)
	if len(errs) > 0 {
		return nil, errs
	}
	config, errs := parseConfig(data, rules)
	if len(errs) > 0 {
		return nil, errs
	}
	for id, r := range rules {
		r.Config = config.rule(id)
	}
	groups := max(1, min(runtime.GOMAXPROCS(0), len(rules), 8))
	aggs, err := aggregate(slots, rules, groups)
	if err != nil {
		return nil, fmt.Errorf("policies: generated module: %w", err)
	}
	for i, agg := range aggs {
		modules[fmt.Sprintf("weft:engine/g%d.rego", i)] = agg
	}

	c := ast.NewCompiler().WithCapabilities(capabilities())
	c.Compile(modules)
	if c.Failed() {
		return nil, n.fromOPA(c.Errors)
	}
	store := inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(true), inmem.OptReturnASTValuesOnRead(true))
	queries := make([]rego.PreparedEvalQuery, groups)
	for i := range queries {
		queries[i], err = rego.New(
			rego.Compiler(c),
			rego.Store(store),
			rego.Query(fmt.Sprintf("data.weft.internal.engine.g%d.r", i)),
		).PrepareForEval(ctx)
		if err != nil {
			return nil, n.fromOPA(err)
		}
	}
	return &Engine{queries: queries, rules: rules, slots: slots, config: config}, nil
}

// capabilities are OPA's builtins less those that would make a policy
// depend on more than its input: the network, the clock, randomness and
// the environment. A rule that calls one fails to compile.
func capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	banned := map[string]bool{
		"http.send": true, "net.lookup_ip_addr": true, "opa.runtime": true,
		"time.now_ns": true, "rand.intn": true, "uuid.rfc4122": true,
	}
	var kept []*ast.Builtin
	for _, b := range caps.Builtins {
		if !banned[b.Name] {
			kept = append(kept, b)
		}
	}
	caps.Builtins = kept
	return caps
}

// discover finds the rules: the deny/warn rules of packages below
// weft.rules. A package elsewhere that has deny or warn rules is an error
// in a team's files (conftest's `package main` would otherwise be silently
// ignored), and the engine's own namespace is reserved.
func discover(modules map[string]*ast.Module, builtin map[string]bool, n names) (map[string]*Rule, []slot, Errors) {
	files := sortedKeys(modules)
	rules := map[string]*Rule{}
	var errs Errors
	for _, file := range files {
		mod := modules[file]
		pkg := mod.Package.Path
		if pkg.HasPrefix(engineRef) {
			errs = append(errs, &Error{Pos: n.pos(mod.Package.Location), Msg: fmt.Sprintf("package %s: weft.internal is reserved for the engine", pkgName(pkg))})
			continue
		}
		var kinds []string
		for _, r := range mod.Rules {
			ref := r.Head.Ref()
			if len(ref) != 1 {
				continue
			}
			if name := ref[0].Value.String(); kindRE.MatchString(name) && !contains(kinds, name) {
				kinds = append(kinds, name)
			}
		}
		under := pkg.HasPrefix(rulesRef) && len(pkg) > len(rulesRef)
		if !under {
			if len(kinds) > 0 && !builtin[file] {
				errs = append(errs, &Error{Pos: n.pos(mod.Package.Location), Msg: fmt.Sprintf(
					"package %s has %s rules, but weft only evaluates packages below weft.rules: rename it to package weft.rules.<name>",
					pkgName(pkg), strings.Join(kinds, "/"))})
			}
			continue
		}
		id, err := ruleID(pkg[len(rulesRef):])
		if err != nil {
			errs = append(errs, &Error{Pos: n.pos(mod.Package.Location), Msg: err.Error()})
			continue
		}
		r := rules[id]
		if r == nil {
			r = &Rule{ID: id, Title: id, Builtin: builtin[file], Pos: n.pos(mod.Package.Location)}
			rules[id] = r
		}
		for _, a := range mod.Annotations {
			if a.Scope != "package" {
				continue
			}
			if a.Title != "" {
				r.Title = a.Title
			}
			r.Description = strings.TrimSpace(a.Description)
			if fix, ok := a.Custom["fix"].(string); ok {
				r.Fix = fix
			}
		}
		for _, k := range kinds {
			if !contains(r.Kinds, k) {
				r.Kinds = append(r.Kinds, k)
			}
		}
	}
	var slots []slot
	for _, id := range sortedKeys(rules) {
		r := rules[id]
		if len(r.Kinds) == 0 {
			delete(rules, id) // a helper package below weft.rules
			continue
		}
		sort.Strings(r.Kinds)
		r.Severity = Warn
		for _, k := range r.Kinds {
			sev := Warn
			if strings.HasPrefix(k, "deny") {
				sev, r.Severity = Deny, Deny
			}
			slots = append(slots, slot{rule: id, kind: k, severity: sev})
		}
	}
	return rules, slots, errs
}

func ruleID(rest ast.Ref) (string, error) {
	parts := make([]string, len(rest))
	for i, t := range rest {
		s, ok := t.Value.(ast.String)
		if !ok {
			return "", fmt.Errorf("package path element %v is not a name", t)
		}
		parts[i] = string(s)
	}
	return strings.Join(parts, "."), nil
}

func pkgName(pkg ast.Ref) string {
	return strings.TrimPrefix(pkg.String(), "data.")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// aggregate generates the engine's modules: in the package
// weft.internal.engine.g<N> of each group, one key of the object r per
// slot, each the value of one deny/warn rule, guarded by the environments
// the rule runs in. One query per group then evaluates every rule of the
// group that applies, and a rule that is off in an environment is not
// evaluated there at all. A rule's slots share a group (rules are dealt
// round-robin in id order), so that its helper rules are evaluated once.
func aggregate(slots []slot, rules map[string]*Rule, groups int) ([]*ast.Module, error) {
	group := map[string]int{}
	for i, id := range sortedKeys(rules) {
		group[id] = i % groups
	}
	bs := make([]strings.Builder, groups)
	for g := range bs {
		fmt.Fprintf(&bs[g], "package weft.internal.engine.g%d\n\n", g)
	}
	for i, s := range slots {
		rc := rules[s.rule].Config
		if !rc.Enabled || contains(rc.Skip, "*") {
			continue
		}
		b := &bs[group[s.rule]]
		ref := append(append(rulesRef.Copy(), idTerms(s.rule)...), ast.StringTerm(s.kind))
		fmt.Fprintf(b, "r[%q] := v if {\n", strconv.Itoa(i))
		if rc.Only != nil && !contains(rc.Only, "*") {
			fmt.Fprintf(b, "\tinput.environment in %s\n", setOf(rc.Only))
		}
		if len(rc.Skip) > 0 {
			fmt.Fprintf(b, "\tnot input.environment in %s\n", setOf(rc.Skip))
		}
		fmt.Fprintf(b, "\tv := %s\n}\n\n", ref)
	}
	out := make([]*ast.Module, groups)
	for g := range bs {
		m, err := ast.ParseModuleWithOpts(fmt.Sprintf("weft:engine/g%d.rego", g), bs[g].String(), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, err
		}
		out[g] = m
	}
	return out, nil
}

func idTerms(id string) []*ast.Term {
	var ts []*ast.Term
	for _, p := range strings.Split(id, ".") {
		ts = append(ts, ast.StringTerm(p))
	}
	return ts
}

func setOf(envs []string) string {
	if len(envs) == 0 {
		return "set()"
	}
	ts := make([]string, len(envs))
	for i, e := range envs {
		ts[i] = strconv.Quote(e)
	}
	return "{" + strings.Join(ts, ", ") + "}"
}

// Rules returns the loaded rules, sorted by id.
func (e *Engine) Rules() []*Rule {
	out := make([]*Rule, 0, len(e.rules))
	for _, id := range sortedKeys(e.rules) {
		out = append(out, e.rules[id])
	}
	return out
}

// Rule returns a loaded rule by id.
func (e *Engine) Rule(id string) (*Rule, bool) {
	r, ok := e.rules[id]
	return r, ok
}

// Config returns the merged configuration.
func (e *Engine) Config() *Config { return e.config }

// Eval evaluates every rule that runs in the input's environment and
// returns the findings, sorted, with the file:line of the field path each
// one names, the configuration's warn downgrades and exceptions applied.
func (e *Engine) Eval(ctx context.Context, in Input) ([]Finding, error) {
	return e.EvalValue(ctx, in.Model, BuildInput(in))
}

// EvalValue is Eval with the input already built by BuildInput (for
// callers that evaluate one input several times, and for benchmarks).
func (e *Engine) EvalValue(ctx context.Context, m *mesh.Model, input ast.Value) ([]Finding, error) {
	results := make([]map[string]any, len(e.queries))
	errs := make([]error, len(e.queries))
	var wg sync.WaitGroup
	for g, q := range e.queries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs, err := q.Eval(ctx, rego.EvalParsedInput(input))
			if err == nil && len(rs) == 1 && len(rs[0].Expressions) == 1 {
				results[g], _ = rs[0].Expressions[0].Value.(map[string]any)
			}
			errs[g] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err == nil {
			continue
		}
		var te *topdown.Error
		if errors.As(err, &te) {
			return nil, Errors{&Error{Pos: (names{}).pos(te.Location), Msg: te.Code + ": " + te.Message}}
		}
		return nil, err
	}
	env := EnvName(m.Environment)
	var out []Finding
	for _, group := range results {
		for _, key := range sortedKeys(group) {
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(e.slots) {
				continue
			}
			s := e.slots[i]
			fs, err := e.findings(m, env, s, group[key])
			if err != nil {
				return nil, Errors{&Error{Pos: e.rules[s.rule].Pos, Msg: err.Error()}}
			}
			out = append(out, fs...)
		}
	}
	out = e.config.apply(out)
	SortFindings(out)
	return out, nil
}

// related converts a message's "related" entries: a list of {path, msg}
// objects, each path mapped to its position.
func related(m *mesh.Model, v any) ([]Related, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("related is a %T, want a list of {path, msg}", v)
	}
	out := make([]Related, 0, len(list))
	for _, it := range list {
		o, ok := it.(map[string]any)
		msg, _ := o["msg"].(string)
		if !ok || msg == "" {
			return nil, fmt.Errorf("related entry %v: want {path, msg} with a string msg", it)
		}
		path, err := cuePath(o["path"])
		if err != nil {
			return nil, fmt.Errorf("related entry: %w", err)
		}
		lookup := path
		if lookup == "" {
			lookup = "mesh"
		}
		out = append(out, Related{Msg: msg, Path: path, Pos: m.Positions.Lookup(lookup)})
	}
	return out, nil
}

// findings converts the value of one deny/warn rule. The contract is
// conftest's: a set (or list) of messages, each a string or an object
// {msg, path, fix, related}; a single message; or true.
func (e *Engine) findings(m *mesh.Model, env string, s slot, v any) ([]Finding, error) {
	r := e.rules[s.rule]
	var items []any
	switch x := v.(type) {
	case []any:
		items = x
	case bool:
		if x {
			items = []any{r.Title}
		}
	default:
		items = []any{x}
	}
	out := make([]Finding, 0, len(items))
	for _, it := range items {
		f := Finding{Rule: s.rule, Severity: s.severity, Environment: env, Fix: r.Fix}
		switch x := it.(type) {
		case string:
			f.Msg = x
		case map[string]any:
			msg, ok := x["msg"].(string)
			if !ok {
				return nil, fmt.Errorf("rule %s: %s returned an object without a string msg: %v", s.rule, s.kind, x)
			}
			f.Msg = msg
			path, err := cuePath(x["path"])
			if err != nil {
				return nil, fmt.Errorf("rule %s: %s: %w", s.rule, s.kind, err)
			}
			f.Path = path
			if fix, ok := x["fix"].(string); ok {
				f.Fix = fix
			}
			if f.Related, err = related(m, x["related"]); err != nil {
				return nil, fmt.Errorf("rule %s: %s: %w", s.rule, s.kind, err)
			}
		default:
			return nil, fmt.Errorf("rule %s: %s returned %v: want a message or {msg, path}", s.rule, s.kind, it)
		}
		lookup := f.Path
		if lookup == "" {
			lookup = "mesh"
		}
		f.Pos = m.Positions.Lookup(lookup)
		out = append(out, f)
	}
	return out, nil
}
