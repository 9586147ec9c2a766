package policies_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/weft-dev/weft/policies"
)

// reports is a sample of every kind of result: findings of several rules
// and environments (the canary fixture: dev, prod), a schema error, a
// broken policy.
func reports(t *testing.T) map[string]*policies.Report {
	t.Helper()
	schemaDir := t.TempDir()
	for name, body := range map[string]string{
		"cue.mod/module.cue": "module: \"example.com/x\"\nlanguage: version: \"v0.17.0\"\n",
		"mesh.cue":           "package mesh\n\nimport \"weft.dev/weft\"\n\nmesh: weft.#Mesh & {name: \"x\", trustDomain: \"x\", services: a: {ports: http: port: 1, versions: v1: {}, calls: [\"ghost\"]}}\n",
	} {
		writeFile(t, schemaDir+"/"+name, body)
	}
	return map[string]*policies.Report{
		"findings": vet(t, "testdata/rules/canary_drift", policies.VetOptions{PolicyDirs: []string{"testdata/orgpolicy"}}),
		"excused":  vet(t, examples(), policies.VetOptions{Env: "prod"}),
		"schema":   vet(t, schemaDir, policies.VetOptions{}),
		"broken":   vet(t, "testdata/broken", policies.VetOptions{}),
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(path[:strings.LastIndex(path, "/")], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, r *policies.Report, f policies.Format, color bool) (stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	if err := r.Write(f, policies.WriteOptions{Stdout: &o, Stderr: &e, Base: "repo", Color: color, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String()
}

func TestTextGroupsByFile(t *testing.T) {
	rs := reports(t)
	out, errs := write(t, rs["findings"], policies.Text, false)
	if out != "" {
		t.Errorf("stdout %q: no environment passes (org.size denies everywhere)", out)
	}
	want := `base: 1 deny, 0 warn
  repo/mesh.cue
    7:1  deny  org.size  2 services, the organisation allows 1
dev: 1 deny, 0 warn
  repo/environments/dev/dev.cue
    3:1  deny  org.size  2 services, the organisation allows 1
prod: 1 deny, 1 warn
  repo/environments/prod/prod.cue
    4:1  deny  org.size      2 services, the organisation allows 1
    5:2  warn  canary_drift  canary weights of service api route "split" change from dev to prod: v1 50 -> 80, v2 50 -> 20
`
	if errs != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errs, want)
	}
	out, errs = write(t, rs["excused"], policies.Text, false)
	if out != "ok\tprod\n" || !strings.Contains(errs, "excused: only the gRPC health check") {
		t.Errorf("excused: stdout %q stderr:\n%s", out, errs)
	}
	_, errs = write(t, rs["findings"], policies.Text, true)
	if !strings.Contains(errs, "\x1b[1mrepo/mesh.cue\x1b[0m") || !strings.Contains(errs, "\x1b[31mdeny\x1b[0m") || !strings.Contains(errs, "\x1b[33mwarn\x1b[0m") {
		t.Errorf("no colours:\n%q", errs)
	}
	_, errs = write(t, rs["schema"], policies.Text, false)
	if !strings.HasPrefix(errs, "base: 1 problem(s)\nrepo/mesh.cue:5:") || !strings.Contains(errs, `mesh.services.a.calls[0]: call to unknown service "ghost"`) {
		t.Errorf("schema errors:\n%s", errs)
	}
	_, errs = write(t, rs["broken"], policies.Text, false)
	if !strings.HasPrefix(errs, "policies: 1 problem(s); nothing was vetted\nrepo/policies/broken.rego:6:1: rego_parse_error: unexpected } token") {
		t.Errorf("broken policy:\n%s", errs)
	}
}

func TestJSONOutput(t *testing.T) {
	out, _ := write(t, reports(t)["findings"], policies.JSON, false)
	var doc struct {
		OK           bool
		Environments []struct {
			Name       string
			OK         bool
			Deny, Warn int
		}
		Findings []policies.Finding
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if doc.OK || len(doc.Environments) != 3 || doc.Environments[2].Name != "prod" || doc.Environments[2].Deny != 1 || doc.Environments[2].Warn != 1 {
		t.Errorf("summary: %+v", doc)
	}
	last := doc.Findings[len(doc.Findings)-1]
	if last.Rule != "canary_drift" || last.Severity != policies.Warn || last.Pos.String() != "repo/environments/prod/prod.cue:5:2" ||
		last.Path != "mesh.services.api.routes.split.to" || last.Environment != "prod" {
		t.Errorf("finding: %+v", last)
	}
	out, _ = write(t, reports(t)["schema"], policies.JSON, false)
	if !strings.Contains(out, `"rule": "schema"`) || !strings.Contains(out, `"file": "repo/mesh.cue"`) {
		t.Errorf("schema errors in json:\n%s", out)
	}
}

func TestGitHubAnnotations(t *testing.T) {
	rs := reports(t)
	out, errs := write(t, rs["findings"], policies.GitHub, false)
	want := "::warning file=repo/environments/prod/prod.cue,line=5,col=2,title=weft/canary_drift::[prod] canary weights of service api route \"split\" change from dev to prod: v1 50 -> 80, v2 50 -> 20%0Amesh.services.api.routes.split.to\n"
	if !strings.Contains(out, want) || strings.Count(out, "::error file=") != 3 || !strings.Contains(errs, "3 deny, 1 warn") {
		t.Errorf("annotations:\n%s\nwant among them:\n%s", out, want)
	}
	out, _ = write(t, rs["broken"], policies.GitHub, false)
	if !strings.HasPrefix(out, "::error file=repo/policies/broken.rego,line=6,col=1,title=weft/policy::rego_parse_error: unexpected } token") {
		t.Errorf("broken policy annotation:\n%s", out)
	}
	out, _ = write(t, rs["excused"], policies.GitHub, false)
	if !strings.Contains(out, "::warning file=repo/payments.cue,line=67,col=11,title=weft/authz_allow_all::[prod]") || !strings.Contains(out, "%0Aexcused: ") {
		t.Errorf("excused annotation:\n%s", out)
	}
}

// TestSARIFValidatesAgainstSchema validates every sample report's SARIF
// output against the SARIF 2.1.0 JSON schema (testdata/sarif), with a
// JSON-schema validator.
func TestSARIFValidatesAgainstSchema(t *testing.T) {
	f, err := os.Open("testdata/sarif/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("sarif-schema-2.1.0.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range reports(t) {
		out, _ := write(t, r, policies.SARIF, false)
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := sch.Validate(inst); err != nil {
			t.Errorf("%s: SARIF output does not validate:\n%v\n%s", name, err, out)
		}
		// And a broken document does not, so the check has teeth.
		broken := strings.Replace(out, `"level": "`, `"level": "fatal-`, 1)
		if inst, _ := jsonschema.UnmarshalJSON(strings.NewReader(broken)); sch.Validate(inst) == nil {
			t.Errorf("%s: an invalid level validates", name)
		}
	}

	var log struct {
		Runs []struct {
			Tool struct {
				Driver struct {
					Name  string
					Rules []struct {
						ID                   string
						ShortDescription     struct{ Text string }
						FullDescription      struct{ Text string }
						DefaultConfiguration struct{ Level string }
					}
				}
			}
			Results []struct {
				RuleID    string
				RuleIndex int
				Level     string
				Message   struct{ Text string }
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
						Region           struct{ StartLine, StartColumn int }
					}
				}
			}
		}
	}
	out, _ := write(t, reports(t)["findings"], policies.SARIF, false)
	if err := json.Unmarshal([]byte(out), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	ids := map[string]int{}
	for i, r := range run.Tool.Driver.Rules {
		ids[r.ID] = i
		if r.ShortDescription.Text == "" {
			t.Errorf("rule %s has no short description", r.ID)
		}
	}
	for _, id := range []string{"schema", "policy", "mtls_strict", "canary_drift", "org.size"} {
		if _, ok := ids[id]; !ok {
			t.Errorf("driver.rules lacks %s", id)
		}
	}
	if r := run.Tool.Driver.Rules[ids["canary_drift"]]; r.DefaultConfiguration.Level != "warning" || !strings.Contains(r.FullDescription.Text, "promotion order") {
		t.Errorf("canary_drift rule: %+v", r)
	}
	res := run.Results[len(run.Results)-1]
	loc := res.Locations[0].PhysicalLocation
	if res.RuleID != "canary_drift" || res.RuleIndex != ids["canary_drift"] || res.Level != "warning" ||
		loc.ArtifactLocation.URI != "repo/environments/prod/prod.cue" || loc.Region.StartLine != 5 || loc.Region.StartColumn != 2 {
		t.Errorf("result: %+v", res)
	}
	if run.Results[0].Level != "error" {
		t.Errorf("a deny is level %s", run.Results[0].Level)
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range policies.Formats {
		if got, err := policies.ParseFormat(string(f)); err != nil || got != f {
			t.Errorf("%s: %v %v", f, got, err)
		}
	}
	if _, err := policies.ParseFormat("xml"); err == nil {
		t.Error("xml accepted")
	}
}
