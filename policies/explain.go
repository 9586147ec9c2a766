package policies

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// pseudoRules document the findings that are not Rego rules, so that
// --explain, SARIF and the docs treat them like the others.
var pseudoRules = []*Rule{{
	ID:    RuleSchema,
	Title: "The mesh definition is valid",
	Description: "The CUE schema (types, bounds, unknown fields, conflicts between the base and an environment) " +
		"and the cross references CUE cannot check: split weights sum to 100, routes name versions that exist, " +
		"calls, mirror targets and authz callers name services that exist. Checked by schema.Load before any " +
		"policy runs; an environment with schema errors is not evaluated.",
	Fix:      "each error says how; `cue vet -c ./...` shows the CUE part too",
	Severity: Deny,
	Builtin:  true,
}, {
	ID:    RulePolicy,
	Title: "The policies load",
	Description: "Every Rego file of the default bundle, of the mesh repository's policies/ folder and of the --policy " +
		"folders parses and compiles (Rego v1), every data file loads, and data.weft.config names only rules that " +
		"exist. One broken file stops `weft vet` before anything is vetted: a policy is never silently skipped.",
	Fix:      "fix the file at the position given; `opa check` and `opa test` on the folder show the same errors",
	Severity: Deny,
	Builtin:  true,
}, {
	ID:    RuleAcceptance,
	Title: "The mesh compiles into configuration Envoy accepts",
	Description: "After the schema and the policies, the gate compiles every environment that passed and runs the " +
		"compiler's acceptance checks on the Envoy configuration it produced, so that whatever `weft vet` accepts, " +
		"Envoy accepts. Reported by `weft vet` only when acceptance checks are configured; `weft build` and " +
		"`weft up` always compile.",
	Fix:      "each error says which field produced the refused configuration and why",
	Severity: Deny,
	Builtin:  true,
}}

// Explain writes the documentation of a rule: its title, severity,
// source, description, configuration and exceptions. The pseudo rules
// "schema", "policy" and "acceptance" are documented too.
func (e *Engine) Explain(w io.Writer, id string) error {
	r, ok := e.rules[id]
	if !ok {
		for _, p := range pseudoRules {
			if p.ID == id {
				r = p
			}
		}
	}
	if r == nil {
		ids := append([]string{}, sortedKeys(e.rules)...)
		for _, p := range pseudoRules {
			ids = append(ids, p.ID)
		}
		return fmt.Errorf("no rule %q (rules: %s)", id, strings.Join(ids, ", "))
	}
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "%s: %s\n", r.ID, r.Title)
	origin := "built in"
	if !r.Builtin {
		origin = "the repository's"
	}
	fmt.Fprintf(ew, "%s, %s", r.Severity, origin)
	if r.Pos.IsValid() {
		fmt.Fprintf(ew, ", %s", r.Pos)
	}
	if len(r.Kinds) > 0 {
		fmt.Fprintf(ew, " (%s)", strings.Join(r.Kinds, ", "))
	}
	fmt.Fprintln(ew)
	if r.Description != "" {
		fmt.Fprintf(ew, "\n%s\n", r.Description)
	}
	if r.Fix != "" {
		fmt.Fprintf(ew, "\nFix: %s\n", r.Fix)
	}
	if r.ID == RuleSchema || r.ID == RulePolicy || r.ID == RuleAcceptance {
		return ew.err
	}
	fmt.Fprintf(ew, "\nConfiguration (data.weft.config.rules.%s):\n", r.ID)
	if len(r.Config.Raw) > 0 {
		b, _ := json.Marshal(r.Config.Raw)
		fmt.Fprintf(ew, "  %s\n", b)
	}
	fmt.Fprintf(ew, "  runs in: %s\n", r.Config.describe())
	var exs []string
	for _, ex := range e.config.Exceptions {
		if ex.Rule == r.ID {
			envs := "every environment"
			if ex.Environments != nil {
				envs = strings.Join(ex.Environments, ", ")
			}
			exs = append(exs, fmt.Sprintf("  %s in %s: %s", ex.Service, envs, ex.Reason))
		}
	}
	if len(exs) == 0 {
		fmt.Fprintln(ew, "Exceptions: none")
	} else {
		fmt.Fprintf(ew, "Exceptions:\n%s\n", strings.Join(exs, "\n"))
	}
	return ew.err
}

// describe says where a rule runs, in words.
func (c RuleConfig) describe() string {
	if !c.Enabled || contains(c.Skip, "*") {
		return "nowhere (disabled)"
	}
	s := "every environment"
	if c.Only != nil && !contains(c.Only, "*") {
		s = strings.Join(c.Only, ", ")
	}
	if len(c.Skip) > 0 {
		s += " but " + strings.Join(c.Skip, ", ")
	}
	if len(c.Warn) > 0 {
		s += "; reported as warn in " + strings.Join(c.Warn, ", ")
	}
	return s
}

// Explain loads the policies of the mesh repository at dir (the bundle
// alone when dir is "") with the extra folders, and writes the
// documentation of a rule.
func Explain(w io.Writer, dir string, extra []string, id string) error {
	var opts Options
	if dir != "" {
		opts = Options{Dirs: PolicyDirs(dir, extra), Root: moduleRoot(dir)}
	} else {
		opts.Dirs = extra
	}
	e, err := New(ctxBackground(), opts)
	if err != nil {
		return err
	}
	return e.Explain(w, id)
}
