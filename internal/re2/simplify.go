package re2

// simplify is RE2's Regexp::Simplify: coalesce adjacent repeats of one
// thing (a*a+ -> a{1,}), then expand counted repetitions and resolve empty
// and full classes. Unchanged subtrees are returned as the same pointers,
// which is what RE2's walkers do and what the changed-children tests
// below rely on.
func simplify(re *node) *node { return simplifyWalk(coalesceWalk(re)) }

func childrenChanged(re *node, kids []*node) bool {
	for i, k := range kids {
		if k != re.sub[i] {
			return true
		}
	}
	return false
}

func withSubs(re *node, kids []*node) *node {
	return &node{op: re.op, flags: re.flags, min: re.min, max: re.max, cap: re.cap, sub: kids}
}

func coalesceWalk(re *node) *node {
	if len(re.sub) == 0 {
		return re
	}
	kids := make([]*node, len(re.sub))
	for i, s := range re.sub {
		kids[i] = coalesceWalk(s)
	}
	if re.op != opConcat {
		if !childrenChanged(re, kids) {
			return re
		}
		return withSubs(re, kids)
	}
	can := false
	for i := 0; i+1 < len(kids); i++ {
		if canCoalesce(kids[i], kids[i+1]) {
			can = true
			break
		}
	}
	if !can {
		if !childrenChanged(re, kids) {
			return re
		}
		return &node{op: opConcat, flags: re.flags, sub: kids}
	}
	for i := 0; i+1 < len(kids); i++ {
		if canCoalesce(kids[i], kids[i+1]) {
			kids[i], kids[i+1] = doCoalesce(kids[i], kids[i+1])
		}
	}
	out := &node{op: opConcat, flags: re.flags}
	for _, k := range kids {
		if k.op != opEmptyMatch {
			out.sub = append(out.sub, k)
		}
	}
	return out
}

func isRepeatOp(o op) bool { return o == opStar || o == opPlus || o == opQuest || o == opRepeat }

func isCharLike(o op) bool {
	return o == opLiteral || o == opCharClass || o == opAnyChar || o == opAnyByte
}

func canCoalesce(r1, r2 *node) bool {
	if !isRepeatOp(r1.op) || !isCharLike(r1.sub[0].op) {
		return false
	}
	s := r1.sub[0]
	if isRepeatOp(r2.op) && equal(s, r2.sub[0]) && r1.flags&nonGreedy == r2.flags&nonGreedy {
		return true
	}
	if equal(s, r2) {
		return true
	}
	return s.op == opLiteral && r2.op == opLiteralString && r2.runes[0] == s.runes[0] &&
		s.flags&foldCase == r2.flags&foldCase
}

// doCoalesce merges r1 (a repeat) with r2 into one counted repeat; what is
// left of r2 (an EmptyMatch, or the rest of a string) comes second.
func doCoalesce(r1, r2 *node) (*node, *node) {
	nre := &node{op: opRepeat, flags: r1.flags, sub: []*node{r1.sub[0]}}
	switch r1.op {
	case opStar:
		nre.min, nre.max = 0, -1
	case opPlus:
		nre.min, nre.max = 1, -1
	case opQuest:
		nre.min, nre.max = 0, 1
	case opRepeat:
		nre.min, nre.max = r1.min, r1.max
	}
	empty := newNode(opEmptyMatch, 0)
	switch r2.op {
	case opStar:
		nre.max = -1
	case opPlus:
		nre.min++
		nre.max = -1
	case opQuest:
		if nre.max != -1 {
			nre.max++
		}
	case opRepeat:
		nre.min += r2.min
		if r2.max == -1 {
			nre.max = -1
		} else if nre.max != -1 {
			nre.max += r2.max
		}
	case opLiteral, opCharClass, opAnyChar, opAnyByte:
		nre.min++
		if nre.max != -1 {
			nre.max++
		}
	case opLiteralString:
		r := r1.sub[0].runes[0]
		n := 1
		for n < len(r2.runes) && r2.runes[n] == r {
			n++
		}
		nre.min += n
		if nre.max != -1 {
			nre.max += n
		}
		if n < len(r2.runes) {
			return nre, literalString(r2.runes[n:], r2.flags)
		}
	}
	return empty, nre
}

func simplifyWalk(re *node) *node {
	var kids []*node
	if len(re.sub) > 0 {
		kids = make([]*node, len(re.sub))
		for i, s := range re.sub {
			kids[i] = simplifyWalk(s)
		}
	}
	switch re.op {
	case opConcat, opAlternate:
		if !childrenChanged(re, kids) {
			return re
		}
		return withSubs(re, kids)
	case opCapture:
		if kids[0] == re.sub[0] {
			return re
		}
		return withSubs(re, kids)
	case opStar, opPlus, opQuest:
		sub := kids[0]
		if sub.op == opEmptyMatch {
			return sub
		}
		if sub == re.sub[0] {
			return re
		}
		if re.op == sub.op && re.flags == sub.flags {
			return sub
		}
		return withSubs(re, kids)
	case opRepeat:
		if kids[0].op == opEmptyMatch {
			return kids[0]
		}
		return simplifyRepeat(kids[0], re.min, re.max, re.flags)
	case opCharClass:
		switch {
		case re.cc.empty():
			return newNode(opNoMatch, re.flags)
		case re.cc.full():
			return newNode(opAnyChar, re.flags)
		}
	}
	return re
}

func isEmptyOp(re *node) bool {
	switch re.op {
	case opBeginLine, opEndLine, opWordBoundary, opNoWordBoundary, opBeginText, opEndText:
		return true
	}
	return false
}

// simplifyRepeat expands x{min,max}: x{2,} is xx+, x{2,4} is xx(x(x)?)?.
// A repeat of empty-width assertions matches at most once.
func simplifyRepeat(re *node, lo, hi int, f flags) *node {
	allEmpty := isEmptyOp(re)
	if !allEmpty && (re.op == opConcat || re.op == opAlternate) {
		allEmpty = true
		for _, s := range re.sub {
			allEmpty = allEmpty && isEmptyOp(s)
		}
	}
	if allEmpty {
		// RE2 takes std::min of each: an unbounded hi (-1) stays unbounded.
		lo, hi = min(lo, 1), min(hi, 1)
	}
	if hi == -1 {
		switch lo {
		case 0:
			return starPlusOrQuest(opStar, re, f)
		case 1:
			return starPlusOrQuest(opPlus, re, f)
		}
		subs := make([]*node, lo)
		for i := 0; i < lo-1; i++ {
			subs[i] = re
		}
		subs[lo-1] = starPlusOrQuest(opPlus, re, f)
		return concat(subs, f)
	}
	if lo == 0 && hi == 0 {
		return newNode(opEmptyMatch, f)
	}
	if lo == 1 && hi == 1 {
		return re
	}
	var nre *node
	if lo > 0 {
		subs := make([]*node, lo)
		for i := range subs {
			subs[i] = re
		}
		nre = concat(subs, f)
	}
	if hi > lo {
		suf := starPlusOrQuest(opQuest, re, f)
		for i := lo + 1; i < hi; i++ {
			suf = starPlusOrQuest(opQuest, &node{op: opConcat, flags: f, sub: []*node{re, suf}}, f)
		}
		if nre == nil {
			nre = suf
		} else {
			nre = &node{op: opConcat, flags: f, sub: []*node{nre, suf}}
		}
	}
	if nre == nil {
		return newNode(opNoMatch, f)
	}
	return nre
}
