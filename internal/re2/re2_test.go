package re2

import (
	"errors"
	"strings"
	"testing"
)

// TestSizes checks every size of testdata/sizes.txt (measured on Envoy
// 1.40; TestSizesMatchEnvoy re-measures them).
func TestSizes(t *testing.T) {
	pats, want := sizeCorpus(t)
	for i, p := range pats {
		got, err := ProgramSize(p)
		if err != nil || got != want[i] {
			t.Errorf("ProgramSize(%q) = %d, %v; envoy: %d", p, got, err, want[i])
		}
	}
}

// RE2's verdicts and messages, as Envoy prints them.
func TestErrors(t *testing.T) {
	for _, tc := range []struct{ pattern, msg string }{
		{"?", "no argument for repetition operator: ?"},
		{"a**", "bad repetition operator: **"},
		{"a{2}{3}", "bad repetition operator: {2}{3}"},
		{"x{1001}", "invalid repetition size: {1001}"},
		{"(a{100}){100}", "invalid repetition size: {100}"},
		{"(a", "missing ): (a"},
		{"a)", "unexpected ): a)"},
		{"[a", "missing ]: [a"},
		{"[z-a]", "invalid character class range: z-a"},
		{"[[:foo:]]", "invalid character class range: [:foo:]"},
		{`\1`, `invalid escape sequence: \1`},
		{`\Z`, `invalid escape sequence: \Z`},
		{`\x{100}`, `invalid escape sequence: \x{100`},
		{`\777`, `invalid escape sequence: \777`},
		{`a\`, `trailing \`},
		{"(?=a)", "invalid perl operator: (?="},
		{"(?<=a)", "invalid perl operator: (?<="},
		{"(?z)", "invalid perl operator: (?z"},
		{"(?P<>a)", "invalid named capture group: (?P<>"},
		{"(?P<a", "invalid named capture group: (?P<a"},
	} {
		_, err := ProgramSize(tc.pattern)
		var e *Error
		if !errors.As(err, &e) || e.Unsupported || err.Error() != tc.msg {
			t.Errorf("%q: error %v, want RE2's %q", tc.pattern, err, tc.msg)
		}
	}
}

// What RE2 accepts but this package refuses, saying why.
func TestUnsupported(t *testing.T) {
	for _, p := range []string{`\pL`, `\p{Greek}`, `[\P{Han}]`, `(?P<nämé>a)`, strings.Repeat("(", 1001) + strings.Repeat(")", 1001)} {
		_, err := ProgramSize(p)
		var e *Error
		if !errors.As(err, &e) || !e.Unsupported {
			t.Errorf("%q: error %v, want an unsupported *Error", p, err)
		}
	}
}

func TestCheck(t *testing.T) {
	if err := Check("x{96}", 100); err != nil {
		t.Errorf("x{96} (size 100) at limit 100: %v", err)
	}
	err := Check("x{97}", 100)
	var se *SizeError
	if !errors.As(err, &se) || se.Size != 101 || err.Error() != "RE2 program size of 101 > max program size of 100" {
		t.Errorf("x{97}: %v", err)
	}
	huge := strings.Repeat("(?:ab|cd|ef)", 1000) // ~9,000 instructions
	if err := Check("(?:"+huge+"){20}", 100); !errors.As(err, &se) || se.Size <= MaxInstructions ||
		err.Error() != "RE2 program size of more than 100000 > max program size of 100" {
		t.Errorf("huge pattern: %v", err)
	}
}

// FuzzProgramSize: no pattern makes the sizer panic or loop, and a size
// it reports is positive and stable.
func FuzzProgramSize(f *testing.F) {
	pats, _ := sizeCorpus(f)
	for _, p := range pats {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if len(p) > 512 {
			return
		}
		n, err := ProgramSize(p)
		if err == nil {
			if n <= 0 {
				t.Fatalf("%q: size %d", p, n)
			}
			if m, _ := ProgramSize(p); m != n {
				t.Fatalf("%q: size %d then %d", p, n, m)
			}
		}
	})
}
