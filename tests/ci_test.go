package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"

	"github.com/weft-dev/weft/internal/tooltest"
)

// workflow is the part of a GitHub Actions workflow the test reads.
// It is parsed as YAML 1.2, as GitHub does: "on" is a key, not a boolean.
type workflow struct {
	On   map[string]any `yaml:"on"`
	Jobs map[string]struct {
		Permissions map[string]string `yaml:"permissions"`
		Env         map[string]string `yaml:"env"`
		Steps       []struct {
			ID   string            `yaml:"id"`
			Name string            `yaml:"name"`
			If   string            `yaml:"if"`
			Uses string            `yaml:"uses"`
			Run  string            `yaml:"run"`
			Env  map[string]string `yaml:"env"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

// offlineSteps are the workflow's run steps that need neither the network
// nor GitHub: the test runs them. The others (installing cue and weft,
// commenting with gh) are checked to be the only ones left out.
var (
	offlineSteps = []string{"cue-vet", "weft-vet", "weft-diff"}
	onlineSteps  = []string{"install", "comment"}
)

// ciRepo is a mesh repository made by `weft init` (which writes the
// workflow), committed on main, cloned, with a pull-request branch that
// changes it: what actions/checkout gives a pull_request job (origin/main
// and HEAD). Commits have fixed dates, so their ids are the same on every
// run.
func ciRepo(t *testing.T, change func(dir string)) string {
	t.Helper()
	root := t.TempDir()
	upstream, work := filepath.Join(root, "upstream"), filepath.Join(root, "work")
	env := append(os.Environ(), "GIT_AUTHOR_NAME=dev", "GIT_AUTHOR_EMAIL=dev@example.com", "GIT_COMMITTER_NAME=dev",
		"GIT_COMMITTER_EMAIL=dev@example.com", "GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME="+root)
	git := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if r := weftRun(t, root, "init", upstream); r.code != 0 {
		t.Fatalf("weft init: %+v", r)
	}
	git(upstream, "init", "-q", "-b", "main")
	git(upstream, "add", ".")
	git(upstream, "commit", "-q", "-m", "mesh")
	git(root, "clone", "-q", upstream, work)
	git(work, "checkout", "-q", "-b", "change")
	change(work)
	git(work, "commit", "-q", "-am", "change")
	return work
}

// runWorkflow runs the offline run steps of the repository's workflow, as
// a pull_request job would, with a fake GitHub environment and the real
// cue and weft on PATH. It returns the exit code and output of each step
// run, stopping at the first that fails (as Actions does).
func runWorkflow(t *testing.T, dir string) (steps map[string]result, stepSummary string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ".github", "workflows", "weft.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var wf workflow
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatalf("parse the workflow: %v", err)
	}
	job, ok := wf.Jobs["weft"]
	if _, pr := wf.On["pull_request"]; !ok || !pr {
		t.Fatalf("the workflow has no job weft run on pull_request: %+v", wf)
	}
	if job.Permissions["security-events"] != "write" || job.Permissions["pull-requests"] != "write" {
		t.Errorf("permissions %v: code scanning and comments need write", job.Permissions)
	}
	bin := t.TempDir()
	for name, path := range map[string]string{"weft": weft(t), "cue": tooltest.CUE(t)} {
		if err := os.Symlink(path, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	runner := t.TempDir()
	summary := filepath.Join(runner, "step-summary.md")
	env := []string{
		"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + runner, "CI=true", "GITHUB_ACTIONS=true",
		"GITHUB_EVENT_NAME=pull_request", "GITHUB_BASE_REF=main", "GITHUB_HEAD_REF=change",
		"GITHUB_REF=refs/pull/7/merge", "GITHUB_REPOSITORY=example/mesh", "GITHUB_WORKSPACE=" + dir,
		"GITHUB_STEP_SUMMARY=" + summary, "GITHUB_OUTPUT=" + filepath.Join(runner, "output"),
		"GITHUB_PATH=" + filepath.Join(runner, "path"), "RUNNER_TEMP=" + runner, "GIT_CONFIG_NOSYSTEM=1",
	}
	for k, v := range job.Env {
		env = append(env, k+"="+v)
	}
	var ran, skipped []string
	out := map[string]result{}
	for _, s := range job.Steps {
		if s.Run == "" {
			continue
		}
		if !slices.Contains(offlineSteps, s.ID) {
			skipped = append(skipped, s.ID)
			continue
		}
		if strings.Contains(s.Run, "${{") {
			t.Errorf("step %s: run uses an expression the test cannot evaluate: %s", s.ID, s.Run)
		}
		if s.If != "" && s.If != "github.event_name == 'pull_request'" {
			t.Errorf("step %s: condition %q not simulated", s.ID, s.If)
		}
		// GitHub's default shell for run: bash --noprofile --norc -eo pipefail.
		cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", s.Run)
		cmd.Dir, cmd.Env = dir, env
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		r := result{stdout: o.String(), stderr: e.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		out[s.ID] = r
		ran = append(ran, s.ID)
		if r.code != 0 {
			break
		}
	}
	if !slices.Equal(skipped, onlineSteps) && len(ran) == len(offlineSteps) {
		t.Errorf("steps left out: %v, want exactly %v (the others must run offline here)", skipped, onlineSteps)
	}
	return out, summary
}

// TestWorkflowCommentsTheDiff runs the workflow `weft init` writes on a
// pull request that changes prod's split and dev's rate limit: cue vet
// and weft vet pass (weft.sarif is a SARIF 2.1.0 log), and weft diff
// writes the comment the last step posts (golden:
// testdata/ci/comment.md) and the job's step summary.
func TestWorkflowCommentsTheDiff(t *testing.T) {
	dir := ciRepo(t, func(dir string) {
		writeFile(t, filepath.Join(dir, "environments", "prod", "prod.cue"),
			"package mesh\n\n// prod: 20% canary.\nmesh: services: api: routes: split: to: {v1: 80, v2: 20}\n")
		writeFile(t, filepath.Join(dir, "environments", "dev", "dev.cue"),
			"package mesh\n\nmesh: services: {\n\tapi: routes: split: to: {v1: 50, v2: 50}\n\tweb: rateLimit: requestsPerSecond: 20\n}\n")
	})
	steps, summary := runWorkflow(t, dir)
	for _, id := range offlineSteps {
		if r, ok := steps[id]; !ok || r.code != 0 {
			t.Fatalf("step %s: %+v", id, r)
		}
	}
	var sarif struct {
		Version string `json:"version"`
		Runs    []struct {
			Results []any `json:"results"`
		} `json:"runs"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "weft.sarif"))
	if err != nil || json.Unmarshal(b, &sarif) != nil || sarif.Version != "2.1.0" || len(sarif.Runs) != 1 {
		t.Fatalf("weft.sarif: %v\n%s", err, b)
	}
	comment, err := os.ReadFile(filepath.Join(dir, "weft-diff.md"))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("testdata", "ci", "comment.md"), string(comment))
	if s, err := os.ReadFile(summary); err != nil || string(s) != string(comment) {
		t.Errorf("the job's step summary is not the comment (%v):\n%s", err, s)
	}
}

// TestWorkflowStopsABrokenDependency: a pull request whose change makes a
// declared dependency impossible (api stops admitting web, which calls
// it) fails at the weft vet step, whose log names both ends with
// file:line, and never reaches the diff.
func TestWorkflowStopsABrokenDependency(t *testing.T) {
	dir := ciRepo(t, func(dir string) {
		writeFile(t, filepath.Join(dir, "environments", "prod", "prod.cue"),
			"package mesh\n\nmesh: services: api: {\n\troutes: split: to: {v1: 90, v2: 10}\n\tauthz: deny: [{from: [\"web\"]}]\n}\n")
	})
	steps, _ := runWorkflow(t, dir)
	vet := steps["weft-vet"]
	if vet.code != 1 {
		t.Fatalf("weft vet step: %+v", vet)
	}
	for _, want := range []string{
		"environments/prod/prod.cue",
		"deny  reachability  web calls api, but api's authz.deny[0] refuses every request from web (web's calls entry for api: mesh.cue:",
	} {
		if !strings.Contains(vet.stderr, want) {
			t.Errorf("the step's log lacks %q:\n%s", want, vet.stderr)
		}
	}
	if _, ran := steps["weft-diff"]; ran {
		t.Error("the diff ran after a failed vet")
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
