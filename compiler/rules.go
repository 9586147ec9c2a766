package compiler

import (
	"errors"
	"fmt"
	"strings"

	"github.com/weft-dev/weft/internal/re2"
)

// The rules of the acceptance gate (see accept.go): what Envoy 1.40 rejects
// in the values weft emits, each as a function of one value that returns
// what is wrong and how to fix it ("" when the value is fine). The model
// checks and the checks of the emitted resources share them.

// RegexProgramSizeLimit is the largest RE2 program Envoy accepts in a regex:
// the runtime value re2.max_program_size.error_level, which weft leaves at
// Envoy's default (100). Sizes are computed as Envoy's RE2 computes them
// (package internal/re2).
const RegexProgramSizeLimit = 100

// MaxHeaderBytes is the longest header name or value Envoy accepts in a
// header mutation (HeaderValue: max_bytes 16384).
const MaxHeaderBytes = 16384

// problem is a rule violation: what is wrong and the fix.
type problem struct{ msg, fix string }

// regexProblem checks a regex as Envoy's RE2 would: it must parse and fit
// RegexProgramSizeLimit.
func regexProblem(re string) *problem {
	if re == "" {
		return &problem{"an empty regex (Envoy requires at least one character)",
			`write a pattern, or use prefix: "/" to match every path`}
	}
	err := re2.Check(re, RegexProgramSizeLimit)
	if err == nil {
		return nil
	}
	var se *re2.SizeError
	if errors.As(err, &se) {
		size := fmt.Sprint(se.Size)
		if se.Size > re2.MaxInstructions {
			size = fmt.Sprintf("more than %d", re2.MaxInstructions)
		}
		return &problem{
			fmt.Sprintf("regex %q compiles to an RE2 program of %s instructions; Envoy rejects more than %d (re2.max_program_size.error_level)", re, size, RegexProgramSizeLimit),
			"simplify it: match a fixed part with prefix or exact instead, write + or * instead of a counted repetition such as {36}, or split it across routes",
		}
	}
	var e *re2.Error
	if errors.As(err, &e) && e.Unsupported {
		return &problem{fmt.Sprintf("regex %q: %s", re, e.Error()), "rewrite the pattern without it"}
	}
	return &problem{fmt.Sprintf("regex %q is not valid RE2 (Envoy's engine): %v", re, err),
		"write RE2 syntax (github.com/google/re2/wiki/Syntax): no backreferences, lookarounds or possessive repetitions; escape a literal ( ) [ ] { } ? * + | . ^ $ \\ with a backslash"}
}

// isTokenChar reports whether c may appear in an HTTP field name (RFC 9110
// token).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// tokenProblem checks that name is an RFC 9110 token. Envoy itself only
// refuses an empty name and NUL, CR and LF in one; a space or a quote would
// pass its validation and produce a header no HTTP peer accepts.
func tokenProblem(name string) *problem {
	if name == "" {
		return &problem{"an empty header name", "name the header"}
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return &problem{fmt.Sprintf("header name %q contains %q, which HTTP does not allow in a field name", name, name[i]),
				"use letters, digits and ! # $ % & ' * + - . ^ _ ` | ~ only"}
		}
	}
	if len(name) > MaxHeaderBytes {
		return &problem{fmt.Sprintf("header name of %d bytes; Envoy accepts at most %d", len(name), MaxHeaderBytes), "shorten the name"}
	}
	return nil
}

// mutationNameProblem checks the name of a header that a route sets, adds
// or removes. Envoy refuses to change pseudo-headers and Host
// (":-prefixed or host headers may not be modified").
func mutationNameProblem(name string) *problem {
	lower := strings.ToLower(name)
	switch {
	case lower == "host" || lower == ":authority":
		return &problem{fmt.Sprintf("Envoy does not let a route change the %s header", name),
			`to send requests with another Host, set the route's rewrite: {host: "name.example"}; otherwise remove it`}
	case strings.HasPrefix(name, ":"):
		return &problem{fmt.Sprintf("Envoy does not let a route change the pseudo-header %s", name),
			"remove it: pseudo-headers (:path, :method, :scheme, :status, :authority) are set by the protocol"}
	}
	return tokenProblem(name)
}

// matchNameProblem checks the name of a header a route matches on: a
// token, or a pseudo-header such as :authority.
func matchNameProblem(name string) *problem {
	if p := tokenProblem(strings.TrimPrefix(name, ":")); p != nil {
		if name == ":" {
			return &problem{"header name \":\" names no header", "name the header"}
		}
		return p
	}
	return nil
}

// escapeHeaderValue makes a header value literal for Envoy, which reads
// %COMMAND% in header values as a substitution and rejects any other %:
// weft's header values are plain text, so every % is written %%.
func escapeHeaderValue(v string) string { return strings.ReplaceAll(v, "%", "%%") }

// headerValueProblem checks a header value (as the user wrote it; the
// emitted value has every % doubled).
func headerValueProblem(v string) *problem {
	if i := strings.IndexAny(v, "\x00\r\n"); i >= 0 {
		return &problem{fmt.Sprintf("header value contains %q; HTTP does not allow NUL, CR or LF in a header value (Envoy rejects it)", v[i]),
			"remove the control character; to send several values, add the header once per value or join them with commas"}
	}
	if n := len(escapeHeaderValue(v)); n > MaxHeaderBytes {
		how := ""
		if n != len(v) {
			how = " once each % is written %% (weft's values are literal)"
		}
		return &problem{fmt.Sprintf("header value of %d bytes%s; Envoy accepts at most %d", n, how, MaxHeaderBytes),
			"shorten the value"}
	}
	return nil
}

// emittedValueProblem checks a header value as emitted: what
// headerValueProblem checks, and no % that is not part of %%.
func emittedValueProblem(v string) *problem {
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			i++
			continue
		}
		return &problem{fmt.Sprintf("header value %q has a %% that Envoy reads as a substitution command", v), "write %% for a literal %"}
	}
	if strings.ContainsAny(v, "\x00\r\n") || len(v) > MaxHeaderBytes {
		return headerValueProblem(strings.ReplaceAll(v, "%%", "%"))
	}
	return nil
}
