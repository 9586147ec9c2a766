package re2

import "fmt"

// Error is a pattern that RE2 rejects, with RE2's own message (what Envoy
// prints), or, with Unsupported set, a pattern RE2 accepts but this
// package cannot size exactly and therefore refuses.
type Error struct {
	Code        string // RE2's message for the error ("missing )"), or what is unsupported
	Arg         string // the offending part of the pattern, if known
	Unsupported bool
}

func (e *Error) Error() string {
	if e.Arg == "" {
		return e.Code
	}
	return e.Code + ": " + e.Arg
}

// MaxInstructions bounds the program this package builds for one pattern
// (before flattening). A pattern that needs more is reported with a size
// of MaxInstructions+1: far above any limit Envoy is given.
const MaxInstructions = 100000

// ProgramSize returns the size RE2 gives the program of pattern
// (RE2::ProgramSize, the number Envoy compares with
// re2.max_program_size.error_level), with the options Envoy uses. The
// error is an *Error: a pattern RE2 does not parse, or one this package
// refuses (Unsupported).
func ProgramSize(pattern string) (int, error) {
	re, err := parse(pattern, envoyFlags)
	if err != nil {
		return 0, err
	}
	p, ok := compileProg(requiredPrefixSuffix(re))
	if !ok {
		return MaxInstructions + 1, nil
	}
	p.optimize()
	return p.flatSize(), nil
}

// requiredPrefixSuffix is what RE2::Init compiles: for ^literal-rest only
// rest (unanchored), the literal being matched apart (Regexp::RequiredPrefix).
func requiredPrefixSuffix(re *node) *node {
	if re.op != opConcat {
		return re
	}
	i := 0
	for i < len(re.sub) && re.sub[i].op == opBeginText {
		i++
	}
	if i == 0 || i >= len(re.sub) {
		return re
	}
	if o := re.sub[i].op; o != opLiteral && o != opLiteralString {
		return re
	}
	i++
	if i < len(re.sub) {
		return concat(re.sub[i:], re.flags)
	}
	return newNode(opEmptyMatch, re.flags)
}

// Check reports whether Envoy accepts pattern with the given program size
// limit (re2.max_program_size.error_level), and if not, why, in the words
// Envoy uses.
func Check(pattern string, limit int) error {
	n, err := ProgramSize(pattern)
	if err != nil {
		return err
	}
	if n > limit {
		return &SizeError{Size: n, Limit: limit}
	}
	return nil
}

// SizeError is a pattern whose program is larger than the limit.
type SizeError struct {
	Size, Limit int
}

func (e *SizeError) Error() string {
	if e.Size > MaxInstructions {
		return fmt.Sprintf("RE2 program size of more than %d > max program size of %d", MaxInstructions, e.Limit)
	}
	return fmt.Sprintf("RE2 program size of %d > max program size of %d", e.Size, e.Limit)
}
