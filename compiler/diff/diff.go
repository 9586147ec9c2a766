package diff

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/schema/mesh"
)

// Side is one environment of one revision: its model and what it
// compiles into.
type Side struct {
	Model  *mesh.Model
	Result *compiler.Result
}

// Report is the comparison of two revisions, environment by environment.
type Report struct {
	// Base and Head name the two revisions ("main@1a2b3c4d5e6f").
	Base string `json:"base"`
	Head string `json:"head"`
	// Envs are the environments compared, in the order given.
	Envs []EnvDiff `json:"environments"`
}

// EnvDiff is the comparison of one environment.
type EnvDiff struct {
	Name string `json:"name"`
	// Status is Added or Removed for an environment one revision lacks,
	// Changed when anything differs, else "unchanged".
	Status string `json:"status"`
	// Lines say what changes, in the user's terms.
	Lines []Line `json:"lines"`
	// Classes are the proxy classes that differ; classes with the same
	// differences are one entry.
	Classes []ClassDiff `json:"classes"`
	// Unchanged counts the classes whose configuration is the same.
	Unchanged int `json:"unchanged"`
}

// Unchanged is the status of an environment or class that is the same.
const Unchanged = "unchanged"

// ClassDiff is what changes in one or more proxy classes (the same for
// each of them).
type ClassDiff struct {
	Classes   []string       `json:"classes"`
	Status    string         `json:"status"` // Added, Removed or Changed
	Resources []ResourceDiff `json:"resources"`
}

// Changed reports whether the revisions differ anywhere: `weft diff`
// exits 1.
func (r *Report) Changed() bool {
	for _, e := range r.Envs {
		if e.Status != Unchanged {
			return true
		}
	}
	return false
}

// Compare compares one environment of two revisions. A nil side is an
// environment that revision does not have.
func Compare(name string, base, head *Side) EnvDiff {
	e := EnvDiff{Name: name, Lines: []Line{}, Classes: []ClassDiff{}}
	switch {
	case base == nil && head == nil:
		e.Status = Unchanged
		return e
	case base == nil:
		e.Status = Added
		e.Lines = append(e.Lines, Line{Text: fmt.Sprintf("new environment (%d classes)", len(head.Result.Classes)), Kind: KindEnv})
		e.Classes = classDiffs(&compiler.Result{}, head.Result)
		return e
	case head == nil:
		e.Status = Removed
		e.Lines = append(e.Lines, Line{Text: fmt.Sprintf("environment removed (%d classes)", len(base.Result.Classes)), Kind: KindEnv})
		e.Classes = classDiffs(base.Result, &compiler.Result{})
		return e
	}
	e.Lines = append(e.Lines, modelLines(base.Model, head.Model)...)
	e.Classes = classDiffs(base.Result, head.Result)
	for _, c := range head.Result.Classes {
		if b := base.Result.Class(c.Name); b != nil && b.Hash() == c.Hash() {
			e.Unchanged++
		}
	}
	e.Lines = append(e.Lines, unexplained(e.Lines, e.Classes, base.Result, head.Result)...)
	e.Status = Unchanged
	if len(e.Lines) > 0 || len(e.Classes) > 0 {
		e.Status = Changed
	}
	return e
}

// classDiffs compares the classes of two results, grouping classes with
// the same differences (in the order of their first class).
func classDiffs(a, b *compiler.Result) []ClassDiff {
	names := map[string]bool{}
	for _, c := range a.Classes {
		names[c.Name] = true
	}
	for _, c := range b.Classes {
		names[c.Name] = true
	}
	type pair struct{ a, b uintptr }
	memo := map[pair][]ResourceDiff{}
	out := []ClassDiff{}
	index := map[string]int{} // group key -> index in out
	for _, name := range mesh.SortedKeys(names) {
		x, y := a.Class(name), b.Class(name)
		if x != nil && y != nil && x.Hash() == y.Hash() {
			continue
		}
		status := Changed
		switch {
		case x == nil:
			status = Added
		case y == nil:
			status = Removed
		}
		// Classes that share their resources (the versions of a
		// service) share their differences: compare once.
		key := pair{resourcesID(x), resourcesID(y)}
		rs, ok := memo[key]
		if !ok || key.a == 0 || key.b == 0 {
			rs = classResources(x, y)
			memo[key] = rs
		}
		gk := groupKey(status, rs)
		if i, ok := index[gk]; ok {
			out[i].Classes = append(out[i].Classes, name)
			continue
		}
		index[gk] = len(out)
		out = append(out, ClassDiff{Classes: []string{name}, Status: status, Resources: rs})
	}
	return out
}

func resourcesID(c *compiler.Class) uintptr {
	if c == nil {
		return 0
	}
	return reflect.ValueOf(c.Resources).Pointer()
}

func groupKey(status string, rs []ResourceDiff) string {
	b, _ := json.Marshal(rs)
	return status + "\x00" + string(b)
}

// unexplained are lines for the classes whose compiled configuration
// changed although no line names their service or a service it was built
// from: the summary never misses a change the compiled diff shows.
func unexplained(lines []Line, classes []ClassDiff, a, b *compiler.Result) []Line {
	concerned := map[string]bool{}
	for _, l := range lines {
		if l.Kind == KindMesh {
			return nil // a mesh-wide change explains every class
		}
		for _, s := range l.Services {
			concerned[s] = true
		}
	}
	var out []Line
	for _, cd := range classes {
		explained := false
		var service string
		for _, name := range cd.Classes {
			var deps []string
			for _, c := range []*compiler.Class{a.Class(name), b.Class(name)} {
				if c != nil {
					service = c.Service
					deps = append(deps, c.Service)
					deps = append(deps, c.Inputs()...)
				}
			}
			for _, d := range deps {
				explained = explained || concerned[d]
			}
		}
		if explained {
			continue
		}
		out = append(out, Line{Text: fmt.Sprintf("%s: %s", strings.Join(cd.Classes, ", "), resourceSummary(cd)), Kind: KindClass, Services: []string{service}})
	}
	return out
}

// resourceSummary: "route outbound|http changed, cluster x added".
func resourceSummary(cd ClassDiff) string {
	if cd.Status != Changed {
		return "class " + cd.Status
	}
	var parts []string
	for _, r := range cd.Resources {
		parts = append(parts, fmt.Sprintf("%s %s %s", r.Type, r.Name, r.Status))
	}
	if len(parts) > 3 {
		parts = append(parts[:3], fmt.Sprintf("%d more", len(parts)-3))
	}
	return strings.Join(parts, ", ")
}

// SummaryLine is a line of the summary with the environments it holds
// for.
type SummaryLine struct {
	Environments []string `json:"environments"`
	Line
}

// Summary groups the lines of every environment: a line that several
// environments share is one line naming them all, in the order of
// Envs; then, per environment, how many classes changed and did not.
func (r *Report) Summary() []SummaryLine {
	var out []SummaryLine
	index := map[string]int{}
	add := func(env string, l Line) {
		if i, ok := index[l.Text]; ok {
			if !slices.Contains(out[i].Environments, env) {
				out[i].Environments = append(out[i].Environments, env)
			}
			return
		}
		index[l.Text] = len(out)
		out = append(out, SummaryLine{Environments: []string{env}, Line: l})
	}
	for _, e := range r.Envs {
		for _, l := range e.Lines {
			add(e.Name, l)
		}
	}
	for _, e := range r.Envs {
		if e.Status == Added || e.Status == Removed {
			continue
		}
		changed := 0
		for _, c := range e.Classes {
			changed += len(c.Classes)
		}
		text := fmt.Sprintf("%s unchanged", plural(e.Unchanged, "class", "classes"))
		if changed > 0 {
			text = fmt.Sprintf("%s changed, %d unchanged", plural(changed, "class", "classes"), e.Unchanged)
		}
		add(e.Name, Line{Text: text, Kind: KindCount})
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
