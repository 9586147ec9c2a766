package re2

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/weft-dev/weft/internal/tooltest"
)

// The oracle is the real Envoy: one `envoy --mode validate` run compiles
// every pattern of a bootstrap, and with re2.max_program_size.warn_level
// at 0 it logs the program size of each ("regex 'P' RE2 program size of N
// > max program size of 0 set for the warn level threshold").

// envoyBootstrap is a static bootstrap with one route per pattern (path
// safe_regex) and the given runtime values.
func envoyBootstrap(patterns []string, runtime map[string]int) []byte {
	type m = map[string]any
	routes := make([]any, len(patterns))
	for i, p := range patterns {
		routes[i] = m{
			"match":           m{"safe_regex": m{"regex": p}},
			"direct_response": m{"status": 200},
		}
	}
	b := m{
		"static_resources": m{"listeners": []any{m{
			"name":    "l",
			"address": m{"socket_address": m{"address": "127.0.0.1", "port_value": 10000}},
			"filter_chains": []any{m{"filters": []any{m{
				"name": "envoy.filters.network.http_connection_manager",
				"typed_config": m{
					"@type":        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
					"stat_prefix":  "x",
					"http_filters": []any{m{"name": "envoy.filters.http.router", "typed_config": m{"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}},
					"route_config": m{"virtual_hosts": []any{m{"name": "v", "domains": []any{"*"}, "routes": routes}}},
				},
			}}}},
		}}},
	}
	if len(runtime) > 0 {
		b["layered_runtime"] = m{"layers": []any{m{"name": "static", "static_layer": runtime}}}
	}
	out, err := json.Marshal(b)
	if err != nil {
		panic(err)
	}
	return out
}

// runEnvoy validates a bootstrap and returns Envoy's output and whether it
// accepted it.
func runEnvoy(t testing.TB, bootstrap []byte) (string, bool) {
	t.Helper()
	envoy := tooltest.Envoy(t)
	file := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(file, bootstrap, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, envoy, "--mode", "validate", "-c", file,
		"--log-level", "warn", "--disable-hot-restart").CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("envoy: %v\n%s", err, out)
		}
	}
	return string(out), err == nil
}

// sizeRuntime makes Envoy log every program size and reject none.
var sizeRuntime = map[string]int{
	"re2.max_program_size.error_level": 1 << 30,
	"re2.max_program_size.warn_level":  0,
}

// envoySizes returns the program size Envoy computes for each pattern,
// all of which must be valid for RE2.
func envoySizes(t testing.TB, patterns []string) []int {
	t.Helper()
	out, ok := runEnvoy(t, envoyBootstrap(patterns, sizeRuntime))
	if !ok {
		t.Fatalf("envoy rejected the size corpus:\n%s", tail(out))
	}
	return parseSizes(t, out, patterns)
}

// parseSizes reads the sizes Envoy logged for patterns.
func parseSizes(t testing.TB, out string, patterns []string) []int {
	t.Helper()
	const pre, post = "regex '", "' RE2 program size of "
	sizes := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		i := strings.Index(line, pre)
		j := strings.LastIndex(line, post)
		if i < 0 || j < i {
			continue
		}
		rest := line[j+len(post):]
		k := strings.IndexByte(rest, ' ')
		n, err := strconv.Atoi(rest[:max(k, 0)])
		if err != nil {
			t.Fatalf("unparsable line %q", line)
		}
		sizes[line[i+len(pre):j]] = n
	}
	res := make([]int, len(patterns))
	for i, p := range patterns {
		n, ok := sizes[p]
		if !ok {
			t.Fatalf("envoy logged no size for %q", p)
		}
		res[i] = n
	}
	return res
}

// envoyRejects reports whether Envoy rejects pattern, and its message.
func envoyRejects(t testing.TB, pattern string) (bool, string) {
	t.Helper()
	out, ok := runEnvoy(t, envoyBootstrap([]string{pattern}, map[string]int{
		"re2.max_program_size.error_level": 1 << 30,
	}))
	return !ok, tail(out)
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, "\n")
}

// sizeCorpus reads testdata/sizes.txt: "<size> <pattern>" per line, the
// sizes as Envoy 1.40 logged them.
func sizeCorpus(t testing.TB) ([]string, []int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sizes.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	var sizes []int
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n, p, ok := strings.Cut(line, " ")
		size, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("bad line %q", line)
		}
		pats = append(pats, p)
		sizes = append(sizes, size)
	}
	return pats, sizes
}

// TestSizesMatchEnvoy: every size in testdata/sizes.txt is what the real
// Envoy computes today (so the table cannot drift from the binary).
func TestSizesMatchEnvoy(t *testing.T) {
	pats, want := sizeCorpus(t)
	got := envoySizes(t, pats)
	for i := range pats {
		if got[i] != want[i] {
			t.Errorf("%q: envoy says %d, testdata/sizes.txt says %d", pats[i], got[i], want[i])
		}
	}
}

// TestRandomPatternsMatchEnvoy compares this package with Envoy on random
// patterns: the same verdict on validity and, for valid ones, the same
// program size. The defaults (1000 patterns, seed 1, 20 of the invalid
// ones checked one by one) keep it to a few seconds; WEFT_RE2_RANDOM,
// WEFT_RE2_SEED and WEFT_RE2_INVALID explore further (18,000 patterns over
// several seeds agreed when this was written).
func TestRandomPatternsMatchEnvoy(t *testing.T) {
	n := 1000
	if v := os.Getenv("WEFT_RE2_RANDOM"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	seed := int64(1)
	if v := os.Getenv("WEFT_RE2_SEED"); v != "" {
		seed, _ = strconv.ParseInt(v, 10, 64)
	}
	t.Logf("seed %d (WEFT_RE2_SEED to repeat)", seed)
	g := newGen(seed)
	var valid []string
	var ours []int
	var invalid []string
	seen := map[string]bool{}
	for len(valid)+len(invalid) < n {
		p := g.pattern()
		if p == "" || seen[p] || strings.ContainsAny(p, "\n\r") || !utf8.ValidString(p) {
			continue
		}
		seen[p] = true
		size, err := ProgramSize(p)
		switch e, _ := err.(*Error); {
		case err == nil:
			valid = append(valid, p)
			ours = append(ours, size)
		case e != nil && e.Unsupported:
			// refused on purpose; Envoy may accept it
		default:
			invalid = append(invalid, p)
		}
	}
	got := envoySizesBisect(t, valid)
	var bad bytes.Buffer
	for i, p := range valid {
		if got[i] != ours[i] {
			fmt.Fprintf(&bad, "  %q: envoy %d, ours %d\n", p, got[i], ours[i])
		}
	}
	// Validity: each invalid pattern alone (a handful).
	maxInvalid := 20
	if v := os.Getenv("WEFT_RE2_INVALID"); v != "" {
		maxInvalid, _ = strconv.Atoi(v)
	}
	for i, p := range invalid {
		if i >= maxInvalid {
			break
		}
		if rej, msg := envoyRejects(t, p); !rej {
			fmt.Fprintf(&bad, "  %q: envoy accepts, ours: %v\n", p, errOf(p))
		} else {
			t.Logf("both reject %q: ours %v; envoy %s", p, errOf(p), lastLine(msg))
		}
	}
	if bad.Len() > 0 {
		t.Errorf("differences with envoy (seed %d):\n%s", seed, bad.String())
	}
}

func errOf(p string) error { _, err := ProgramSize(p); return err }

func lastLine(s string) string {
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// envoySizesBisect is envoySizes that, when Envoy rejects the batch (a
// pattern we think valid is not), finds and reports the culprits.
func envoySizesBisect(t testing.TB, pats []string) []int {
	t.Helper()
	if len(pats) == 0 {
		return nil
	}
	out, ok := runEnvoy(t, envoyBootstrap(pats, sizeRuntime))
	if ok {
		return parseSizes(t, out, pats)
	}
	if len(pats) == 1 {
		t.Errorf("%q: ours valid (size %d), envoy rejects: %s", pats[0], mustSize(pats[0]), lastLine(tail(out)))
		return []int{mustSize(pats[0])}
	}
	h := len(pats) / 2
	return append(envoySizesBisect(t, pats[:h]), envoySizesBisect(t, pats[h:])...)
}

func mustSize(p string) int { n, _ := ProgramSize(p); return n }
