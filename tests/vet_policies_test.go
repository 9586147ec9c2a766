package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-dev/weft/internal/tooltest"
)

// policyFixture is a mesh repository of policies/testdata.
func policyFixture(name string) string {
	return filepath.Join(tooltest.RepoRoot(), "policies", "testdata", name)
}

// TestVetExamplesPassPoliciesWithWarnings: the example shop passes the
// policies (exit 0, "ok" per environment on stdout); its documented
// warnings are on stderr.
func TestVetExamplesPassPoliciesWithWarnings(t *testing.T) {
	r := weftRun(t, examplesDir(), "vet", ".")
	if r.code != 0 || r.stdout != "ok\tbase\nok\tdev\nok\tprod\nok\tstaging\n" {
		t.Fatalf("vet environments: %+v", r)
	}
	for _, want := range []string{
		"prod: 0 deny, 2 warn\n  payments.cue\n    67:11  warn  authz_allow_all",
		"excused: only the gRPC health check",
		`canary weights of service reviews route "split" change from staging to prod: v1 80 -> 90, v2 20 -> 10`,
		"staging: 0 deny, 1 warn",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

// TestVetPolicyDenyExitsOne: a deny fails the vet with the rule, the
// file:line and the fix; the environments that pass still print ok.
func TestVetPolicyDenyExitsOne(t *testing.T) {
	r := weftRun(t, policyFixture("rules/no_fault_injection"), "vet", ".")
	if r.code != 1 || r.stdout != "ok\tbase\n" {
		t.Fatalf("exit %d, stdout %q, want 1 and only base ok; stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	want := "prod: 1 deny, 0 warn\n  environments/prod/prod.cue\n    5:2  deny  no_fault_injection  route \"split\" of service api injects faults (abort)\n"
	if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "fix: remove the fault") {
		t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
	}
	// Paths are relative to the working directory.
	r = weftRun(t, filepath.Dir(policyFixture("rules")), "vet", "rules/no_fault_injection", "--env", "prod")
	if r.code != 1 || !strings.Contains(r.stderr, "  rules/no_fault_injection/environments/prod/prod.cue\n") {
		t.Errorf("from the parent directory: %+v", r)
	}
}

func TestVetOutputJSON(t *testing.T) {
	r := weftRun(t, policyFixture("rules/authz_allow_all"), "vet", ".", "--output", "json")
	if r.code != 1 {
		t.Fatalf("exit %d: %+v", r.code, r)
	}
	var doc struct {
		OK           bool
		Environments []struct {
			Name string
			OK   bool
		}
		Findings []struct {
			Rule, Severity, Msg, Path, Environment string
			Pos                                    struct {
				File         string
				Line, Column int
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if doc.OK || len(doc.Environments) != 2 || !doc.Environments[0].OK || doc.Environments[1].OK || len(doc.Findings) != 1 {
		t.Fatalf("document: %+v", doc)
	}
	f := doc.Findings[0]
	if f.Rule != "authz_allow_all" || f.Severity != "deny" || f.Environment != "prod" ||
		f.Path != "mesh.services.api.authz.allow[1].from[0]" || f.Pos.File != "environments/prod/prod.cue" || f.Pos.Line != 6 || f.Pos.Column != 9 {
		t.Errorf("finding: %+v", f)
	}
}

func TestVetOutputGitHub(t *testing.T) {
	r := weftRun(t, policyFixture("rules/edge_rate_limit"), "vet", ".", "--output", "github")
	want := "::error file=mesh.cue,line=13,col=4,title=weft/edge_rate_limit::[base] service web receives traffic from outside the mesh (edge) but has no rate limit%0Amesh.services.web.edge%0Afix: "
	if r.code != 1 || !strings.HasPrefix(r.stdout, want) {
		t.Fatalf("exit %d\nstdout:\n%s\nwant it to start with:\n%s", r.code, r.stdout, want)
	}
	// Schema errors are annotations too.
	dir := filepath.Join(t.TempDir(), "mesh")
	weftRun(t, ".", "init", dir)
	writeBad(t, dir)
	r = weftRun(t, dir, "vet", ".", "--env", "qa", "--output", "github")
	if r.code != 1 || !strings.Contains(r.stdout, "::error file=environments/qa/bad.cue,line=2,col=30,title=weft/schema::[qa] call to unknown service") {
		t.Errorf("schema error annotation: %+v", r)
	}
}

func TestVetOutputSARIF(t *testing.T) {
	r := weftRun(t, policyFixture("rules/canary_drift"), "vet", ".", "--output", "sarif")
	if r.code != 0 {
		t.Fatalf("a warn alone must not fail: %+v", r)
	}
	var log struct {
		Version string
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string
					Rules []struct{ ID string }
				}
			}
			Results []struct {
				RuleID, Level string
				Locations     []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
						Region           struct{ StartLine int }
					}
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &log); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if log.Version != "2.1.0" || len(log.Runs) != 1 || log.Runs[0].Tool.Driver.Name != "weft" || len(log.Runs[0].Tool.Driver.Rules) < 10 {
		t.Fatalf("log: %+v", log)
	}
	res := log.Runs[0].Results
	if len(res) != 1 || res[0].RuleID != "canary_drift" || res[0].Level != "warning" ||
		res[0].Locations[0].PhysicalLocation.ArtifactLocation.URI != "environments/prod/prod.cue" || res[0].Locations[0].PhysicalLocation.Region.StartLine != 5 {
		t.Errorf("results: %+v", res)
	}
}

func TestVetUnknownOutputFormat(t *testing.T) {
	r := weftRun(t, examplesDir(), "vet", ".", "--output", "xml")
	if r.code != 1 || !strings.Contains(r.stderr, `unknown output format "xml"`) {
		t.Errorf("%+v", r)
	}
}

func TestVetExplain(t *testing.T) {
	r := weftRun(t, ".", "vet", "--explain", "retry_budget")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "retry_budget: Retry budget is sane\ndeny, built in, weft:policies/bundle/retry_budget.rego:") ||
		!strings.Contains(r.stdout, "attempts x perTryTimeout") || !strings.Contains(r.stdout, `{"max_attempts":5}`) {
		t.Errorf("--explain retry_budget: %+v", r)
	}
	// With DIR: the repository's rules and configuration.
	r = weftRun(t, policyFixture("userpolicy"), "vet", ".", "--explain", "team_label")
	if r.code != 0 || !strings.Contains(r.stdout, "team_label: Versions carry a team label\ndeny, the repository's, policies/team_label.rego:8:1") ||
		!strings.Contains(r.stdout, "reported as warn in dev") {
		t.Errorf("--explain team_label: %+v", r)
	}
	r = weftRun(t, ".", "vet", "--explain", "no_such_rule")
	if r.code != 1 || !strings.Contains(r.stderr, `no rule "no_such_rule"`) {
		t.Errorf("--explain of an unknown rule: %+v", r)
	}
}

// TestVetPicksUpRepositoryPolicies: the rules in the mesh repository's
// policies/ folder run and can deny.
func TestVetPicksUpRepositoryPolicies(t *testing.T) {
	r := weftRun(t, policyFixture("userpolicy"), "vet", ".")
	if r.code != 1 || !strings.Contains(r.stderr, "base: 1 deny, 0 warn\n  mesh.cue\n    15:14  deny  team_label  version v1 of service web has no team label") ||
		!strings.Contains(r.stderr, "dev: 0 deny, 1 warn") || r.stdout != "ok\tdev\n" {
		t.Errorf("%+v", r)
	}
}

// TestVetPolicyFlag: --policy DIR adds rules, and can be repeated.
func TestVetPolicyFlag(t *testing.T) {
	clean := policyFixture("rules/clean")
	if r := weftRun(t, clean, "vet", "."); r.code != 0 {
		t.Fatalf("clean fixture: %+v", r)
	}
	r := weftRun(t, clean, "vet", ".", "--env", "prod", "--policy", policyFixture("orgpolicy"), "--policy", policyFixture("userpolicy/policies"))
	if r.code != 1 || !strings.Contains(r.stderr, "deny  org.size") || !strings.Contains(r.stderr, "deny  team_label") {
		t.Errorf("%+v", r)
	}
	r = weftRun(t, clean, "vet", ".", "--policy", "no/such/dir")
	if r.code != 1 || !strings.Contains(r.stderr, "policy folder no/such/dir: not a directory") {
		t.Errorf("missing --policy folder: %+v", r)
	}
}

// TestVetBrokenPolicyStops: a Rego file that does not parse is reported
// at its own file:line (in every output format) and nothing is vetted.
func TestVetBrokenPolicyStops(t *testing.T) {
	dir := policyFixture("broken")
	r := weftRun(t, dir, "vet", ".")
	if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "policies: 1 problem(s); nothing was vetted\npolicies/broken.rego:6:1: rego_parse_error: unexpected } token") {
		t.Errorf("text: %+v", r)
	}
	r = weftRun(t, dir, "vet", ".", "--output", "github")
	if r.code != 1 || !strings.HasPrefix(r.stdout, "::error file=policies/broken.rego,line=6,col=1,title=weft/policy::rego_parse_error") {
		t.Errorf("github: %+v", r)
	}
}

// writeBad adds an environment qa with two schema errors to a scaffolded
// mesh repository.
func writeBad(t *testing.T, dir string) {
	t.Helper()
	bad := "package mesh\nmesh: services: api: calls: [\"ghost\"]\nmesh: services: api: routes: split: to: {v1: 70, v2: 20}\n"
	if err := os.MkdirAll(filepath.Join(dir, "environments", "qa"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "environments", "qa", "bad.cue"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
}
