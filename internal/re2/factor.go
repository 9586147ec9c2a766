package re2

// factorAlternation is RE2's Regexp::FactorAlternation: it rewrites the
// subexpressions of an alternation in three rounds, each applied to the
// result of the previous one, and factors the suffixes of rounds 1 and 2
// recursively:
//
//  1. common literal prefixes:   abc|abd     -> ab(?:c|d)
//  2. a common simple first piece: \bx|\by  -> \b(?:x|y)
//  3. runs of literals and classes: a|[b-c] -> [a-c]
func factorAlternation(sub []*node, f flags) []*node {
	return sub[:factorRounds(sub, f)]
}

// splice replaces sub[start:start+n] by prefix (round 3), or by prefix
// followed by the alternation of the first nsuffix factored suffixes.
type splice struct {
	prefix   *node
	start, n int
	nsuffix  int
}

func factorRounds(sub []*node, f flags) int {
	nsub := len(sub)
	for round := 1; round <= 3; round++ {
		var splices []splice
		switch round {
		case 1:
			splices = round1(sub[:nsub])
		case 2:
			splices = round2(sub[:nsub])
		case 3:
			splices = round3(sub[:nsub], f)
		}
		if len(splices) == 0 {
			continue
		}
		if round < 3 {
			for i := range splices {
				sp := &splices[i]
				sp.nsuffix = factorRounds(sub[sp.start:sp.start+sp.n], f)
			}
		}
		out, i := 0, 0
		for _, sp := range splices {
			for i < sp.start {
				sub[out] = sub[i]
				out, i = out+1, i+1
			}
			if round < 3 {
				suffix := alternateNoFactor(sub[sp.start:sp.start+sp.nsuffix], f)
				sub[out] = concat([]*node{sp.prefix, suffix}, f)
			} else {
				sub[out] = sp.prefix
			}
			out, i = out+1, i+sp.n
		}
		for i < nsub {
			sub[out] = sub[i]
			out, i = out+1, i+1
		}
		nsub = out
	}
	return nsub
}

// leadingString returns the literal runes re starts with and their
// folding flag.
func leadingString(re *node) ([]rune, flags) {
	for re.op == opConcat && len(re.sub) > 0 {
		re = re.sub[0]
	}
	f := re.flags & foldCase
	if re.op == opLiteral || re.op == opLiteralString {
		return re.runes, f
	}
	return nil, f
}

// removeLeadingString removes the first n runes of the string re starts
// with, in place, and drops what becomes empty from the enclosing
// concatenations (at most four levels, like RE2).
func removeLeadingString(re *node, n int) {
	var stk []*node
	for re.op == opConcat {
		if len(stk) < 4 {
			stk = append(stk, re)
		}
		re = re.sub[0]
	}
	switch {
	case re.op == opLiteral:
		re.op, re.runes = opEmptyMatch, nil
	case re.op == opLiteralString && n >= len(re.runes):
		re.op, re.runes = opEmptyMatch, nil
	case re.op == opLiteralString && n == len(re.runes)-1:
		re.op, re.runes = opLiteral, []rune{re.runes[len(re.runes)-1]}
	case re.op == opLiteralString:
		re.runes = append([]rune(nil), re.runes[n:]...)
	}
	for d := len(stk) - 1; d >= 0; d-- {
		re := stk[d]
		if re.sub[0].op != opEmptyMatch {
			continue
		}
		if len(re.sub) == 2 {
			*re = *re.sub[1] // the concatenation becomes its second piece
		} else {
			re.sub = re.sub[1:]
		}
	}
}

// leadingRegexp is the first piece of a concatenation, or re itself.
func leadingRegexp(re *node) *node {
	if re.op == opEmptyMatch {
		return nil
	}
	if re.op == opConcat && len(re.sub) >= 2 {
		if re.sub[0].op == opEmptyMatch {
			return nil
		}
		return re.sub[0]
	}
	return re
}

// removeLeadingRegexp returns re without its leading piece.
func removeLeadingRegexp(re *node) *node {
	if re.op == opEmptyMatch {
		return re
	}
	if re.op == opConcat && len(re.sub) >= 2 {
		if re.sub[0].op == opEmptyMatch {
			return re
		}
		if len(re.sub) == 2 {
			return re.sub[1]
		}
		re.sub = re.sub[1:]
		return re
	}
	return newNode(opEmptyMatch, re.flags)
}

func round1(sub []*node) []splice {
	var out []splice
	start := 0
	var runes []rune
	var rf flags
	for i := 0; i <= len(sub); i++ {
		var ri []rune
		var rfi flags
		if i < len(sub) {
			ri, rfi = leadingString(sub[i])
			if rfi == rf {
				same := 0
				for same < len(runes) && same < len(ri) && runes[same] == ri[same] {
					same++
				}
				if same > 0 {
					runes = runes[:same]
					continue
				}
			}
		}
		if i-start >= 2 {
			prefix := literalString(runes, rf)
			for j := start; j < i; j++ {
				removeLeadingString(sub[j], len(runes))
			}
			out = append(out, splice{prefix: prefix, start: start, n: i - start})
		}
		if i < len(sub) {
			start, runes, rf = i, ri, rfi
		}
	}
	return out
}

// factorablePiece reports whether round 2 may factor first: an empty-width
// op, a class, any char or byte, or a fixed repeat of a literal or one of
// those.
func factorablePiece(first *node) bool {
	switch first.op {
	case opBeginLine, opEndLine, opWordBoundary, opNoWordBoundary, opBeginText, opEndText,
		opCharClass, opAnyChar, opAnyByte:
		return true
	case opRepeat:
		switch first.sub[0].op {
		case opLiteral, opCharClass, opAnyChar, opAnyByte:
			return first.min == first.max
		}
	}
	return false
}

func round2(sub []*node) []splice {
	var out []splice
	start := 0
	var first *node
	for i := 0; i <= len(sub); i++ {
		var fi *node
		if i < len(sub) {
			fi = leadingRegexp(sub[i])
			if first != nil && factorablePiece(first) && equal(first, fi) {
				continue
			}
		}
		if i-start >= 2 {
			prefix := first
			for j := start; j < i; j++ {
				sub[j] = removeLeadingRegexp(sub[j])
			}
			out = append(out, splice{prefix: prefix, start: start, n: i - start})
		}
		if i < len(sub) {
			start, first = i, fi
		}
	}
	return out
}

func isLiteralOrClass(re *node) bool { return re.op == opLiteral || re.op == opCharClass }

func round3(sub []*node, f flags) []splice {
	var out []splice
	start := 0
	var first *node
	for i := 0; i <= len(sub); i++ {
		var fi *node
		if i < len(sub) {
			fi = sub[i]
			if first != nil && isLiteralOrClass(first) && isLiteralOrClass(fi) {
				continue
			}
		}
		if i-start >= 2 {
			var b ccBuilder
			for j := start; j < i; j++ {
				re := sub[j]
				if re.op == opCharClass {
					for _, r := range re.cc.ranges {
						b.addRangeFlags(r.lo, r.hi, re.flags)
					}
					continue
				}
				if re.flags&foldCase != 0 {
					// Folding into a fresh class, then merging, adds every
					// variant even when the class already holds the rune.
					var tmp ccBuilder
					tmp.addRangeFlags(re.runes[0], re.runes[0], re.flags)
					b.addClass(&tmp)
				} else {
					b.addRangeFlags(re.runes[0], re.runes[0], re.flags)
				}
			}
			prefix := &node{op: opCharClass, flags: f &^ foldCase, cc: b.finish()}
			out = append(out, splice{prefix: prefix, start: start, n: i - start})
		}
		if i < len(sub) {
			start, first = i, fi
		}
	}
	return out
}
