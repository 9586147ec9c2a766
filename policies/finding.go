package policies

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/weft-dev/weft/schema/mesh"
)

// Severity says whether a finding stops the build.
type Severity string

// Severities. A deny fails `weft vet` (exit 1) and keeps a revision from
// being served; a warn is reported only.
const (
	Deny Severity = "deny"
	Warn Severity = "warn"
)

// BaseEnv is the name the policies give the base alone (a mesh loaded
// without an environment): in input.environment, in findings and in the
// environment lists of the configuration.
const BaseEnv = "base"

// Pseudo rule ids for what is not a Rego rule but is reported the same way.
const (
	// RuleSchema is a CUE schema or cross-reference error (schema.Error).
	RuleSchema = "schema"
	// RulePolicy is a policy file that does not load or compile.
	RulePolicy = "policy"
	// RuleAcceptance is a definition that does not compile, or whose
	// compiled Envoy configuration the acceptance checks refuse (reported
	// by the gate of package reconciler/pipeline).
	RuleAcceptance = "acceptance"
)

// Finding is one result of the gate: a rule's deny or warn, or a schema or
// policy error reported the same way.
type Finding struct {
	// Rule is the rule id: the package path below weft.rules
	// ("mtls_strict", "team.owner_label"), or RuleSchema / RulePolicy /
	// RuleAcceptance.
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	Msg      string   `json:"msg"`
	// Path is the CUE field path the finding is about
	// ("mesh.services.orders.routes.create.timeout"); Pos is where it is written
	// (relative to the mesh repository's root), or its nearest written
	// ancestor's position.
	Path string   `json:"path,omitempty"`
	Pos  mesh.Pos `json:"pos"`
	// Environment is the environment evaluated (BaseEnv for the base), or
	// "" for a finding about the policies themselves.
	Environment string `json:"environment,omitempty"`
	// Fix says how to make it right, where the rule or the schema says.
	Fix string `json:"fix,omitempty"`
	// Excused is the reason of the exception that turned a deny into a
	// warn (data.weft.config.exceptions).
	Excused string `json:"excused,omitempty"`
	// Also lists other positions involved (schema conflicts).
	Also []mesh.Pos `json:"also,omitempty"`
	// Related are other places the finding involves, named in its
	// message with their file:line (see Message): a rule returns them as
	// "related": [{"path": ..., "msg": ...}] (rule reachability: the
	// caller's calls entry).
	Related []Related `json:"related,omitempty"`
}

// Related is one other place a finding involves: what it is (Msg), its
// CUE field path and where that is written.
type Related struct {
	Msg  string   `json:"msg"`
	Path string   `json:"path,omitempty"`
	Pos  mesh.Pos `json:"pos"`
}

// Message is the finding's message with its related places appended, each
// as " (<what>: <file:line:col>)"; pos rewrites a position for display
// (nil leaves it as is).
func (f Finding) Message(pos func(mesh.Pos) mesh.Pos) string {
	if len(f.Related) == 0 {
		return f.Msg
	}
	var b strings.Builder
	b.WriteString(f.Msg)
	for _, r := range f.Related {
		p := r.Pos
		if pos != nil {
			p = pos(p)
		}
		fmt.Fprintf(&b, " (%s: %s)", r.Msg, p)
	}
	return b.String()
}

// Service is the service a finding is about, read from its path, or "".
func (f Finding) Service() string { return serviceOf(f.Path) }

func (f Finding) String() string {
	s := fmt.Sprintf("%s: %s %s: ", f.Pos, f.Severity, f.Rule)
	if f.Path != "" {
		s += f.Path + ": "
	}
	s += f.Message(nil)
	if f.Excused != "" {
		s += " (excused: " + f.Excused + ")"
	}
	return s
}

// SortFindings orders findings by file, line, column, then rule and
// message, so that output never depends on evaluation order.
func SortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Pos.File != b.Pos.File {
			return a.Pos.File < b.Pos.File
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		if a.Pos.Column != b.Pos.Column {
			return a.Pos.Column < b.Pos.Column
		}
		if a.Environment != b.Environment {
			return a.Environment < b.Environment
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Msg < b.Msg
	})
}

// cuePath turns a path returned by a rule into a CUE field path. An array
// is a list of keys (strings) and indexes (numbers) from the root of the
// input, which mirrors the CUE value: ["mesh", "services", "orders",
// "routes", "create", "timeout"] is mesh.services.orders.routes.create.timeout,
// ["mesh", "services", "orders", "authz", "allow", 0] is
// mesh.services.orders.authz.allow[0]. A string is taken as a
// CUE path as it is.
func cuePath(v any) (string, error) {
	switch p := v.(type) {
	case nil:
		return "", nil
	case string:
		return p, nil
	case []any:
		var b strings.Builder
		for i, seg := range p {
			switch s := seg.(type) {
			case string:
				if i > 0 {
					b.WriteByte('.')
				}
				b.WriteString(mesh.Label(s))
			case json.Number:
				n, err := strconv.Atoi(string(s))
				if err != nil || i == 0 {
					return "", fmt.Errorf("path %v: element %d is %s, want a key or a list index", v, i, s)
				}
				fmt.Fprintf(&b, "[%d]", n)
			default:
				return "", fmt.Errorf("path %v: element %d is a %T, want a key or a list index", v, i, seg)
			}
		}
		return b.String(), nil
	default:
		return "", fmt.Errorf("path is a %T, want an array of keys and indexes or a string", v)
	}
}

// serviceOf reads the service name from a CUE path below
// mesh.services.<name>.
func serviceOf(path string) string {
	rest, ok := strings.CutPrefix(path, "mesh.services.")
	if !ok || rest == "" {
		return ""
	}
	if rest[0] == '"' {
		// A quoted label: find its closing quote.
		for i := 1; i < len(rest); i++ {
			switch rest[i] {
			case '\\':
				i++
			case '"':
				name, err := strconv.Unquote(rest[:i+1])
				if err != nil {
					return ""
				}
				return name
			}
		}
		return ""
	}
	if i := strings.IndexAny(rest, ".["); i >= 0 {
		return rest[:i]
	}
	return rest
}
