package policies_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/weft-dev/weft/policies"
)

// TestReachabilityFindsBrokenDependencies vets testdata/reachability, whose
// environments each make one change that breaks a declared dependency,
// and expects, per environment, exactly one reachability deny: at the
// blocking rule (file:line:col), naming the caller's calls entry with its
// file:line:col (and, for a mirror, the route's mirror). The base passes.
func TestReachabilityFindsBrokenDependencies(t *testing.T) {
	cases := []struct {
		env, pos, path, msg string
		related             []string // "path@file:line:col"
	}{
		{"deny", "environments/deny/deny.cue:3:39", "mesh.services.orders.authz.deny[0]",
			"cart calls orders, but orders' authz.deny[0] refuses every request from cart",
			[]string{"mesh.services.cart.calls[0]@mesh.cue:15:12"}},
		{"allow", "environments/allow/allow.cue:4:32", "mesh.services.orders.authz.allow",
			"cart calls orders, but orders' authz.allow does not admit cart",
			[]string{"mesh.services.cart.calls[0]@mesh.cue:15:12"}},
		{"emptyallow", "environments/emptyallow/emptyallow.cue:3:32", "mesh.services.orders.authz.allow",
			"cart calls orders, but orders' authz.allow is empty: it admits nobody",
			[]string{"mesh.services.cart.calls[0]@mesh.cue:15:12"}},
		{"plaintext", "environments/plaintext/plaintext.cue:5:9", "mesh.services.orders.authz.allow",
			`cart calls orders, but orders has mtls "disable": plain text carries no identity, so its authz.allow rules that name callers never match`,
			[]string{"mesh.services.cart.calls[0]@mesh.cue:15:12"}},
		{"idle", "environments/idle/idle.cue:6:17", "mesh.services.orders.routes.split.to",
			`cart calls orders, but route "split" of orders sends all its requests to v3, without endpoints or replicas: they get 503`,
			[]string{"mesh.services.cart.calls[0]@mesh.cue:15:12"}},
		{"mirror", "mesh.cue:39:11", "mesh.services.audit.authz.allow",
			`cart calls orders, whose route "split" mirrors its requests to audit with cart's identity, but audit's authz.allow does not admit cart`,
			[]string{"mesh.services.cart.calls[0]@mesh.cue:15:12", "mesh.services.orders.routes.split.mirror@environments/mirror/mirror.cue:4:40"}},
		{"newcall", "mesh.cue:39:11", "mesh.services.audit.authz.allow",
			"reports calls audit, but audit's authz.allow does not admit reports",
			[]string{"mesh.services.reports.calls[0]@environments/newcall/newcall.cue:7:10"}},
		{"tcpdeny", "environments/tcpdeny/tcpdeny.cue:4:35", "mesh.services.db.authz.deny[0]",
			"orders calls db, but db's authz.deny[0] refuses every request from orders",
			[]string{"mesh.services.orders.calls[0]@mesh.cue:24:12"}},
	}
	rep := vet(t, "testdata/reachability", policies.VetOptions{})
	byEnv := map[string][]policies.Finding{}
	for _, e := range rep.Envs {
		if len(e.Schema) > 0 || e.Err != nil {
			t.Fatalf("%s does not load: %v %v", e.Name, e.Schema, e.Err)
		}
		for _, f := range e.Findings {
			if f.Rule == "reachability" {
				byEnv[e.Name] = append(byEnv[e.Name], f)
			}
		}
	}
	if len(byEnv["base"]) != 0 {
		t.Errorf("base: %v", summaries(byEnv["base"]))
	}
	for _, c := range cases {
		t.Run(c.env, func(t *testing.T) {
			fs := byEnv[c.env]
			if len(fs) != 1 {
				t.Fatalf("%d reachability findings, want 1: %v", len(fs), summaries(fs))
			}
			f := fs[0]
			if f.Severity != policies.Deny || f.Pos.String() != c.pos {
				t.Errorf("finding at %s (%s), want a deny at %s", f.Pos, f.Severity, c.pos)
			}
			if f.Path != c.path || f.Msg != c.msg || f.Fix == "" {
				t.Errorf("finding %s: %q (fix %q), want %s: %q", f.Path, f.Msg, f.Fix, c.path, c.msg)
			}
			var rel []string
			for _, r := range f.Related {
				rel = append(rel, r.Path+"@"+r.Pos.String())
				if !strings.Contains(f.Message(nil), r.Msg+": "+r.Pos.String()) {
					t.Errorf("the message does not name %s at %s: %s", r.Msg, r.Pos, f.Message(nil))
				}
			}
			if strings.Join(rel, " ") != strings.Join(c.related, " ") {
				t.Errorf("related %v, want %v", rel, c.related)
			}
		})
	}
}

// TestReachabilityOutputNamesBothEnds: text, GitHub annotations and SARIF
// (relatedLocations) carry the caller's calls entry with its file:line,
// relative to the working directory like the finding's own position.
func TestReachabilityOutputNamesBothEnds(t *testing.T) {
	rep := vet(t, "testdata/reachability", policies.VetOptions{Env: "deny"})
	var text, stdout bytes.Buffer
	opts := policies.WriteOptions{Stdout: &stdout, Stderr: &text, Base: "testdata/reachability"}
	if err := rep.Write(policies.Text, opts); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"testdata/reachability/environments/deny/deny.cue\n",
		"3:39  deny  reachability  cart calls orders, but orders' authz.deny[0] refuses every request from cart (cart's calls entry for orders: testdata/reachability/mesh.cue:15:12)",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, text.String())
		}
	}
	stdout.Reset()
	if err := rep.Write(policies.GitHub, policies.WriteOptions{Stdout: &stdout, Stderr: &text, Base: "testdata/reachability"}); err != nil {
		t.Fatal(err)
	}
	if want := "::error file=testdata/reachability/environments/deny/deny.cue,line=3,col=39,title=weft/reachability::[deny] cart calls orders, but orders' authz.deny[0] refuses every request from cart (cart's calls entry for orders: testdata/reachability/mesh.cue:15:12)"; !strings.Contains(stdout.String(), want) {
		t.Errorf("github output lacks %q:\n%s", want, stdout.String())
	}
	stdout.Reset()
	if err := rep.Write(policies.SARIF, policies.WriteOptions{Stdout: &stdout, Stderr: &text, Base: "testdata/reachability"}); err != nil {
		t.Fatal(err)
	}
	var log struct {
		Runs []struct {
			Results []struct {
				RuleID           string `json:"ruleId"`
				RelatedLocations []struct {
					ID               int `json:"id"`
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string } `json:"artifactLocation"`
						Region           struct {
							StartLine, StartColumn int
						} `json:"region"`
					} `json:"physicalLocation"`
					Message struct{ Text string } `json:"message"`
				} `json:"relatedLocations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range log.Runs[0].Results {
		if r.RuleID != "reachability" {
			continue
		}
		found = true
		if len(r.RelatedLocations) != 1 {
			t.Fatalf("relatedLocations: %+v", r.RelatedLocations)
		}
		rl := r.RelatedLocations[0]
		if rl.ID != 1 || rl.PhysicalLocation.ArtifactLocation.URI != "testdata/reachability/mesh.cue" ||
			rl.PhysicalLocation.Region.StartLine != 15 || rl.PhysicalLocation.Region.StartColumn != 12 ||
			rl.Message.Text != "cart's calls entry for orders" {
			t.Errorf("related location: %+v", rl)
		}
	}
	if !found {
		t.Fatal("no reachability result in the SARIF log")
	}
}
