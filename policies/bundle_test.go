package policies_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/weft-dev/weft/internal/tooltest"
)

// opa runs the real opa CLI in this package's directory.
func opa(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(tooltest.OPA(t), args...)
	cmd.Dir = "."
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Logf("opa %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return out, err
}

// TestBundleIsFormattedAndStrict runs `opa fmt --list` and `opa check
// --strict` on the default bundle.
func TestBundleIsFormattedAndStrict(t *testing.T) {
	if out, err := opa(t, "fmt", "--list", "bundle"); err != nil || len(out) > 0 {
		t.Errorf("opa fmt --list bundle: files not formatted (run opa fmt -w policies/bundle):\n%s", out)
	}
	if _, err := opa(t, "check", "--strict", "bundle"); err != nil {
		t.Errorf("opa check --strict bundle failed")
	}
}

// coverage is `opa test --coverage --format json`'s report.
type coverage struct {
	Files map[string]struct {
		Covered    []span `json:"covered"`
		NotCovered []span `json:"not_covered"`
	} `json:"files"`
	Coverage float64 `json:"coverage"`
}

type span struct {
	Start struct{ Row int } `json:"start"`
	End   struct{ Row int } `json:"end"`
}

func lines(spans []span) map[int]bool {
	out := map[int]bool{}
	for _, s := range spans {
		for r := s.Start.Row; r <= s.End.Row; r++ {
			out[r] = true
		}
	}
	return out
}

// TestBundleOPATestCoverage runs the bundle's tests with the real opa CLI
// and requires every line of every rule file (the *_test.rego files aside)
// to be covered.
func TestBundleOPATestCoverage(t *testing.T) {
	out, err := opa(t, "test", "--coverage", "--format", "json", "bundle")
	if err != nil {
		// Show the failing tests in a readable form.
		verbose, _ := opa(t, "test", "bundle")
		t.Fatalf("opa test bundle failed:\n%s", verbose)
	}
	var cov coverage
	if err := json.Unmarshal(out, &cov); err != nil {
		t.Fatalf("coverage report: %v\n%.500s", err, out)
	}
	rules, _ := filepath.Glob("bundle/*.rego")
	covered, total, ruleFiles := 0, 0, 0
	var missing []string
	for _, file := range rules {
		if strings.HasSuffix(file, "_test.rego") {
			continue
		}
		ruleFiles++
		f, ok := cov.Files[file]
		if !ok {
			t.Errorf("%s is not in the coverage report", file)
			continue
		}
		c, nc := lines(f.Covered), lines(f.NotCovered)
		for r := range nc {
			if !c[r] {
				missing = append(missing, file+":"+strconv.Itoa(r))
			}
		}
		for r := range c {
			delete(nc, r)
		}
		covered += len(c)
		total += len(c) + len(nc)
	}
	sort.Strings(missing)
	pct := 100 * float64(covered) / float64(max(total, 1))
	t.Logf("opa test --coverage: %d of %d rule lines covered (%.1f%%) in %d rule files; opa's own figure for all files: %.1f%%",
		covered, total, pct, ruleFiles, cov.Coverage)
	if covered != total || total == 0 {
		t.Errorf("rule lines not covered by the bundle's tests: %s", strings.Join(missing, ", "))
	}
}

// TestUserPolicyTestsRunWithTheBundle shows a team's workflow: its own
// rules' tests run with `opa test` next to weft's bundle (for data.weft.lib).
func TestUserPolicyTestsRunWithTheBundle(t *testing.T) {
	if _, err := opa(t, "test", "bundle", "testdata/userpolicy/policies"); err != nil {
		t.Fatal("opa test on the fixture repository's policies failed")
	}
}

// TestEveryRuleHasTests checks the bundle's layout: each rule file has its
// _test.rego.
func TestEveryRuleHasTests(t *testing.T) {
	files, _ := filepath.Glob("bundle/*.rego")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.rego") {
			continue
		}
		test := strings.TrimSuffix(f, ".rego") + "_test.rego"
		if _, err := os.Stat(test); err != nil {
			t.Errorf("%s has no %s", f, test)
		}
	}
}
