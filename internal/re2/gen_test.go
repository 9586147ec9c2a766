package re2

import (
	"math/rand"
	"strings"
)

// gen writes random patterns from RE2's grammar, biased to the constructs
// whose sizing is subtle (factoring, repeats, classes, folding, anchors),
// with some noise that makes invalid patterns.
type gen struct{ r *rand.Rand }

func newGen(seed int64) *gen { return &gen{rand.New(rand.NewSource(seed))} }

func (g *gen) pick(xs ...string) string { return xs[g.r.Intn(len(xs))] }

func (g *gen) pattern() string {
	var b strings.Builder
	if g.r.Intn(3) == 0 {
		b.WriteString(g.pick("^", "\\A", "(?i)", "(?s)", "(?m)", "(?U)", "^/"))
	}
	b.WriteString(g.alt(3))
	if g.r.Intn(3) == 0 {
		b.WriteString(g.pick("$", "\\z", "/?$", ".*"))
	}
	if g.r.Intn(25) == 0 { // noise
		s := []byte(b.String())
		if len(s) > 0 {
			s[g.r.Intn(len(s))] = g.pick("(", ")", "[", "]", "\\", "{", "*", "?", "|")[0]
		}
		return string(s)
	}
	return b.String()
}

func (g *gen) alt(depth int) string {
	n := 1
	if g.r.Intn(3) == 0 {
		n = 2 + g.r.Intn(3)
	}
	parts := make([]string, n)
	for i := range parts {
		parts[i] = g.concat(depth)
	}
	return strings.Join(parts, "|")
}

func (g *gen) concat(depth int) string {
	n := g.r.Intn(5)
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(g.piece(depth))
	}
	return b.String()
}

func (g *gen) piece(depth int) string {
	a := g.atom(depth)
	switch g.r.Intn(8) {
	case 0:
		a += g.pick("*", "+", "?", "*?", "+?", "??")
	case 1:
		a += g.pick("{2}", "{0,1}", "{1,3}", "{2,}", "{0}", "{3,5}?", "{1}", "{0,}", "{12}", "{36}")
	}
	return a
}

func (g *gen) atom(depth int) string {
	k := g.r.Intn(16)
	if depth <= 0 && k >= 13 {
		k = g.r.Intn(13)
	}
	switch k {
	case 0, 1, 2:
		return g.pick("a", "b", "c", "ab", "abc", "/", "-", "x", "A", "k", "s", "0", "9", "_", "é", "\u00ff", "日")
	case 3:
		return g.pick("[a-z]", "[0-9]", "[a-zA-Z]", "[^a]", "[^\\n]", "[0-9a-f-]", "[abc]", "[a-c]", "[[:alpha:]]", "[[:^digit:]]", "[\\d_]", "[A-Z]", "[Kk]", "[\\x00-\\x{ff}]", "[^/]")
	case 4:
		return g.pick(".", "\\d", "\\w", "\\s", "\\D", "\\W", "\\S", "\\C")
	case 5:
		return g.pick("\\b", "\\B", "^", "$", "\\A", "\\z")
	case 6:
		return g.pick("\\.", "\\-", "\\x41", "\\x{7f}", "\\101", "\\t", "\\n", "\\Q.*\\E", "\\/", "\\_", "\\x{ff}", "\\377")
	case 7:
		return g.pick("{", "}", "]", "{,3}", "{a}")
	case 8, 9, 10:
		return g.pick("ab", "a", "v1", "/api/", "users")
	case 11:
		return g.pick("(?:^)*", "(?:\\b|\\B){2,}", "(?:^$)+", "(?:)", "()", "(|a)", "a||b", "abc|abd|aef|bcx|bcy",
			"foo|foobar|fob", "(?s).", "(?s:.)*", "\\C*", "(a)(b)", "(?i)[^k]", "(?i)[a-z]", "(?i)\\W", "(?i)[[:^upper:]]",
			"[]a]", "[^]a]", "[a-]", "[-a]", "[a\\-z]", "[\\d-z]", "x{2}{3}", "a**", "(?P<>a)", "\\1", "\\8", "\\Z",
			"\\pX", "(?z)", "(?-)", "(?i-)", "(?=a)", "(?<=a)", "x{1001}", "(a{100}){100}", "[z-a]", "\\Q", "[[:foo:]]", "[a")
	case 12:
		return g.pick("[0-9a-z-]{36}", "\\d{1,30}", "[a-f0-9]{8}-", "(?:a|b){5}", "[^/]+", "(?:[^/]+/)*", ".{0,40}")
	default:
		open := g.pick("(", "(?:", "(?P<n>", "(?<m>", "(?i:", "(?s:", "(?-i:", "(?U:")
		return open + g.alt(depth-1) + ")"
	}
}
