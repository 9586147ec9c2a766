package policies_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

var ctx = context.Background()

func vet(t *testing.T, dir string, opts policies.VetOptions) *policies.Report {
	t.Helper()
	rep, err := policies.Vet(ctx, dir, opts)
	if err != nil {
		t.Fatalf("Vet %s: %v", dir, err)
	}
	return rep
}

// summary is a finding as the tests compare it.
func summary(f policies.Finding) string {
	s := f.Environment + " " + string(f.Severity) + " " + f.Rule + " " + f.Pos.String()
	if f.Excused != "" {
		s += " excused"
	}
	return s
}

func summaries(fs []policies.Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, summary(f))
	}
	return out
}

// TestEveryDefaultRuleHasAViolatingFixture loads, for every default rule,
// a small mesh repository (testdata/rules/<rule>) that violates it in one
// place, and expects exactly that finding at the file:line:column of the
// offending field; the other environments of the fixture pass.
func TestEveryDefaultRuleHasAViolatingFixture(t *testing.T) {
	cases := []struct {
		rule, env, want, msg string
	}{
		{"mtls_strict", "", "base deny mtls_strict mesh.cue:27:4", `service api accepts mtls "permissive"`},
		{"route_timeout", "", "base deny route_timeout mesh.cue:26:12", `route "split" of service api has no timeout: it would only get the mesh default 15s`},
		{"retry_budget", "", "base deny retry_budget mesh.cue:27:12", `3 retries x 1s per try = 3s, more than its timeout 2s`},
		{"no_fault_injection", "prod", "prod deny no_fault_injection environments/prod/prod.cue:5:2", `route "split" of service api injects faults (abort)`},
		{"edge_rate_limit", "", "base deny edge_rate_limit mesh.cue:13:4", "service web receives traffic from outside the mesh (edge) but has no rate limit"},
		{"authz_allow_all", "prod", "prod deny authz_allow_all environments/prod/prod.cue:6:9", `authz.allow[1] allows every mesh identity ("*")`},
		{"callee_endpoints", "", "base deny callee_endpoints mesh.cue:22:4", "service api is called by web, but none of its versions has endpoints or replicas"},
		{"canary_drift", "prod", "prod warn canary_drift environments/prod/prod.cue:5:2", `canary weights of service api route "split" change from dev to prod: v1 50 -> 80, v2 50 -> 20`},
		{"outlier_ejection", "", "base warn outlier_ejection mesh.cue:26:5", "outlier detection of service api can never eject an endpoint: maxEjectionPercent 10 is below one endpoint's share of version v1 (2 endpoints, 50% each)"},
		{"reachability", "", "base deny reachability mesh.cue:27:18", "web calls api, but api's authz.deny[0] refuses every request from web"},
		{"grpc_methods", "", "base warn grpc_methods mesh.cue:32:35", "authz.allow[0] of service api matches methods GET, but every call to its gRPC ports is a POST: the rule allows no call"},
	}
	e, err := policies.New(ctx, policies.Options{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.rule] = true
		t.Run(c.rule, func(t *testing.T) {
			dir := filepath.Join("testdata", "rules", c.rule)
			rep := vet(t, dir, policies.VetOptions{})
			if warnOnly := c.rule == "canary_drift" || c.rule == "outlier_ejection" || c.rule == "grpc_methods"; rep.Failed() == warnOnly {
				t.Errorf("Failed() = %v", rep.Failed())
			}
			var got []policies.Finding
			for _, env := range rep.Envs {
				if len(env.Schema) > 0 || env.Err != nil {
					t.Fatalf("%s does not load: %v %v", env.Name, env.Schema, env.Err)
				}
				got = append(got, env.Findings...)
			}
			if len(got) != 1 || summary(got[0]) != c.want || !strings.Contains(got[0].Msg, c.msg) {
				t.Fatalf("findings:\n%s\nwant exactly: %s (%s)", strings.Join(summaries(got), "\n"), c.want, c.msg)
			}
			if got[0].Path == "" || got[0].Fix == "" {
				t.Errorf("finding without a path or a fix: %+v", got[0])
			}
			// The finding's position is where the path says.
			m, err := schema.Load(dir, schema.Options{Env: c.env})
			if err != nil {
				t.Fatal(err)
			}
			if p := m.Positions.Lookup(got[0].Path); p != got[0].Pos {
				t.Errorf("position %s, Lookup(%s) = %s", got[0].Pos, got[0].Path, p)
			}
		})
	}
	for _, r := range e.Rules() {
		if !seen[r.ID] {
			t.Errorf("default rule %s has no fixture", r.ID)
		}
	}
}

// TestCleanFixturePasses: the mesh the fixtures start from passes every
// rule in every environment.
func TestCleanFixturePasses(t *testing.T) {
	rep := vet(t, "testdata/rules/clean", policies.VetOptions{})
	if rep.Failed() || len(rep.Envs) != 3 {
		t.Fatalf("clean fixture: %+v", rep.Envs)
	}
	for _, e := range rep.Envs {
		if len(e.Findings) > 0 {
			t.Errorf("%s: %v", e.Name, summaries(e.Findings))
		}
	}
}

func examples() string { return filepath.Join(tooltest.RepoRoot(), "environments") }

// TestExampleEnvironmentsPass vets the example shop (environments/) with
// its policies/ folder: every environment passes; the warns are those
// docs/policies.md lists.
func TestExampleEnvironmentsPass(t *testing.T) {
	rep := vet(t, examples(), policies.VetOptions{})
	if rep.Failed() {
		t.Fatalf("the example environments fail: %v", summaries(rep.Findings()))
	}
	got := summaries(rep.Findings())
	want := []string{
		"prod warn authz_allow_all payments.cue:67:11 excused",
		"prod warn canary_drift prod/prod.cue:23:27",
		"staging warn canary_drift staging/staging.cue:23:27",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("findings of the examples:\n%s\nwant (as docs/policies.md lists them):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(rep.Envs) != 4 {
		t.Errorf("%d environments vetted, want base, dev, prod, staging", len(rep.Envs))
	}
	// The directory of an environment is that environment.
	byDir := vet(t, filepath.Join(examples(), "prod"), policies.VetOptions{})
	if g := summaries(byDir.Findings()); len(byDir.Envs) != 1 || byDir.Envs[0].Name != "prod" || !reflect.DeepEqual(g, want[:2]) {
		t.Errorf("vet environments/prod: %v", g)
	}
	// One environment alone gives the same (the others are loaded for
	// the canary comparison only).
	one := vet(t, examples(), policies.VetOptions{Env: "prod"})
	if g := summaries(one.Findings()); len(one.Envs) != 1 || !reflect.DeepEqual(g, want[:2]) {
		t.Errorf("--env prod: %v", g)
	}
}

// TestRepositoryPolicyIsPickedUp: a rule in the mesh repository's
// policies/ folder runs with the defaults and can deny; its data file
// configures it (warn in dev).
func TestRepositoryPolicyIsPickedUp(t *testing.T) {
	rep := vet(t, "testdata/userpolicy", policies.VetOptions{})
	got := summaries(rep.Findings())
	want := []string{
		"base deny team_label mesh.cue:15:14",
		"dev warn team_label mesh.cue:15:14",
	}
	if !reflect.DeepEqual(got, want) || !rep.Failed() {
		t.Fatalf("findings %v, want %v (failed: %v)", got, want, rep.Failed())
	}
	f := rep.Findings()[0]
	if f.Msg != "version v1 of service web has no team label" || f.Path != "mesh.services.web.versions.v1" || f.Fix == "" {
		t.Errorf("finding: %+v", f)
	}
	var rule *policies.Rule
	for _, r := range rep.Rules {
		if r.ID == "team_label" {
			rule = r
		}
	}
	if rule == nil || rule.Builtin || rule.Title != "Versions carry a team label" || rule.Pos.String() != "policies/team_label.rego:8:1" {
		t.Errorf("rule: %+v", rule)
	}
}

// TestPolicyFlagFolder: --policy DIR adds rules (here one that denies
// without a path: reported at the mesh).
func TestPolicyFlagFolder(t *testing.T) {
	rep := vet(t, "testdata/rules/clean", policies.VetOptions{Env: "prod", PolicyDirs: []string{"testdata/orgpolicy"}})
	got := summaries(rep.Findings())
	if want := []string{"prod deny org.size environments/prod/prod.cue:3:1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("findings %v, want %v", got, want)
	}
	if _, err := policies.Vet(ctx, "testdata/rules/clean", policies.VetOptions{PolicyDirs: []string{"testdata/nowhere"}}); err != nil {
		t.Fatal(err)
	} else if rep := vet(t, "testdata/rules/clean", policies.VetOptions{PolicyDirs: []string{"testdata/nowhere"}}); len(rep.Policy) != 1 || !strings.Contains(rep.Policy[0].Msg, "not a directory") {
		t.Errorf("a missing --policy folder: %v", rep.Policy)
	}
}

// TestBrokenPolicyStops: a Rego file that does not parse is reported with
// its own file:line, and nothing is vetted.
func TestBrokenPolicyStops(t *testing.T) {
	rep := vet(t, "testdata/broken", policies.VetOptions{})
	if !rep.Failed() || len(rep.Envs) != 0 || len(rep.Policy) != 1 {
		t.Fatalf("report: envs %v, policy errors %v", rep.Envs, rep.Policy)
	}
	e := rep.Policy[0]
	if e.Pos.File != "policies/broken.rego" || e.Pos.Line != 6 || !strings.Contains(e.Msg, "rego_parse_error") {
		t.Errorf("error = %v, want one at policies/broken.rego:6 (rego_parse_error)", e)
	}
}

// TestCompileErrorsHavePositions: a file that parses but does not
// compile, and a conftest-style package outside weft.rules, are errors at
// their lines too.
func TestCompileErrorsHavePositions(t *testing.T) {
	for name, c := range map[string]struct{ src, want string }{
		"undefined function": {"package weft.rules.x\n\ndeny contains msg if {\n\tmsg := nope(input.mesh)\n}\n", "x.rego:4:9: rego_type_error: undefined function nope"},
		"unsafe variable":    {"package weft.rules.x\n\ndeny contains msg if {\n\tmsg == 1\n}\n", "x.rego:4:2: rego_unsafe_var_error: var msg is unsafe"},
		"package main":       {"package main\n\ndeny contains \"x\" if true\n", "x.rego:1:1: package main has deny rules, but weft only evaluates packages below weft.rules"},
		"http.send":          {"package weft.rules.x\n\ndeny contains msg if {\n\tmsg := http.send({})\n}\n", "x.rego:4:9: rego_type_error: undefined function http.send"},
		"engine namespace":   {"package weft.internal.engine\n\nr := 1\n", "x.rego:1:1: package weft.internal.engine: weft.internal is reserved"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "x.rego"), []byte(c.src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := policies.New(ctx, policies.Options{Dirs: []string{dir}, Root: dir})
			if !policies.IsErrors(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error:\n%v\nwant it to contain %q", err, c.want)
			}
		})
	}
}

// TestConfigurationByData: rules are turned off, moved to warn or excused
// per environment by data files, without editing Rego.
func TestConfigurationByData(t *testing.T) {
	fixture := "testdata/rules/authz_allow_all"
	for name, c := range map[string]struct {
		yaml, want string
	}{
		"as is":            {"", "prod deny authz_allow_all environments/prod/prod.cue:6:9"},
		"off":              {"weft: {config: {rules: {authz_allow_all: {enabled: false}}}}", ""},
		"only elsewhere":   {"weft: {config: {rules: {authz_allow_all: {only: [qa]}}}}", ""},
		"skipped":          {"weft: {config: {rules: {authz_allow_all: {only: ['*'], skip: [prod]}}}}", ""},
		"everywhere":       {"weft: {config: {rules: {authz_allow_all: {only: ['*']}}}}", "prod deny authz_allow_all environments/prod/prod.cue:6:9"},
		"warn":             {"weft: {config: {rules: {authz_allow_all: {warn: [prod]}}}}", "prod warn authz_allow_all environments/prod/prod.cue:6:9"},
		"excused":          {"weft: {config: {exceptions: [{rule: authz_allow_all, service: api, environments: [prod], reason: probes}]}}", "prod warn authz_allow_all environments/prod/prod.cue:6:9 excused"},
		"excused anywhere": {"weft: {config: {exceptions: [{rule: authz_allow_all, service: api, reason: probes}]}}", "prod warn authz_allow_all environments/prod/prod.cue:6:9 excused"},
		"other service":    {"weft: {config: {exceptions: [{rule: authz_allow_all, service: web, reason: probes}]}}", "prod deny authz_allow_all environments/prod/prod.cue:6:9"},
		"other env":        {"weft: {config: {exceptions: [{rule: authz_allow_all, service: api, environments: [dev], reason: x}]}}", "prod deny authz_allow_all environments/prod/prod.cue:6:9"},
	} {
		t.Run(name, func(t *testing.T) {
			var dirs []string
			if c.yaml != "" {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "weft.yaml"), []byte(c.yaml), 0o644); err != nil {
					t.Fatal(err)
				}
				dirs = []string{dir}
			}
			rep := vet(t, fixture, policies.VetOptions{Env: "prod", PolicyDirs: dirs})
			if len(rep.Policy) > 0 {
				t.Fatal(rep.Policy)
			}
			got := strings.Join(summaries(rep.Findings()), "\n")
			if got != c.want {
				t.Errorf("findings %q, want %q", got, c.want)
			}
			if rep.Failed() != strings.Contains(c.want, "deny") {
				t.Errorf("Failed() = %v", rep.Failed())
			}
		})
	}
}

// TestBadConfigurationIsAnError: settings for rules that do not exist and
// incomplete exceptions stop the engine.
func TestBadConfigurationIsAnError(t *testing.T) {
	for name, c := range map[string]struct{ yaml, want string }{
		"unknown rule":      {"weft: {config: {rules: {mtls_stict: {}}}}", `data.weft.config.rules.mtls_stict: no rule "mtls_stict" is loaded`},
		"no reason":         {"weft: {config: {exceptions: [{rule: mtls_strict, service: a}]}}", "data.weft.config.exceptions[0]: reason is required"},
		"exception typo":    {"weft: {config: {exceptions: [{rule: mtls, service: a, reason: r}]}}", `data.weft.config.exceptions[0].rule: no rule "mtls" is loaded`},
		"unknown field":     {"weft: {config: {exceptions: [{rule: mtls_strict, service: a, reason: r, until: x}]}}", "exceptions[0].until: unknown field"},
		"not a list":        {"weft: {config: {rules: {mtls_strict: {skip: dev}}}}", "data.weft.config.rules.mtls_strict.skip: is a string, want a list"},
		"enabled":           {"weft: {config: {rules: {mtls_strict: {enabled: 'no'}}}}", "data.weft.config.rules.mtls_strict.enabled: is a string, want true or false"},
		"unknown setting":   {"weft: {config: {rule: {}}}", "data.weft.config.rule: unknown setting"},
		"bad yaml":          {"weft: [", "weft.yaml"},
		"conflicting files": {"", "merge error"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if c.yaml == "" {
				os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"weft": {"config": {"rules": {"x": 1}}}}`), 0o644)
				os.WriteFile(filepath.Join(dir, "b.json"), []byte(`{"weft": {"config": {"rules": {"x": 2}}}}`), 0o644)
			} else if err := os.WriteFile(filepath.Join(dir, "weft.yaml"), []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := policies.New(ctx, policies.Options{Dirs: []string{dir}, Root: dir})
			if !policies.IsErrors(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// TestRuleContract: deny/warn rules may return strings, objects with a
// CUE path string, booleans; anything else is an error of the rule.
func TestRuleContract(t *testing.T) {
	src := `package weft.rules.contract

deny contains "a plain message" if true

deny_named contains {"msg": "with a CUE path", "path": "mesh.services.api.routes.split.to"} if true

warn_bool := true

warn_object := {"msg": "one object", "path": ["mesh", "services", "api"], "fix": "do this"}
`
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "c.rego"), []byte(src), 0o644)
	e, err := policies.New(ctx, policies.Options{Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := schema.Load("testdata/rules/clean", schema.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := e.Eval(ctx, policies.Input{Model: m})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fs {
		got = append(got, f.String()+" fix="+f.Fix)
	}
	want := []string{
		"mesh.cue:7:1: deny contract: a plain message fix=",
		"mesh.cue:7:1: warn contract: contract fix=",
		"mesh.cue:20:3: warn contract: mesh.services.api: one object fix=do this",
		"mesh.cue:29:5: deny contract: mesh.services.api.routes.split.to: with a CUE path fix=",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	r, _ := e.Rule("contract")
	if r.Severity != policies.Deny || strings.Join(r.Kinds, ",") != "deny,deny_named,warn_bool,warn_object" {
		t.Errorf("rule %+v", r)
	}

	bad := map[string]string{
		"number":        "deny contains 42 if true",
		"no msg":        `deny contains {"path": ["mesh"]} if true`,
		"path elements": `deny contains {"msg": "m", "path": ["mesh", true]} if true`,
		"path type":     `deny contains {"msg": "m", "path": 3} if true`,
	}
	for name, rule := range bad {
		os.WriteFile(filepath.Join(dir, "c.rego"), []byte("package weft.rules.contract\n\n"+rule+"\n"), 0o644)
		e, err := policies.New(ctx, policies.Options{Dirs: []string{dir}, Root: dir})
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.Eval(ctx, policies.Input{Model: m})
		if !policies.IsErrors(err) || !strings.Contains(err.Error(), "c.rego:1:1: rule contract: deny") {
			t.Errorf("%s: error %v", name, err)
		}
	}
}

// TestInputMirrorsTheModel: input.mesh is the model's JSON encoding (the
// CUE field names), except for [] instead of null and "inherited".
func TestInputMirrorsTheModel(t *testing.T) {
	for _, env := range []string{"", "dev", "prod"} {
		m, err := schema.Load(examples(), schema.Options{Env: env, Revision: "r1"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var want map[string]any
		json.Unmarshal(b, &want)
		in := policies.BuildInput(policies.Input{Model: m, Splits: map[string]policies.Splits{"dev": policies.SplitsOf(m)}})
		got, err := ast.JSON(in)
		if err != nil {
			t.Fatal(err)
		}
		doc := got.(map[string]any)
		if doc["environment"] != policies.EnvName(env) || doc["revision"] != "r1" {
			t.Errorf("environment %v revision %v", doc["environment"], doc["revision"])
		}
		inh := map[string]any{}
		for name, s := range doc["mesh"].(map[string]any)["services"].(map[string]any) {
			inh[name] = s.(map[string]any)["inherited"]
			delete(s.(map[string]any), "inherited")
		}
		if g, w := normalize(doc["mesh"]), normalize(want); !reflect.DeepEqual(g, w) {
			gb, _ := json.MarshalIndent(g, "", " ")
			wb, _ := json.MarshalIndent(w, "", " ")
			t.Fatalf("%q: input.mesh differs from the model's JSON:\n%s\nwant\n%s", env, gb, wb)
		}
		if got := inh["orders"]; !reflect.DeepEqual(got, map[string]any{"namespace": true, "mtls": true, "retries": true, "circuitBreaker": true, "outlierDetection": true}) {
			t.Errorf("%q: orders inherited %v", env, got)
		}
		if got := inh["payments"]; !reflect.DeepEqual(got, map[string]any{"mtls": true}) {
			t.Errorf("%q: payments inherited %v", env, got)
		}
		splits := doc["splits"].(map[string]any)["dev"].(map[string]any)["reviews"]
		if b, _ := json.Marshal(splits); !strings.Contains(string(b), `"canary-opt-in":{"v2":100}`) {
			t.Errorf("splits: %s", b)
		}
	}
}

// normalize makes null lists and maps empty, as the input has them.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if e == nil {
				switch k {
				case "calls", "endpoints":
					out[k] = []any{}
				case "labels", "routes":
					out[k] = map[string]any{}
				default:
					out[k] = nil
				}
				continue
			}
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case json.Number:
		return x.String()
	case float64:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return v
}

// TestInheritedNeedsTheDefaultValue: a service value without a position
// (written through a pattern) counts as inherited only if it equals the
// default.
func TestInheritedNeedsTheDefaultValue(t *testing.T) {
	d := mesh.Duration{}
	d.Duration = 5e9
	other := mesh.Duration{Duration: 2e9}
	m := &mesh.Model{
		Defaults: mesh.Defaults{Timeout: d, MTLS: mesh.MTLSStrict},
		Services: map[string]*mesh.Service{
			"a": {Name: "a", Timeout: &d, MTLS: mesh.MTLSStrict},
			"b": {Name: "b", Timeout: &other, MTLS: mesh.MTLSStrict},
		},
		Positions: mesh.Positions{"mesh.services.a.mtls": {File: "x.cue", Line: 1}},
	}
	// A model built by hand, without the loader's resolved timeouts and
	// retries, still converts and evaluates.
	m.Services["c"] = &mesh.Service{Name: "c", Ports: map[string]mesh.Port{"http": {Port: 80, Protocol: mesh.HTTP}}, Routes: []mesh.Route{{}}}
	if e, err := policies.New(ctx, policies.Options{}); err != nil {
		t.Fatal(err)
	} else if _, err := e.Eval(ctx, policies.Input{Model: m}); err != nil {
		t.Fatal(err)
	}
	got, _ := ast.JSON(policies.BuildInput(policies.Input{Model: m}))
	svcs := got.(map[string]any)["mesh"].(map[string]any)["services"].(map[string]any)
	if inh := svcs["a"].(map[string]any)["inherited"]; !reflect.DeepEqual(inh, map[string]any{"timeout": true, "namespace": true, "circuitBreaker": true, "outlierDetection": true}) {
		t.Errorf("a inherited %v", inh)
	}
	if inh := svcs["b"].(map[string]any)["inherited"]; reflect.DeepEqual(inh, nil) || inh.(map[string]any)["timeout"] != nil {
		t.Errorf("b inherited %v", inh)
	}
}

func TestExplain(t *testing.T) {
	var b strings.Builder
	if err := policies.Explain(&b, examples(), nil, "authz_allow_all"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"authz_allow_all: Authz must not allow every caller in prod",
		"deny, built in, weft:policies/bundle/authz_allow_all.rego:",
		"An authz allow rule that lets any caller in",
		"Fix: list the calling services in from",
		`{"only":["prod"]}`,
		"runs in: prod",
		"payments in prod: only the gRPC health check",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("explain lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := policies.Explain(&b, "", nil, "schema"); err != nil || !strings.Contains(b.String(), "schema: The mesh definition is valid") {
		t.Errorf("explain schema: %v\n%s", err, b.String())
	}
	if err := policies.Explain(&b, "", nil, "nope"); err == nil || !strings.Contains(err.Error(), "mtls_strict") {
		t.Errorf("explain of an unknown rule: %v", err)
	}
}

// TestDocsListEveryRule keeps docs/policies.md in step with the bundle.
func TestDocsListEveryRule(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(tooltest.RepoRoot(), "docs", "policies.md"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := policies.New(ctx, policies.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range e.Rules() {
		if !strings.Contains(string(doc), "### "+r.ID+"\n") {
			t.Errorf("docs/policies.md has no section ### %s", r.ID)
		}
		if r.Title == r.ID || r.Description == "" || r.Fix == "" {
			t.Errorf("rule %s lacks METADATA title, description or custom.fix", r.ID)
		}
	}
}
