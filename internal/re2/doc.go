// Package re2 answers, in pure Go, the two questions Envoy asks Google RE2
// about a regular expression before it accepts a configuration: does RE2
// parse it, and what is its program size (RE2::ProgramSize)? Envoy rejects
// a regex whose program size exceeds the runtime value
// re2.max_program_size.error_level (default 100), so weft must know the
// exact number RE2 computes, not an estimate.
//
// Go's regexp/syntax is a port of RE2's parser, but its trees, its
// simplification and its programs differ from RE2's in ways that change
// the count (alternation factoring, repeat squashing, coalescing of
// adjacent repeats, the final flattening of the program into lists). So
// this package follows RE2's own algorithms (release 2024-07-02, the one
// Envoy 1.40 links) step by step:
//
//	parse     RE2's parser: literal strings, Perl flags, classes with ASCII
//	          case folding, alternation factoring in three rounds, repeat
//	          squashing, the 1000-copy limit of nested counted repetitions
//	prefix    RE2::Init's required-prefix split: for ^literal..., only the
//	          rest is compiled
//	simplify  coalescing of adjacent repeats, expansion of counted ones
//	compile   RE2's compiler, instruction for instruction: byte ranges,
//	          anchors removed, the unanchored .*? loop
//	optimize  Nop elimination, AltMatch detection
//	flatten   RE2's list flattening (successor and dominator roots); its
//	          instruction count is the program size
//
// Envoy 1.40 compiles regexes as Latin-1, not UTF-8: measured with the
// pinned binary, \x{100} is "invalid escape sequence", "." has program
// size 6 and "(?i)k" 5 (in UTF-8 they would be valid, 12 and 8). Every
// byte of the pattern is one character, as RE2 reads a Latin-1 pattern,
// and this package does the same.
//
// testdata/sizes.txt holds sizes that the real Envoy logged;
// TestSizesMatchEnvoy re-measures them with the binary of .tools/bin and
// TestRandomPatternsMatchEnvoy compares random patterns (validity and
// size) with it.
//
// What this package refuses although RE2 accepts it (an *Error with
// Unsupported set): Unicode classes (\p{Greek}, \pL, \P...), whose tables
// differ between Go and RE2 releases, capture names that are not ASCII
// [0-9A-Za-z_], nesting deeper than 1000 groups and more than 65535
// pieces. A caller must treat them as rejected: weft never serves what it
// cannot size.
//
// It imports nothing of weft; it is a leaf helper usable from every stage.
package re2
