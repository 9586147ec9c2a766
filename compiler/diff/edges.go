package diff

import (
	"slices"
	"strings"

	"github.com/weft-dev/weft/schema/mesh"
)

// callers are the services a service's proxy admits at all (for some
// request): an authorization edge caller -> service for each. Any means
// every mesh identity (an allow rule with "*" or without from), except
// the services in Names that a deny rule refuses entirely; otherwise
// Names are the admitted services.
type callers struct {
	Any   bool
	Names []string // sorted: admitted services, or with Any the refused ones
}

// admitted evaluates a service's authorization for every service of the
// mesh the way its proxy does (the rule policies' reachability applies
// the same semantics to declared calls): deny rules without methods and
// paths that identify a caller refuse it; a written allow list admits the
// callers a compiled rule identifies; without one, the default callers
// (the services that call it, and those whose dependencies mirror to it)
// are admitted. A plaintext service (mtls "disable") sees no identity:
// only rules without from match.
func admitted(m *mesh.Model, name string) callers {
	s := m.Services[name]
	plaintext := s.MTLS == mesh.MTLSDisable
	tcpOnly := true
	for _, p := range s.Ports {
		tcpOnly = tcpOnly && p.Protocol == mesh.TCP
	}
	identifies := func(r mesh.AuthzRule, caller string) bool {
		if len(r.From) == 0 {
			return true
		}
		return !plaintext && (slices.Contains(r.From, "*") || slices.Contains(r.From, caller))
	}
	plain := func(r mesh.AuthzRule) bool { return len(r.Methods) == 0 && !pathCondition(r.Paths) }
	refused := func(caller string) bool {
		if s.Authz == nil {
			return false
		}
		for _, r := range s.Authz.Deny {
			if identifies(r, caller) && (plain(r) || tcpOnly) {
				return true
			}
		}
		return false
	}
	var allowAny bool
	var allowed func(string) bool
	if s.Authz != nil && (s.Authz.AllowSet || len(s.Authz.Allow) > 0) {
		var rules []mesh.AuthzRule
		for _, r := range s.Authz.Allow {
			if !tcpOnly || plain(r) {
				rules = append(rules, r)
			}
		}
		for _, r := range rules {
			if len(r.From) == 0 || (!plaintext && slices.Contains(r.From, "*")) {
				allowAny = true
			}
		}
		allowed = func(caller string) bool {
			for _, r := range rules {
				if identifies(r, caller) {
					return true
				}
			}
			return false
		}
	} else {
		def := defaultCallers(m, name)
		allowed = func(caller string) bool { return slices.Contains(def, caller) }
	}
	var out callers
	out.Any = allowAny
	for _, c := range m.ServiceNames() {
		if out.Any {
			if refused(c) {
				out.Names = append(out.Names, c)
			}
		} else if allowed(c) && !refused(c) {
			out.Names = append(out.Names, c)
		}
	}
	return out
}

func pathCondition(paths []string) bool {
	return len(paths) > 0 && !slices.Contains(paths, "*")
}

// defaultCallers are the services that list name in calls, and those that
// call a service whose routes mirror to name (the compiler's default).
func defaultCallers(m *mesh.Model, name string) []string {
	var out []string
	for _, c := range m.ServiceNames() {
		for _, dep := range m.Services[c].Calls {
			d := m.Services[dep]
			mirrors := false
			if d != nil {
				for _, r := range d.Routes {
					mirrors = mirrors || (r.Mirror != nil && r.Mirror.To == name)
				}
			}
			if dep == name || mirrors {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// edgeLines are the summary lines of the authorization edges opened and
// closed between two models, for the services both have.
func edgeLines(old, cur *mesh.Model) []Line {
	var out []Line
	for _, name := range cur.ServiceNames() {
		if old.Services[name] == nil {
			continue
		}
		a, b := admitted(old, name), admitted(cur, name)
		if a.Any == b.Any && slices.Equal(a.Names, b.Names) {
			continue
		}
		line := func(text string, services ...string) {
			out = append(out, Line{Text: text, Services: append([]string{name}, services...), Kind: KindAuthz})
		}
		switch {
		case !a.Any && !b.Any:
			if opened := minus(b.Names, a.Names); len(opened) > 0 {
				line(name+" may now be called by "+list(opened), opened...)
			}
			if closed := minus(a.Names, b.Names); len(closed) > 0 {
				line(name+" may no longer be called by "+list(closed), closed...)
			}
		case a.Any && b.Any:
			if closed := minus(b.Names, a.Names); len(closed) > 0 {
				line(name+" may no longer be called by "+list(closed), closed...)
			}
			if opened := minus(a.Names, b.Names); len(opened) > 0 {
				line(name+" may now be called by "+list(opened), opened...)
			}
		case b.Any:
			text := name + " may now be called by any service of the mesh"
			if len(b.Names) > 0 {
				text += " but " + list(b.Names)
			}
			line(text)
		default:
			text := name + " may no longer be called by any service of the mesh"
			if len(b.Names) > 0 {
				text += ": only by " + list(b.Names)
			} else {
				text += ": by none"
			}
			line(text, b.Names...)
		}
	}
	return out
}

// minus is a - b for sorted lists.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func list(names []string) string { return strings.Join(names, ", ") }
