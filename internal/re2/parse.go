package re2

import (
	"strings"
	"unicode/utf8"
)

// Limits of the parser. maxRepeat is RE2's; the others are weft's, far
// above anything whose program fits Envoy's limit.
const (
	maxRepeat  = 1000
	maxNesting = 1000
	maxSubs    = 65535
)

// RE2's error codes, with the text RE2::error() gives for each.
const (
	errInternal          = "unexpected error"
	errBadEscape         = "invalid escape sequence"
	errBadCharClass      = "invalid character class"
	errBadCharRange      = "invalid character class range"
	errMissingBracket    = "missing ]"
	errMissingParen      = "missing )"
	errUnexpectedParen   = "unexpected )"
	errTrailingBackslash = "trailing \\"
	errRepeatArgument    = "no argument for repetition operator"
	errRepeatSize        = "invalid repetition size"
	errRepeatOp          = "bad repetition operator"
	errBadPerlOp         = "invalid perl operator"
	errBadUTF8           = "invalid UTF-8"
	errBadNamedCapture   = "invalid named capture group"
)

// parser is RE2's ParseState: a stack of finished pieces, markers for
// open parentheses and vertical bars, linked through node.down.
type parser struct {
	flags flags
	whole string
	top   *node
	ncap  int
	depth int
	err   *Error
	nsubs int
}

func (p *parser) fail(code, arg string) bool {
	if p.err == nil {
		p.err = &Error{Code: code, Arg: arg}
	}
	return false
}

func (p *parser) unsupported(what, arg string) bool {
	if p.err == nil {
		p.err = &Error{Code: what, Arg: arg, Unsupported: true}
	}
	return false
}

func isMarker(o op) bool { return o >= opLeftParen }

// finish converts a class under construction into a finished one.
func finish(re *node) *node {
	if re == nil {
		return nil
	}
	re.down = nil
	if re.op == opCharClass && re.ccb != nil {
		re.cc = re.ccb.finish()
		re.ccb = nil
	}
	return re
}

// push pushes re, turning a one-rune class into a literal and [Aa] into a
// case-folded literal a.
func (p *parser) push(re *node) bool {
	p.maybeConcatString(-1, 0)
	if re.op == opCharClass && re.ccb != nil {
		re.ccb.removeAbove(latin1Max)
		switch b := re.ccb; b.nrunes {
		case 1:
			re = literal(b.ranges[0].lo, p.flags)
		case 2:
			if r := b.ranges[0].lo; 'A' <= r && r <= 'Z' && b.contains(r+'a'-'A') {
				re = literal(r+'a'-'A', p.flags|foldCase)
			}
		}
	}
	re.down = p.top
	p.top = re
	return true
}

// pushLiteral pushes r; under (?i) an ASCII letter becomes the class of
// its two cases (which push turns back into a folded literal).
func (p *parser) pushLiteral(r rune) bool {
	if p.flags&foldCase != 0 && (('A' <= r && r <= 'Z') || ('a' <= r && r <= 'z')) {
		re := &node{op: opCharClass, flags: p.flags &^ foldCase, ccb: &ccBuilder{}}
		re.ccb.addFoldedRangeLatin1(r, r)
		return p.push(re)
	}
	if p.flags&neverNL != 0 && r == '\n' {
		return p.push(newNode(opNoMatch, p.flags))
	}
	if p.maybeConcatString(r, p.flags) {
		return true
	}
	return p.push(literal(r, p.flags))
}

func (p *parser) pushSimple(o op) bool { return p.push(newNode(o, p.flags)) }

func (p *parser) pushCaret() bool {
	if p.flags&oneLine != 0 {
		return p.pushSimple(opBeginText)
	}
	return p.pushSimple(opBeginLine)
}

func (p *parser) pushDollar() bool {
	if p.flags&oneLine != 0 {
		return p.push(newNode(opEndText, p.flags|wasDollar))
	}
	return p.pushSimple(opEndLine)
}

// pushDot pushes ., which is [^\n] unless (?s).
func (p *parser) pushDot() bool {
	if p.flags&dotNL != 0 && p.flags&neverNL == 0 {
		return p.pushSimple(opAnyChar)
	}
	re := &node{op: opCharClass, flags: p.flags &^ foldCase, ccb: &ccBuilder{}}
	re.ccb.addRange(0, '\n'-1)
	re.ccb.addRange('\n'+1, latin1Max)
	return p.push(re)
}

// pushRepeatOp applies *, + or ? to the top of the stack, squashing a
// repeat of a repeat.
func (p *parser) pushRepeatOp(o op, s string, nongreedy bool) bool {
	if p.top == nil || isMarker(p.top.op) {
		return p.fail(errRepeatArgument, s)
	}
	f := p.flags
	if nongreedy {
		f ^= nonGreedy
	}
	if o == p.top.op && f == p.top.flags {
		return true
	}
	if (p.top.op == opStar || p.top.op == opPlus || p.top.op == opQuest) && f == p.top.flags {
		p.top.op = opStar
		return true
	}
	re := &node{op: o, flags: f, down: p.top.down}
	re.sub = []*node{finish(p.top)}
	p.top = re
	return true
}

// pushRepetition applies {min,max} (max -1: unbounded).
func (p *parser) pushRepetition(min, max int, s string, nongreedy bool) bool {
	if (max != -1 && max < min) || min > maxRepeat || max > maxRepeat {
		return p.fail(errRepeatSize, s)
	}
	if p.top == nil || isMarker(p.top.op) {
		return p.fail(errRepeatArgument, s)
	}
	f := p.flags
	if nongreedy {
		f ^= nonGreedy
	}
	re := &node{op: opRepeat, flags: f, min: min, max: max, down: p.top.down}
	re.sub = []*node{finish(p.top)}
	p.top = re
	if (min >= 2 || max >= 2) && repetitionBudget(re, maxRepeat) == 0 {
		return p.fail(errRepeatSize, s)
	}
	return true
}

// repetitionBudget is RE2's RepetitionWalker: budget divided by the counts
// of the nested repetitions, minimised over the tree (0: more than budget
// copies of something).
func repetitionBudget(re *node, budget int) int {
	if re.op == opRepeat {
		m := re.max
		if m < 0 {
			m = re.min
		}
		if m > 0 {
			budget /= m
		}
	}
	out := budget
	for _, s := range re.sub {
		out = min(out, repetitionBudget(s, budget))
	}
	return out
}

func (p *parser) doLeftParen(capture bool) bool {
	p.depth++
	if p.depth > maxNesting {
		return p.unsupported("groups nested more than 1000 deep", "")
	}
	re := newNode(opLeftParen, p.flags)
	re.cap = -1
	if capture {
		p.ncap++
		re.cap = p.ncap
	}
	return p.push(re)
}

// doVerticalBar finishes the concatenation above the topmost bar.
func (p *parser) doVerticalBar() bool {
	p.maybeConcatString(-1, 0)
	p.doConcatenation()
	r1 := p.top
	if r1 != nil {
		if r2 := r1.down; r2 != nil && r2.op == opVerticalBar {
			if r3 := r2.down; r3 != nil && (r1.op == opAnyChar || r3.op == opAnyChar) {
				// AnyChar subsumes a literal, class or AnyChar beside it.
				if r3.op == opAnyChar && (r1.op == opLiteral || r1.op == opCharClass || r1.op == opAnyChar) {
					p.top = r2
					return true
				}
				if r1.op == opAnyChar && (r3.op == opLiteral || r3.op == opCharClass || r3.op == opAnyChar) {
					r1.down = r3.down
					r2.down = r1
					p.top = r2
					return true
				}
			}
			r1.down = r2.down
			r2.down = r1
			p.top = r2
			return true
		}
	}
	return p.pushSimple(opVerticalBar)
}

func (p *parser) doRightParen() bool {
	p.doAlternation()
	r1 := p.top
	if r1 == nil || r1.down == nil || r1.down.op != opLeftParen {
		return p.fail(errUnexpectedParen, p.whole)
	}
	p.depth--
	r2 := r1.down
	p.top = r2.down
	p.flags = r2.flags
	re := r2
	if re.cap > 0 {
		re.op = opCapture
		re.sub = []*node{finish(r1)}
	} else {
		re = r1
	}
	return p.push(re)
}

func (p *parser) doFinish() *node {
	p.doAlternation()
	re := p.top
	if re != nil && re.down != nil {
		p.fail(errMissingParen, p.whole)
		return nil
	}
	p.top = nil
	return finish(re)
}

// doCollapse replaces the pieces above the topmost marker with their
// concatenation or alternation, flattening nested ones of the same op.
func (p *parser) doCollapse(o op) {
	var next *node
	n := 0
	for sub := p.top; sub != nil && !isMarker(sub.op); sub = next {
		next = sub.down
		if sub.op == o {
			n += len(sub.sub)
		} else {
			n++
		}
	}
	if p.top != nil && p.top.down == next {
		return // one piece: itself
	}
	subs := make([]*node, n)
	i := n
	for sub := p.top; sub != nil && !isMarker(sub.op); sub = next {
		next = sub.down
		if sub.op == o {
			for k := len(sub.sub) - 1; k >= 0; k-- {
				i--
				subs[i] = sub.sub[k]
			}
		} else {
			i--
			subs[i] = finish(sub)
		}
	}
	p.nsubs += n
	re := concatOrAlternate(o, subs, p.flags, true)
	re.down = next
	p.top = re
}

func (p *parser) doConcatenation() {
	if p.top == nil || isMarker(p.top.op) {
		p.push(newNode(opEmptyMatch, p.flags))
	}
	p.doCollapse(opConcat)
}

func (p *parser) doAlternation() {
	p.doVerticalBar()
	p.top = p.top.down // the vertical bar
	p.doCollapse(opAlternate)
}

// maybeConcatString merges the two literals on top of the stack into a
// string (same case folding only). With r >= 0 the emptied top is reused
// for the literal r, and it reports true.
func (p *parser) maybeConcatString(r rune, f flags) bool {
	re1 := p.top
	if re1 == nil || re1.down == nil {
		return false
	}
	re2 := re1.down
	if re1.op != opLiteral && re1.op != opLiteralString {
		return false
	}
	if re2.op != opLiteral && re2.op != opLiteralString {
		return false
	}
	if re1.flags&foldCase != re2.flags&foldCase {
		return false
	}
	re2.op = opLiteralString
	re2.runes = append(re2.runes, re1.runes...)
	if r >= 0 {
		re1.op = opLiteral
		re1.runes = []rune{r}
		re1.flags = f
		return true
	}
	p.top = re2
	return false
}

// parseInteger reads a decimal number without leading zeros.
func parseInteger(s string) (n int, rest string, ok bool) {
	if s == "" || !isDigit(s[0]) {
		return 0, s, false
	}
	if len(s) >= 2 && s[0] == '0' && isDigit(s[1]) {
		return 0, s, false
	}
	for s != "" && isDigit(s[0]) {
		if n >= 100000000 {
			return 0, s, false
		}
		n = n*10 + int(s[0]-'0')
		s = s[1:]
	}
	return n, s, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseRepetition reads {n}, {n,} or {n,m}; anything else is not one (and
// the brace is a literal).
func parseRepetition(s string) (lo, hi int, rest string, ok bool) {
	if s == "" || s[0] != '{' {
		return
	}
	s = s[1:]
	if lo, s, ok = parseInteger(s); !ok || s == "" {
		return 0, 0, "", false
	}
	if s[0] == ',' {
		s = s[1:]
		if s == "" {
			return 0, 0, "", false
		}
		if s[0] == '}' {
			hi = -1
		} else if hi, s, ok = parseInteger(s); !ok {
			return 0, 0, "", false
		}
	} else {
		hi = lo
	}
	if s == "" || s[0] != '}' {
		return 0, 0, "", false
	}
	return lo, hi, s[1:], true
}

// nextRune decodes the first rune of s.
func (p *parser) nextRune(s string) (rune, string, bool) {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n <= 1 {
		return 0, s, p.fail(errBadUTF8, "")
	}
	return r, s[n:], true
}

func isHex(c rune) bool {
	return ('0' <= c && c <= '9') || ('A' <= c && c <= 'F') || ('a' <= c && c <= 'f')
}

func unhex(c rune) rune {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func isAlnum(c rune) bool {
	return ('0' <= c && c <= '9') || ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z')
}

// parseEscape reads one escaped character (s starts with a backslash).
func (p *parser) parseEscape(s string) (rune, string, bool) {
	begin := s
	if len(s) == 1 {
		return 0, s, p.fail(errTrailingBackslash, "")
	}
	bad := func(rest string) (rune, string, bool) {
		return 0, rest, p.fail(errBadEscape, begin[:len(begin)-len(rest)])
	}
	c, s, ok := p.nextRune(s[1:])
	if !ok {
		return 0, s, false
	}
	switch c {
	case '1', '2', '3', '4', '5', '6', '7':
		// A single non-zero digit is a backreference: not supported.
		if s == "" || s[0] < '0' || s[0] > '7' {
			return bad(s)
		}
		fallthrough
	case '0':
		code := c - '0'
		if s != "" && '0' <= s[0] && s[0] <= '7' {
			code = code*8 + rune(s[0]-'0')
			s = s[1:]
			if s != "" && '0' <= s[0] && s[0] <= '7' {
				code = code*8 + rune(s[0]-'0')
				s = s[1:]
			}
		}
		if code > latin1Max {
			return bad(s)
		}
		return code, s, true
	case 'x':
		if s == "" {
			return bad(s)
		}
		if c, s, ok = p.nextRune(s); !ok {
			return 0, s, false
		}
		if c == '{' {
			if c, s, ok = p.nextRune(s); !ok {
				return 0, s, false
			}
			nhex, code := 0, rune(0)
			for isHex(c) {
				nhex++
				code = code*16 + unhex(c)
				if code > latin1Max || s == "" {
					return bad(s)
				}
				if c, s, ok = p.nextRune(s); !ok {
					return 0, s, false
				}
			}
			if c != '}' || nhex == 0 {
				return bad(s)
			}
			return code, s, true
		}
		if s == "" {
			return bad(s)
		}
		c1, rest, ok := p.nextRune(s)
		if !ok {
			return 0, rest, false
		}
		if !isHex(c) || !isHex(c1) {
			return bad(rest)
		}
		return unhex(c)*16 + unhex(c1), rest, true
	case 'n':
		return '\n', s, true
	case 'r':
		return '\r', s, true
	case 't':
		return '\t', s, true
	case 'a':
		return '\a', s, true
	case 'f':
		return '\f', s, true
	case 'v':
		return '\v', s, true
	}
	if c < runeSelf && !isAlnum(c) {
		return c, s, true // escaped punctuation is itself
	}
	return bad(s)
}

// parseCCName reads a POSIX class such as [:alpha:] inside a class.
func (p *parser) parseCCName(s string, b *ccBuilder) (string, int) {
	if len(s) < 2 || s[0] != '[' || s[1] != ':' {
		return s, parseNothing
	}
	end := strings.Index(s[2:], ":]")
	if end < 0 {
		return s, parseNothing
	}
	name := s[:end+4]
	g, ok := posixGroups[name]
	if !ok {
		p.fail(errBadCharRange, name)
		return s, parseError
	}
	addGroup(b, g, g.sign, p.flags)
	return s[len(name):], parseOK
}

const (
	parseOK = iota
	parseError
	parseNothing
)

// unicodeClass refuses \p and \P: RE2's Unicode tables are not Go's.
func (p *parser) unicodeClass(s string) bool {
	seq := s
	if i := strings.IndexByte(s, '}'); len(s) > 2 && s[2] == '{' && i > 0 {
		seq = s[:i+1]
	} else if len(s) > 2 {
		_, n := utf8.DecodeRuneInString(s[2:])
		seq = s[:2+n]
	}
	return p.unsupported("Unicode classes (\\p, \\P) cannot be sized exactly; use explicit ranges such as [a-z]", seq)
}

// perlClass returns the Perl class (\d, \s, \w and negations) s starts with.
func perlClass(s string) (group, bool) {
	if len(s) < 2 || s[0] != '\\' {
		return group{}, false
	}
	g, ok := perlGroups[s[:2]]
	return g, ok
}

// parseCCCharacter reads one character of a class.
func (p *parser) parseCCCharacter(s, whole string) (rune, string, bool) {
	if s == "" {
		return 0, s, p.fail(errMissingBracket, whole)
	}
	if s[0] == '\\' {
		return p.parseEscape(s)
	}
	return p.nextRune(s)
}

// parseCharClass reads [...] (s starts with '[').
func (p *parser) parseCharClass(s string) (*node, string, bool) {
	whole := s
	re := &node{op: opCharClass, flags: p.flags &^ foldCase, ccb: &ccBuilder{}}
	s = s[1:]
	negated := false
	if s != "" && s[0] == '^' {
		s = s[1:]
		negated = true
		if p.flags&classNL == 0 || p.flags&neverNL != 0 {
			re.ccb.addRange('\n', '\n')
		}
	}
	first := true
	for s != "" && (s[0] != ']' || first) {
		// '-' is fine anywhere in Perl mode (PerlX is always set here).
		first = false
		if len(s) > 2 && s[0] == '[' && s[1] == ':' {
			rest, st := p.parseCCName(s, re.ccb)
			if st == parseError {
				return nil, s, false
			}
			if st == parseOK {
				s = rest
				continue
			}
		}
		if len(s) > 2 && s[0] == '\\' && (s[1] == 'p' || s[1] == 'P') {
			return nil, s, p.unicodeClass(s)
		}
		if g, ok := perlClass(s); ok {
			addGroup(re.ccb, g, g.sign, p.flags)
			s = s[2:]
			continue
		}
		start := s
		lo, rest, ok := p.parseCCCharacter(s, whole)
		if !ok {
			return nil, rest, false
		}
		s = rest
		hi := lo
		if len(s) >= 2 && s[0] == '-' && s[1] != ']' {
			if hi, rest, ok = p.parseCCCharacter(s[1:], whole); !ok {
				return nil, rest, false
			}
			s = rest
			if hi < lo {
				return nil, s, p.fail(errBadCharRange, start[:len(start)-len(s)])
			}
		}
		// An explicit range keeps newline: ClassNL.
		re.ccb.addRangeFlags(lo, hi, p.flags|classNL)
	}
	if s == "" {
		return nil, s, p.fail(errMissingBracket, whole)
	}
	s = s[1:]
	if negated {
		re.ccb.negate()
	}
	return re, s, true
}

// validCaptureName accepts what RE2 accepts among ASCII names; names
// with other letters are refused (RE2 checks them against its Unicode
// tables).
func (p *parser) validCaptureName(name, capture string) bool {
	if name == "" {
		return p.fail(errBadNamedCapture, capture)
	}
	for _, r := range name {
		switch {
		case r == '_' || isAlnum(r):
		case r >= runeSelf:
			return p.unsupported("capture names other than [0-9A-Za-z_]+ are not accepted", capture)
		default:
			return p.fail(errBadNamedCapture, capture)
		}
	}
	return true
}

// parsePerlFlags reads (?flags), (?flags:, (?P<name> and (?<name>.
func (p *parser) parsePerlFlags(s string) (string, bool) {
	t := s
	if (len(t) > 3 && (t[2] == '=' || t[2] == '!')) || (len(t) > 4 && t[2] == '<' && (t[3] == '=' || t[3] == '!')) {
		n := 3
		if t[2] == '<' {
			n = 4
		}
		return s, p.fail(errBadPerlOp, t[:n])
	}
	if (len(t) > 4 && t[2] == 'P' && t[3] == '<') || (len(t) > 3 && t[2] == '<') {
		begin := 3
		if t[2] == 'P' {
			begin = 4
		}
		end := strings.IndexByte(t[begin:], '>')
		if end < 0 {
			if !utf8.ValidString(t) {
				return s, p.fail(errBadUTF8, "")
			}
			return s, p.fail(errBadNamedCapture, t)
		}
		end += begin
		capture, name := t[:end+1], t[begin:end]
		if !utf8.ValidString(name) {
			return s, p.fail(errBadUTF8, "")
		}
		if !p.validCaptureName(name, capture) || !p.doLeftParen(true) {
			return s, false
		}
		return s[len(capture):], true
	}
	t = t[2:]
	negated, sawFlag := false, false
	nf := p.flags
	badOp := func() (string, bool) { return s, p.fail(errBadPerlOp, s[:len(s)-len(t)]) }
	for done := false; !done; {
		if t == "" {
			return badOp()
		}
		c, rest, ok := p.nextRune(t)
		if !ok {
			return s, false
		}
		t = rest
		switch c {
		case 'i':
			sawFlag = true
			if negated {
				nf &^= foldCase
			} else {
				nf |= foldCase
			}
		case 'm': // the opposite of OneLine
			sawFlag = true
			if negated {
				nf |= oneLine
			} else {
				nf &^= oneLine
			}
		case 's':
			sawFlag = true
			if negated {
				nf &^= dotNL
			} else {
				nf |= dotNL
			}
		case 'U':
			sawFlag = true
			if negated {
				nf &^= nonGreedy
			} else {
				nf |= nonGreedy
			}
		case '-':
			if negated {
				return badOp()
			}
			negated, sawFlag = true, false
		case ':':
			if !p.doLeftParen(false) {
				return s, false
			}
			done = true
		case ')':
			done = true
		default:
			return badOp()
		}
	}
	if negated && !sawFlag {
		return badOp()
	}
	p.flags = nf
	return t, true
}

// parse is RE2's Regexp::Parse.
func parse(s string, f flags) (*node, *Error) {
	if f&latin1 != 0 {
		s = latin1ToUTF8(s)
	}
	p := &parser{flags: f, whole: s}
	t := s
	// lastUnary is the input from the previous repetition operator on, if
	// the previous piece was one: RE2 refuses to stack them (a**).
	lastUnary := ""
	for t != "" {
		if p.nsubs > maxSubs {
			p.unsupported("patterns with more than 65535 pieces are not accepted", "")
			return nil, p.err
		}
		isUnary := ""
		ok := true
		switch t[0] {
		default:
			var r rune
			if r, t, ok = p.nextRune(t); ok {
				ok = p.pushLiteral(r)
			}
		case '(':
			if p.flags&perlX != 0 && len(t) >= 2 && t[1] == '?' {
				t, ok = p.parsePerlFlags(t)
				break
			}
			ok = p.doLeftParen(p.flags&neverCapture == 0)
			t = t[1:]
		case '|':
			ok = p.doVerticalBar()
			t = t[1:]
		case ')':
			ok = p.doRightParen()
			t = t[1:]
		case '^':
			ok = p.pushCaret()
			t = t[1:]
		case '$':
			ok = p.pushDollar()
			t = t[1:]
		case '.':
			ok = p.pushDot()
			t = t[1:]
		case '[':
			var re *node
			if re, t, ok = p.parseCharClass(t); ok {
				ok = p.push(re)
			}
		case '*', '+', '?':
			o := map[byte]op{'*': opStar, '+': opPlus, '?': opQuest}[t[0]]
			opstr := t
			t = t[1:]
			nongreedy := false
			if p.flags&perlX != 0 {
				if t != "" && t[0] == '?' {
					nongreedy = true
					t = t[1:]
				}
				if lastUnary != "" {
					p.fail(errRepeatOp, lastUnary[:len(lastUnary)-len(t)])
					return nil, p.err
				}
			}
			ok = p.pushRepeatOp(o, opstr[:len(opstr)-len(t)], nongreedy)
			isUnary = opstr
		case '{':
			lo, hi, rest, isRep := parseRepetition(t)
			if !isRep {
				ok = p.pushLiteral('{')
				t = t[1:]
				break
			}
			opstr := t
			t = rest
			nongreedy := false
			if p.flags&perlX != 0 {
				if t != "" && t[0] == '?' {
					nongreedy = true
					t = t[1:]
				}
				if lastUnary != "" {
					p.fail(errRepeatOp, lastUnary[:len(lastUnary)-len(t)])
					return nil, p.err
				}
			}
			ok = p.pushRepetition(lo, hi, opstr[:len(opstr)-len(t)], nongreedy)
			isUnary = opstr
		case '\\':
			t, ok = p.parseBackslash(t)
		}
		if !ok {
			if p.err == nil {
				p.fail(errInternal, "")
			}
			return nil, p.err
		}
		lastUnary = isUnary
	}
	re := p.doFinish()
	if re == nil {
		return nil, p.err
	}
	return re, nil
}

// parseBackslash handles what a backslash starts outside a class.
func (p *parser) parseBackslash(t string) (string, bool) {
	if p.flags&perlB != 0 && len(t) >= 2 && (t[1] == 'b' || t[1] == 'B') {
		if t[1] == 'b' {
			return t[2:], p.pushSimple(opWordBoundary)
		}
		return t[2:], p.pushSimple(opNoWordBoundary)
	}
	if p.flags&perlX != 0 && len(t) >= 2 {
		switch t[1] {
		case 'A':
			return t[2:], p.pushSimple(opBeginText)
		case 'z':
			return t[2:], p.pushSimple(opEndText)
		case 'C':
			return t[2:], p.pushSimple(opAnyByte)
		case 'Q':
			t = t[2:]
			for t != "" {
				if len(t) >= 2 && t[0] == '\\' && t[1] == 'E' {
					t = t[2:]
					break
				}
				r, rest, ok := p.nextRune(t)
				if !ok {
					return rest, false
				}
				t = rest
				if !p.pushLiteral(r) {
					return t, false
				}
			}
			return t, true
		}
	}
	if len(t) >= 2 && (t[1] == 'p' || t[1] == 'P') && p.flags&unicodeGroups != 0 {
		return t, p.unicodeClass(t)
	}
	if g, ok := perlClass(t); ok && p.flags&perlClasses != 0 {
		re := &node{op: opCharClass, flags: p.flags &^ foldCase, ccb: &ccBuilder{}}
		addGroup(re.ccb, g, g.sign, p.flags)
		return t[2:], p.push(re)
	}
	r, rest, ok := p.parseEscape(t)
	if !ok {
		return rest, false
	}
	return rest, p.pushLiteral(r)
}

// latin1ToUTF8 reads every byte of s as a Latin-1 character, as RE2 does
// with a Latin-1 pattern: the UTF-8 bytes of "é" are the two characters
// "Ã©".
func latin1ToUTF8(s string) string {
	var b strings.Builder
	b.Grow(len(s) * 2)
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}
