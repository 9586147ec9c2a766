package re2

// flags are RE2's parse flags (regexp.h), with RE2's bit values.
type flags uint16

const (
	foldCase      flags = 1 << 0
	classNL       flags = 1 << 2
	dotNL         flags = 1 << 3
	oneLine       flags = 1 << 4
	latin1        flags = 1 << 5
	nonGreedy     flags = 1 << 6
	perlClasses   flags = 1 << 7
	perlB         flags = 1 << 8
	perlX         flags = 1 << 9
	unicodeGroups flags = 1 << 10
	neverNL       flags = 1 << 11
	neverCapture  flags = 1 << 12
	wasDollar     flags = 1 << 13
	allFlags      flags = 1<<14 - 1

	likePerl = classNL | oneLine | perlClasses | perlB | perlX | unicodeGroups
	// envoyFlags are the flags Envoy 1.40's RE2 parses with: Perl syntax,
	// case sensitive, and Latin-1 (see doc.go for how that was measured).
	envoyFlags = classNL | likePerl | latin1
)

// op is a node's operator (RE2's RegexpOp), plus the parser's two
// pseudo-operators that only live on its stack.
type op uint8

const (
	opNoMatch op = iota + 1
	opEmptyMatch
	opLiteral
	opLiteralString
	opConcat
	opAlternate
	opStar
	opPlus
	opQuest
	opRepeat
	opCapture
	opAnyChar
	opAnyByte
	opBeginLine
	opEndLine
	opWordBoundary
	opNoWordBoundary
	opBeginText
	opEndText
	opCharClass
	opLeftParen   // pseudo: parse stack only
	opVerticalBar // pseudo: parse stack only
)

// node is one node of a parse tree (RE2's Regexp). Trees are shared after
// simplification; a node is never modified once another refers to it,
// except by the parser and the alternation factoring, which own theirs.
type node struct {
	op       op
	flags    flags
	runes    []rune // opLiteral: one rune; opLiteralString: the string
	min, max int    // opRepeat; max -1 is unbounded
	cap      int    // opCapture, opLeftParen: index, -1 for (?:
	sub      []*node
	cc       *charClass // opCharClass, once finished
	ccb      *ccBuilder // opCharClass, while parsing
	down     *node      // the parse stack
}

func newNode(o op, f flags) *node { return &node{op: o, flags: f} }

func literal(r rune, f flags) *node {
	return &node{op: opLiteral, flags: f, runes: []rune{r}}
}

// literalString is RE2's Regexp::LiteralString: empty is EmptyMatch, one
// rune a Literal.
func literalString(rs []rune, f flags) *node {
	switch len(rs) {
	case 0:
		return newNode(opEmptyMatch, f)
	case 1:
		return literal(rs[0], f)
	}
	return &node{op: opLiteralString, flags: f, runes: append([]rune(nil), rs...)}
}

// concatOrAlternate is RE2's Regexp::ConcatOrAlternate: one sub is itself,
// none is EmptyMatch (NoMatch for an alternation); alternations are
// factored when canFactor.
func concatOrAlternate(o op, subs []*node, f flags, canFactor bool) *node {
	if len(subs) == 1 {
		return subs[0]
	}
	if len(subs) == 0 {
		if o == opAlternate {
			return newNode(opNoMatch, f)
		}
		return newNode(opEmptyMatch, f)
	}
	if o == opAlternate && canFactor {
		subs = factorAlternation(append([]*node(nil), subs...), f)
		if len(subs) == 1 {
			return subs[0]
		}
	}
	// RE2 splits more than 65535 subexpressions into a two-level tree;
	// patterns that large are far beyond any program size Envoy accepts,
	// and the parser refuses them before (maxSubs).
	return &node{op: o, flags: f, sub: append([]*node(nil), subs...)}
}

func concat(subs []*node, f flags) *node { return concatOrAlternate(opConcat, subs, f, false) }

func alternateNoFactor(subs []*node, f flags) *node {
	return concatOrAlternate(opAlternate, subs, f, false)
}

// starPlusOrQuest is RE2's Regexp::StarPlusOrQuest: x** is x*, and any
// two of *, + and ? with the same flags squash to *.
func starPlusOrQuest(o op, sub *node, f flags) *node {
	if o == sub.op && f == sub.flags {
		return sub
	}
	if (sub.op == opStar || sub.op == opPlus || sub.op == opQuest) && f == sub.flags {
		if sub.op == opStar {
			return sub
		}
		return &node{op: opStar, flags: f, sub: []*node{sub.sub[0]}}
	}
	return &node{op: o, flags: f, sub: []*node{sub}}
}

// topEqual compares two nodes without their subexpressions (RE2's
// TopEqual).
func topEqual(a, b *node) bool {
	if a.op != b.op {
		return false
	}
	switch a.op {
	case opEndText:
		return (a.flags^b.flags)&wasDollar == 0
	case opLiteral, opLiteralString:
		if (a.flags^b.flags)&foldCase != 0 || len(a.runes) != len(b.runes) {
			return false
		}
		for i := range a.runes {
			if a.runes[i] != b.runes[i] {
				return false
			}
		}
		return true
	case opAlternate, opConcat:
		return len(a.sub) == len(b.sub)
	case opStar, opPlus, opQuest:
		return (a.flags^b.flags)&nonGreedy == 0
	case opRepeat:
		return (a.flags^b.flags)&nonGreedy == 0 && a.min == b.min && a.max == b.max
	case opCapture:
		return a.cap == b.cap
	case opCharClass:
		return a.cc.equal(b.cc)
	}
	return true
}

// equal compares two trees (RE2's Regexp::Equal).
func equal(a, b *node) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !topEqual(a, b) {
		return false
	}
	for i := range a.sub {
		if !equal(a.sub[i], b.sub[i]) {
			return false
		}
	}
	return true
}
