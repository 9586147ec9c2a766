package mesh

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Routes is a service's route table in precedence order (see
// ComparePrecedence): the order in which a request is matched against the
// routes. In CUE and in JSON it is an object keyed by route name, because
// environments address routes by name; the order is never the order in
// which the routes were written.
type Routes []Route

// UnmarshalJSON reads routes written as an object keyed by route name
// ({"canary": {...}, "split": {...}}), sets each route's Name and puts
// them in precedence order.
func (rs *Routes) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*rs = nil
		return nil
	}
	var byName map[string]Route
	if err := json.Unmarshal(b, &byName); err != nil {
		return fmt.Errorf("routes: want an object keyed by route name: %w", err)
	}
	out := make(Routes, 0, len(byName))
	for _, name := range sortedKeys(byName) {
		r := byName[name]
		r.Name = name
		out = append(out, r)
	}
	SortRoutes(out)
	*rs = out
	return nil
}

// MarshalJSON writes the routes as an object keyed by route name, the
// shape of the CUE schema.
func (rs Routes) MarshalJSON() ([]byte, error) {
	byName := make(map[string]Route, len(rs))
	for _, r := range rs {
		if _, dup := byName[r.Name]; dup {
			return nil, fmt.Errorf("routes: two routes named %q", r.Name)
		}
		byName[r.Name] = r
	}
	return json.Marshal(byName)
}

// Route returns the route with the given name, or nil.
func (rs Routes) Route(name string) *Route {
	for i := range rs {
		if rs[i].Name == name {
			return &rs[i]
		}
	}
	return nil
}

// SortRoutes puts routes in precedence order (ComparePrecedence). It is
// stable, so routes that compare equal (only possible without names, in a
// model built by hand) keep their order.
func SortRoutes(rs []Route) {
	slices.SortStableFunc(rs, func(a, b Route) int { return ComparePrecedence(&a, &b) })
}

// Path kinds in precedence order.
const (
	pathExact = iota
	pathRegex
	pathPrefix
)

// ComparePrecedence orders two routes of a service: negative when a is
// tried before b. The rules, first difference wins, are modelled on the
// Gateway API's HTTPRoute rule precedence (gateway.networking.k8s.io/v1,
// HTTPRouteRule "matches"), with weft's priority on top:
//
//  1. higher Priority first;
//  2. an exact path, then a regex path, then a prefix path (no path is
//     the prefix "/"), longer prefixes first;
//  3. a route with methods before one without;
//  4. more header matches first;
//  5. by name.
func ComparePrecedence(a, b *Route) int {
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	ka, pa := pathRank(a.Match.Path)
	kb, pb := pathRank(b.Match.Path)
	if c := cmp.Compare(ka, kb); c != 0 {
		return c
	}
	if ka == pathPrefix {
		if c := cmp.Compare(len(pb), len(pa)); c != 0 {
			return c
		}
	}
	if ma, mb := len(a.Match.Methods) > 0, len(b.Match.Methods) > 0; ma != mb {
		if ma {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(len(b.Match.Headers), len(a.Match.Headers)); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// pathRank is the kind of a path match and, for a prefix, the prefix.
func pathRank(p *StringMatch) (kind int, prefix string) {
	switch {
	case p == nil:
		return pathPrefix, "/"
	case p.Exact != nil:
		return pathExact, ""
	case p.Regex != nil:
		return pathRegex, ""
	case p.Prefix != nil:
		return pathPrefix, *p.Prefix
	}
	return pathPrefix, "/"
}

// Covers reports whether every request that o matches is also matched by
// m, so that a route with match o placed after one with match m can never
// be taken. It only answers true when it can prove it:
//
//   - path: no path or prefix "/" covers every path; a prefix covers an
//     exact path or a longer prefix that starts with it; an exact path
//     covers the same exact path; a regex covers the same regex and an
//     exact path it matches entirely (RE2 semantics, as Envoy's
//     safe_regex). A regex is never proven to cover a prefix or another
//     regex.
//   - headers (names case-insensitive): each of m's conditions must be
//     implied by a condition of o on the same header: exact by the same
//     exact; prefix by an exact or prefix starting with it; regex by the
//     same regex or an exact it matches entirely; present: true by any
//     condition but present: false; present: false by present: false.
//   - methods: m without methods covers any; with methods, o must have
//     methods, all of them among m's.
func (m Match) Covers(o Match) bool {
	return pathCovers(m.Path, o.Path) && headersCover(m.Headers, o.Headers) && methodsCover(m.Methods, o.Methods)
}

func pathCovers(a, b *StringMatch) bool {
	if a == nil || (a.Prefix != nil && *a.Prefix == "/") {
		return true
	}
	if b == nil {
		b = &StringMatch{Prefix: ptrTo("/")}
	}
	switch {
	case a.Prefix != nil:
		return (b.Exact != nil && strings.HasPrefix(*b.Exact, *a.Prefix)) ||
			(b.Prefix != nil && strings.HasPrefix(*b.Prefix, *a.Prefix))
	case a.Exact != nil:
		return b.Exact != nil && *b.Exact == *a.Exact
	case a.Regex != nil:
		return (b.Regex != nil && *b.Regex == *a.Regex) || (b.Exact != nil && fullMatch(*a.Regex, *b.Exact))
	}
	return false
}

func headersCover(a, b map[string]StringMatch) bool {
	for _, name := range sortedKeys(a) {
		implied := false
		for _, other := range sortedKeys(b) {
			if strings.EqualFold(name, other) && stringCovers(a[name], b[other]) {
				implied = true
				break
			}
		}
		if !implied {
			return false
		}
	}
	return true
}

// stringCovers reports whether header condition a holds whenever b does.
func stringCovers(a, b StringMatch) bool {
	valued := b.Exact != nil || b.Prefix != nil || b.Regex != nil
	switch {
	case a.Present != nil && *a.Present:
		return valued || (b.Present != nil && *b.Present)
	case a.Present != nil:
		return b.Present != nil && !*b.Present
	case a.Exact != nil:
		return b.Exact != nil && *b.Exact == *a.Exact
	case a.Prefix != nil:
		return (b.Exact != nil && strings.HasPrefix(*b.Exact, *a.Prefix)) ||
			(b.Prefix != nil && strings.HasPrefix(*b.Prefix, *a.Prefix))
	case a.Regex != nil:
		return (b.Regex != nil && *b.Regex == *a.Regex) || (b.Exact != nil && fullMatch(*a.Regex, *b.Exact))
	}
	return false
}

func methodsCover(a, b []string) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, m := range b {
		if !slices.Contains(a, m) {
			return false
		}
	}
	return true
}

// fullMatch reports whether the RE2 expression re matches all of s; an
// expression Go cannot compile proves nothing.
func fullMatch(re, s string) bool {
	r, err := regexp.Compile(`^(?:` + re + `)$`)
	return err == nil && r.MatchString(s)
}

func ptrTo[T any](v T) *T { return &v }
