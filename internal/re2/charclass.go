package re2

import "sort"

// runeMax is RE2's Runemax, the largest rune of a class before it is cut
// to the encoding; latin1Max is the largest rune in Latin-1 (rune_max).
const (
	runeMax   = 0x10FFFF
	latin1Max = 0xFF
)

// runeSelf: runes below it are ASCII.
const runeSelf = 0x80

// rng is an inclusive range of runes.
type rng struct{ lo, hi rune }

// alphaMask has one bit per ASCII letter.
const alphaMask = 1<<26 - 1

// ccBuilder is a set of runes being built: sorted ranges that neither
// overlap nor abut, plus bitmaps of the ASCII letters present (RE2's
// CharClassBuilder). AddRange reports whether the set grew, which
// addFoldedRange relies on.
type ccBuilder struct {
	ranges       []rng
	upper, lower uint32 // bitmaps of A-Z and a-z
	nrunes       int
}

// find returns the index of the range containing r, or -1.
func (b *ccBuilder) find(r rune) int {
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].hi >= r })
	if i < len(b.ranges) && b.ranges[i].lo <= r {
		return i
	}
	return -1
}

func (b *ccBuilder) remove(i int) {
	b.nrunes -= int(b.ranges[i].hi - b.ranges[i].lo + 1)
	b.ranges = append(b.ranges[:i], b.ranges[i+1:]...)
}

// addRange adds lo-hi and reports whether the set changed.
func (b *ccBuilder) addRange(lo, hi rune) bool {
	if hi < lo {
		return false
	}
	if lo <= 'z' && hi >= 'A' {
		if lo1, hi1 := max(lo, 'A'), min(hi, 'Z'); lo1 <= hi1 {
			b.upper |= (1<<(hi1-lo1+1) - 1) << (lo1 - 'A')
		}
		if lo1, hi1 := max(lo, 'a'), min(hi, 'z'); lo1 <= hi1 {
			b.lower |= (1<<(hi1-lo1+1) - 1) << (lo1 - 'a')
		}
	}
	if i := b.find(lo); i >= 0 && hi <= b.ranges[i].hi {
		return false // already there
	}
	if lo > 0 {
		if i := b.find(lo - 1); i >= 0 {
			lo = b.ranges[i].lo
			hi = max(hi, b.ranges[i].hi)
			b.remove(i)
		}
	}
	if hi < runeMax {
		if i := b.find(hi + 1); i >= 0 {
			hi = b.ranges[i].hi
			b.remove(i)
		}
	}
	// Whatever overlaps lo-hi now lies inside it.
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].hi >= lo })
	for i < len(b.ranges) && b.ranges[i].lo <= hi {
		b.remove(i)
	}
	b.ranges = append(b.ranges, rng{})
	copy(b.ranges[i+1:], b.ranges[i:])
	b.ranges[i] = rng{lo, hi}
	b.nrunes += int(hi - lo + 1)
	return true
}

func (b *ccBuilder) contains(r rune) bool { return b.find(r) >= 0 }

func (b *ccBuilder) addClass(o *ccBuilder) {
	for _, r := range o.ranges {
		b.addRange(r.lo, r.hi)
	}
}

func (b *ccBuilder) negate() {
	var v []rng
	next := rune(0)
	for _, r := range b.ranges {
		if r.lo > next {
			v = append(v, rng{next, r.lo - 1})
		}
		next = r.hi + 1
	}
	if next <= runeMax {
		v = append(v, rng{next, runeMax})
	}
	b.ranges = v
	b.upper = alphaMask &^ b.upper
	b.lower = alphaMask &^ b.lower
	b.nrunes = runeMax + 1 - b.nrunes
}

func (b *ccBuilder) foldsASCII() bool { return (b.upper^b.lower)&alphaMask == 0 }

// addRangeFlags adds lo-hi under parse flags: without ClassNL (or with
// NeverNL) newline is left out; with FoldCase the case variants come too.
func (b *ccBuilder) addRangeFlags(lo, hi rune, f flags) {
	cutNL := f&classNL == 0 || f&neverNL != 0
	if cutNL && lo <= '\n' && '\n' <= hi {
		if lo < '\n' {
			b.addRangeFlags(lo, '\n'-1, f)
		}
		if hi > '\n' {
			b.addRangeFlags('\n'+1, hi, f)
		}
		return
	}
	if f&foldCase != 0 {
		b.addFoldedRangeLatin1(lo, hi)
		return
	}
	b.addRange(lo, hi)
}

// addFoldedRangeLatin1 adds lo-hi and the other case of its ASCII letters
// (in Latin-1, RE2 folds nothing else).
func (b *ccBuilder) addFoldedRangeLatin1(lo, hi rune) {
	for ; lo <= hi; lo++ {
		b.addRange(lo, lo)
		switch {
		case 'A' <= lo && lo <= 'Z':
			b.addRange(lo-'A'+'a', lo-'A'+'a')
		case 'a' <= lo && lo <= 'z':
			b.addRange(lo-'a'+'A', lo-'a'+'A')
		}
	}
}

// removeAbove drops the runes above r (RE2's RemoveAbove; the letter
// bitmaps are unaffected for r >= 'z').
func (b *ccBuilder) removeAbove(r rune) {
	for i := len(b.ranges) - 1; i >= 0 && b.ranges[i].hi > r; i-- {
		rg := b.ranges[i]
		b.remove(i)
		if rg.lo <= r {
			b.ranges = append(b.ranges, rng{rg.lo, r})
			b.nrunes += int(r - rg.lo + 1)
		}
	}
}

// charClass is a finished class (RE2's CharClass).
type charClass struct {
	ranges     []rng
	nrunes     int
	foldsASCII bool
}

func (b *ccBuilder) finish() *charClass {
	return &charClass{ranges: append([]rng(nil), b.ranges...), nrunes: b.nrunes, foldsASCII: b.foldsASCII()}
}

func (c *charClass) empty() bool { return c.nrunes == 0 }
func (c *charClass) full() bool  { return c.nrunes == runeMax+1 }

func (c *charClass) equal(o *charClass) bool {
	if c.nrunes != o.nrunes || len(c.ranges) != len(o.ranges) {
		return false
	}
	for i := range c.ranges {
		if c.ranges[i] != o.ranges[i] {
			return false
		}
	}
	return true
}

// group is a named class: the Perl (\d) and POSIX ([:alpha:]) groups, all
// ASCII, as RE2's syntax documents them.
type group struct {
	sign   int
	ranges []rng
}

var (
	digitRanges = []rng{{'0', '9'}}
	spaceRanges = []rng{{'\t', '\n'}, {'\f', '\r'}, {' ', ' '}} // Perl \s: no \v
	wordRanges  = []rng{{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}
)

var perlGroups = map[string]group{
	`\d`: {+1, digitRanges}, `\D`: {-1, digitRanges},
	`\s`: {+1, spaceRanges}, `\S`: {-1, spaceRanges},
	`\w`: {+1, wordRanges}, `\W`: {-1, wordRanges},
}

var posixGroups = func() map[string]group {
	classes := map[string][]rng{
		"alnum":  {{'0', '9'}, {'A', 'Z'}, {'a', 'z'}},
		"alpha":  {{'A', 'Z'}, {'a', 'z'}},
		"ascii":  {{0, 0x7f}},
		"blank":  {{'\t', '\t'}, {' ', ' '}},
		"cntrl":  {{0, 0x1f}, {0x7f, 0x7f}},
		"digit":  {{'0', '9'}},
		"graph":  {{'!', '~'}},
		"lower":  {{'a', 'z'}},
		"print":  {{' ', '~'}},
		"punct":  {{'!', '/'}, {':', '@'}, {'[', '`'}, {'{', '~'}},
		"space":  {{'\t', '\r'}, {' ', ' '}},
		"upper":  {{'A', 'Z'}},
		"word":   {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}},
		"xdigit": {{'0', '9'}, {'A', 'F'}, {'a', 'f'}},
	}
	out := map[string]group{}
	for name, rs := range classes {
		out["[:"+name+":]"] = group{+1, rs}
		out["[:^"+name+":]"] = group{-1, rs}
	}
	return out
}()

// addGroup adds a group (sign +1) or its negation (sign -1) to b.
func addGroup(b *ccBuilder, g group, sign int, f flags) {
	if sign > 0 {
		for _, r := range g.ranges {
			b.addRangeFlags(r.lo, r.hi, f)
		}
		return
	}
	if f&foldCase != 0 {
		// The negation of a folded group: fold first, then negate.
		var tmp ccBuilder
		addGroup(&tmp, g, +1, f)
		if f&classNL == 0 || f&neverNL != 0 {
			tmp.addRange('\n', '\n')
		}
		tmp.negate()
		b.addClass(&tmp)
		return
	}
	next := rune(0)
	for _, r := range g.ranges {
		if next < r.lo {
			b.addRangeFlags(next, r.lo-1, f)
		}
		next = r.hi + 1
	}
	if next <= runeMax {
		b.addRangeFlags(next, runeMax, f)
	}
}
