package re2

import "sort"

// Instruction opcodes (RE2's InstOp).
type instOp uint8

const (
	instFail instOp = iota
	instAlt
	instAltMatch
	instByteRange
	instCapture
	instEmptyWidth
	instMatch
	instNop
)

// inst is one instruction. Only what the program size depends on is kept:
// the graph (out, out1) and what identifies a byte range.
type inst struct {
	op       instOp
	out      uint32
	out1     uint32
	lo, hi   byte
	foldcase bool
}

// patchList threads the unfilled exits of a fragment through the out
// fields themselves: an entry is id<<1 (out) or id<<1|1 (out1).
type patchList struct{ head, tail uint32 }

// frag is a compiled fragment: its entry, its exits, and whether it can
// match the empty string.
type frag struct {
	begin    uint32
	end      patchList
	nullable bool
}

// maxInst bounds the work on one pattern: a program this large is
// thousands of times over any limit Envoy uses.
const maxInst = MaxInstructions

// compiler is RE2's Compiler for Latin-1, instruction for instruction: the
// program size depends on which instructions exist, and the flattening on
// their numbering, so both follow RE2 exactly.
type compiler struct {
	insts     []inst
	failed    bool
	runeRange frag
}

func (c *compiler) patch(l patchList, p uint32) {
	for l.head != 0 {
		ip := &c.insts[l.head>>1]
		if l.head&1 != 0 {
			l.head, ip.out1 = ip.out1, p
		} else {
			l.head, ip.out = ip.out, p
		}
	}
}

func (c *compiler) appendList(l1, l2 patchList) patchList {
	if l1.head == 0 {
		return l2
	}
	if l2.head == 0 {
		return l1
	}
	ip := &c.insts[l1.tail>>1]
	if l1.tail&1 != 0 {
		ip.out1 = l2.head
	} else {
		ip.out = l2.head
	}
	return patchList{l1.head, l2.tail}
}

func mkList(p uint32) patchList { return patchList{p, p} }

func (c *compiler) alloc(n int) (uint32, bool) {
	if c.failed || len(c.insts)+n > maxInst {
		c.failed = true
		return 0, false
	}
	id := uint32(len(c.insts))
	for i := 0; i < n; i++ {
		c.insts = append(c.insts, inst{})
	}
	return id, true
}

func isNoMatch(f frag) bool { return f.begin == 0 }

func (c *compiler) cat(a, b frag) frag {
	if isNoMatch(a) || isNoMatch(b) {
		return frag{}
	}
	// Elide a leading no-op.
	if begin := c.insts[a.begin]; begin.op == instNop && a.end.head == a.begin<<1 && begin.out == 0 {
		c.patch(a.end, b.begin)
		return b
	}
	c.patch(a.end, b.begin)
	return frag{a.begin, b.end, a.nullable && b.nullable}
}

func (c *compiler) alt(a, b frag) frag {
	if isNoMatch(a) {
		return b
	}
	if isNoMatch(b) {
		return a
	}
	id, ok := c.alloc(1)
	if !ok {
		return frag{}
	}
	c.insts[id] = inst{op: instAlt, out: a.begin, out1: b.begin}
	return frag{id, c.appendList(a.end, b.end), a.nullable || b.nullable}
}

// loop allocates the Alt of a repetition: greedy tries a first.
func (c *compiler) loop(a frag, nongreedy bool) (uint32, patchList, bool) {
	id, ok := c.alloc(1)
	if !ok {
		return 0, patchList{}, false
	}
	if nongreedy {
		c.insts[id] = inst{op: instAlt, out1: a.begin}
		return id, mkList(id << 1), true
	}
	c.insts[id] = inst{op: instAlt, out: a.begin}
	return id, mkList(id<<1 | 1), true
}

func (c *compiler) plus(a frag, nongreedy bool) frag {
	id, pl, ok := c.loop(a, nongreedy)
	if !ok {
		return frag{}
	}
	c.patch(a.end, id)
	return frag{a.begin, pl, a.nullable}
}

func (c *compiler) star(a frag, nongreedy bool) frag {
	// A nullable body needs (a+)? to keep priorities right.
	if a.nullable {
		return c.quest(c.plus(a, nongreedy), nongreedy)
	}
	id, pl, ok := c.loop(a, nongreedy)
	if !ok {
		return frag{}
	}
	c.patch(a.end, id)
	return frag{id, pl, true}
}

func (c *compiler) quest(a frag, nongreedy bool) frag {
	if isNoMatch(a) {
		return c.nop()
	}
	id, pl, ok := c.loop(a, nongreedy)
	if !ok {
		return frag{}
	}
	return frag{id, c.appendList(pl, a.end), true}
}

func (c *compiler) byteRange(lo, hi byte, foldcase bool) frag {
	id, ok := c.alloc(1)
	if !ok {
		return frag{}
	}
	c.insts[id] = inst{op: instByteRange, lo: lo, hi: hi, foldcase: foldcase}
	return frag{id, mkList(id << 1), false}
}

func (c *compiler) nop() frag {
	id, ok := c.alloc(1)
	if !ok {
		return frag{}
	}
	c.insts[id] = inst{op: instNop}
	return frag{id, mkList(id << 1), true}
}

func (c *compiler) match() frag {
	id, ok := c.alloc(1)
	if !ok {
		return frag{}
	}
	c.insts[id] = inst{op: instMatch}
	return frag{id, patchList{}, false}
}

func (c *compiler) emptyWidth() frag {
	id, ok := c.alloc(1)
	if !ok {
		return frag{}
	}
	c.insts[id] = inst{op: instEmptyWidth}
	return frag{id, mkList(id << 1), true}
}

func (c *compiler) capture(a frag) frag {
	if isNoMatch(a) {
		return frag{}
	}
	id, ok := c.alloc(2)
	if !ok {
		return frag{}
	}
	c.insts[id] = inst{op: instCapture, out: a.begin}
	c.insts[id+1] = inst{op: instCapture}
	c.patch(a.end, id+1)
	return frag{id, mkList((id + 1) << 1), a.nullable}
}

// Rune ranges. In Latin-1 a class is an alternation of byte ranges, each
// new range wrapping what came before in one more Alt.

func (c *compiler) beginRange() { c.runeRange = frag{} }

func (c *compiler) addRuneRange(lo, hi rune, foldcase bool) {
	if lo > hi || lo > latin1Max {
		return
	}
	hi = min(hi, latin1Max)
	f := c.byteRange(byte(lo), byte(hi), foldcase)
	c.runeRange.end = c.appendList(c.runeRange.end, f.end)
	if c.failed {
		return
	}
	if c.runeRange.begin == 0 {
		c.runeRange.begin = f.begin
		return
	}
	alt, ok := c.alloc(1)
	if !ok {
		c.runeRange.begin = 0
		return
	}
	c.insts[alt] = inst{op: instAlt, out: c.runeRange.begin, out1: f.begin}
	c.runeRange.begin = alt
}

func (c *compiler) literal(r rune, foldcase bool) frag {
	return c.byteRange(byte(r), byte(r), foldcase)
}

// walk compiles re (every occurrence of a shared subtree again, like
// RE2's WalkExponential).
func (c *compiler) walk(re *node) frag {
	if c.failed {
		return frag{}
	}
	kids := make([]frag, len(re.sub))
	for i, s := range re.sub {
		kids[i] = c.walk(s)
		if c.failed {
			return frag{}
		}
	}
	nongreedy := re.flags&nonGreedy != 0
	switch re.op {
	case opNoMatch:
		return frag{}
	case opEmptyMatch:
		return c.nop()
	case opConcat:
		if len(kids) == 0 {
			return frag{} // RE2 never builds one
		}
		f := kids[0]
		for _, k := range kids[1:] {
			f = c.cat(f, k)
		}
		return f
	case opAlternate:
		f := kids[0]
		for _, k := range kids[1:] {
			f = c.alt(f, k)
		}
		return f
	case opStar:
		return c.star(kids[0], nongreedy)
	case opPlus:
		return c.plus(kids[0], nongreedy)
	case opQuest:
		return c.quest(kids[0], nongreedy)
	case opLiteral, opLiteralString:
		if len(re.runes) == 0 {
			return c.nop()
		}
		var f frag
		for i, r := range re.runes {
			f1 := c.literal(r, re.flags&foldCase != 0)
			if i == 0 {
				f = f1
			} else {
				f = c.cat(f, f1)
			}
		}
		return f
	case opAnyChar:
		c.beginRange()
		c.addRuneRange(0, runeMax, false)
		return c.runeRange
	case opAnyByte:
		return c.byteRange(0, 0xff, false)
	case opCharClass:
		return c.charClass(re.cc)
	case opCapture:
		if re.cap < 0 {
			return kids[0]
		}
		return c.capture(kids[0])
	case opBeginLine, opEndLine, opBeginText, opEndText, opWordBoundary, opNoWordBoundary:
		return c.emptyWidth()
	}
	c.failed = true
	return frag{}
}

// charClass compiles a class; a class that treats A-Z like a-z drops the
// A-Z ranges and folds the others.
func (c *compiler) charClass(cc *charClass) frag {
	if cc.empty() {
		c.failed = true
		return frag{}
	}
	c.beginRange()
	for _, r := range cc.ranges {
		if cc.foldsASCII && 'A' <= r.lo && r.hi <= 'Z' {
			continue
		}
		fold := cc.foldsASCII
		if (r.lo <= 'A' && 'z' <= r.hi) || r.hi < 'A' || 'z' < r.lo || ('Z' < r.lo && r.hi < 'a') {
			fold = false
		}
		c.addRuneRange(r.lo, r.hi, fold)
	}
	return c.runeRange
}

// anchorStart removes a leading \A (looking through concatenations and
// captures, at most four levels deep) and reports whether it did.
func anchorStart(re *node, depth int) (*node, bool) {
	if re == nil || depth >= 4 {
		return re, false
	}
	switch re.op {
	case opConcat:
		if len(re.sub) > 0 {
			if s, ok := anchorStart(re.sub[0], depth+1); ok {
				subs := append([]*node{s}, re.sub[1:]...)
				return concat(subs, re.flags), true
			}
		}
	case opCapture:
		if s, ok := anchorStart(re.sub[0], depth+1); ok {
			return &node{op: opCapture, flags: re.flags, cap: re.cap, sub: []*node{s}}, true
		}
	case opBeginText:
		return newNode(opEmptyMatch, re.flags), true
	}
	return re, false
}

// anchorEnd removes a trailing \z the same way.
func anchorEnd(re *node, depth int) (*node, bool) {
	if re == nil || depth >= 4 {
		return re, false
	}
	switch re.op {
	case opConcat:
		if n := len(re.sub); n > 0 {
			if s, ok := anchorEnd(re.sub[n-1], depth+1); ok {
				subs := append(append([]*node(nil), re.sub[:n-1]...), s)
				return concat(subs, re.flags), true
			}
		}
	case opCapture:
		if s, ok := anchorEnd(re.sub[0], depth+1); ok {
			return &node{op: opCapture, flags: re.flags, cap: re.cap, sub: []*node{s}}, true
		}
	case opEndText:
		return newNode(opEmptyMatch, re.flags), true
	}
	return re, false
}

// program is a compiled, not yet flattened program.
type program struct {
	insts                  []inst
	start, startUnanchored uint32
}

// compileProg is RE2's Compiler::Compile (forward) up to Finish.
func compileProg(re *node) (*program, bool) {
	c := &compiler{}
	c.alloc(1) // instruction 0: Fail
	sre := simplify(re)
	sre, anchored := anchorStart(sre, 0)
	sre, _ = anchorEnd(sre, 0)
	all := c.walk(sre)
	if c.failed {
		return nil, false
	}
	all = c.cat(all, c.match())
	p := &program{start: all.begin}
	if !anchored {
		dotStar := c.star(c.byteRange(0, 0xff, false), true)
		all = c.cat(dotStar, all)
	}
	p.startUnanchored = all.begin
	if c.failed {
		return nil, false
	}
	p.insts = c.insts
	if p.start == 0 && p.startUnanchored == 0 {
		p.insts = p.insts[:1] // no possible match: Fail only
	}
	return p, true
}

// optimize is RE2's Prog::Optimize: skip Nops and mark the Alts that loop
// over any byte before a match (AltMatch), for what start reaches.
func (p *program) optimize() {
	q := newWorkq(len(p.insts))
	q.add(p.start)
	for i := 0; i < len(q.order); i++ {
		ip := &p.insts[q.order[i]]
		ip.out = p.skipNops(ip.out)
		q.add(ip.out)
		if ip.op == instAlt {
			ip.out1 = p.skipNops(ip.out1)
			q.add(ip.out1)
		}
	}
	q = newWorkq(len(p.insts))
	q.add(p.start)
	for i := 0; i < len(q.order); i++ {
		id := q.order[i]
		ip := &p.insts[id]
		q.add(ip.out)
		if ip.op == instAlt {
			q.add(ip.out1)
		}
		if ip.op != instAlt {
			continue
		}
		j, k := p.insts[ip.out], p.insts[ip.out1]
		if j.op == instByteRange && j.out == id && j.lo == 0 && j.hi == 0xff && p.isMatch(k) {
			ip.op = instAltMatch
			continue
		}
		if p.isMatch(j) && k.op == instByteRange && k.out == id && k.lo == 0 && k.hi == 0xff {
			ip.op = instAltMatch
		}
	}
}

func (p *program) skipNops(j uint32) uint32 {
	for j != 0 && p.insts[j].op == instNop {
		j = p.insts[j].out
	}
	return j
}

// isMatch: a guaranteed match at the end of the text, maybe after captures.
func (p *program) isMatch(ip inst) bool {
	for {
		switch ip.op {
		case instCapture, instNop:
			ip = p.insts[ip.out]
		case instMatch:
			return true
		default:
			return false
		}
	}
}

// workq is an insertion-ordered set of instruction ids (0 never enters).
type workq struct {
	seen  []bool
	order []uint32
}

func newWorkq(n int) *workq { return &workq{seen: make([]bool, n)} }

func (q *workq) add(id uint32) {
	if id != 0 && !q.seen[id] {
		q.seen[id] = true
		q.order = append(q.order, id)
	}
}

// flatSize is the size of the program once RE2's Prog::Flatten has turned
// it into lists: one list per root (Fail, the starts, the targets of
// non-epsilon instructions, and the instructions an epsilon path reaches
// from more than one root), each holding the non-epsilon instructions its
// root reaches through Alt and Nop, plus a Nop per other root reached and
// an extra instruction per AltMatch.
func (p *program) flatSize() int {
	n := len(p.insts)
	isRoot := make([]bool, n)
	var roots []uint32
	addRoot := func(id uint32) {
		if !isRoot[id] {
			isRoot[id] = true
			roots = append(roots, id)
		}
	}
	preds := map[uint32][]uint32{}
	addRoot(0)
	addRoot(p.startUnanchored)
	addRoot(p.start)

	// Successor roots and the predecessors of Alt targets.
	reach := newMarks(n)
	stk := []uint32{p.startUnanchored}
	for len(stk) > 0 {
		id := stk[len(stk)-1]
		stk = stk[:len(stk)-1]
		for !reach.has(id) {
			reach.mark(id)
			ip := p.insts[id]
			switch ip.op {
			case instAlt, instAltMatch:
				preds[ip.out] = append(preds[ip.out], id)
				preds[ip.out1] = append(preds[ip.out1], id)
				stk = append(stk, ip.out1)
				id = ip.out
				continue
			case instByteRange, instCapture, instEmptyWidth:
				addRoot(ip.out)
				id = ip.out
				continue
			case instNop:
				id = ip.out
				continue
			}
			break
		}
	}

	// Dominator roots, visiting the roots found so far from the highest id
	// down (not Fail, not the starts).
	sorted := append([]uint32(nil), roots...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	for i := len(sorted) - 1; i > 0; i-- {
		root := sorted[i]
		if root == p.startUnanchored || root == p.start {
			continue
		}
		reached := p.epsilonReach(root, isRoot, reach)
		for _, id := range reached {
			for _, pred := range preds[id] {
				if !reach.has(pred) {
					addRoot(id)
				}
			}
		}
	}

	size := 0
	for _, root := range roots {
		size += p.listSize(root, isRoot, reach)
	}
	return size
}

// epsilonReach lists, in visiting order, what root reaches through Alt and
// Nop without entering another root (RE2's MarkDominator walk); marks is
// left holding exactly that set.
func (p *program) epsilonReach(root uint32, isRoot []bool, marks *marks) []uint32 {
	marks.clear()
	var out []uint32
	stk := []uint32{root}
	for len(stk) > 0 {
		id := stk[len(stk)-1]
		stk = stk[:len(stk)-1]
		for !marks.has(id) {
			marks.mark(id)
			out = append(out, id)
			if id != root && isRoot[id] {
				break
			}
			ip := p.insts[id]
			if ip.op == instAlt || ip.op == instAltMatch {
				stk = append(stk, ip.out1)
				id = ip.out
				continue
			}
			if ip.op == instNop {
				id = ip.out
				continue
			}
			break
		}
	}
	return out
}

// listSize counts the instructions RE2's EmitList writes for root.
func (p *program) listSize(root uint32, isRoot []bool, marks *marks) int {
	marks.clear()
	size := 0
	stk := []uint32{root}
	for len(stk) > 0 {
		id := stk[len(stk)-1]
		stk = stk[:len(stk)-1]
		for !marks.has(id) {
			marks.mark(id)
			if id != root && isRoot[id] {
				size++ // a Nop to the other list
				break
			}
			ip := p.insts[id]
			switch ip.op {
			case instAltMatch:
				size++
				fallthrough
			case instAlt:
				stk = append(stk, ip.out1)
				id = ip.out
				continue
			case instNop:
				id = ip.out
				continue
			}
			size++ // ByteRange, Capture, EmptyWidth, Match, Fail
			break
		}
	}
	return size
}

// marks is a set of ids that clears in time proportional to its size.
type marks struct {
	on   []bool
	list []uint32
}

func newMarks(n int) *marks { return &marks{on: make([]bool, n)} }

func (m *marks) has(id uint32) bool { return m.on[id] }

func (m *marks) mark(id uint32) {
	m.on[id] = true
	m.list = append(m.list, id)
}

func (m *marks) clear() {
	for _, id := range m.list {
		m.on[id] = false
	}
	m.list = m.list[:0]
}
