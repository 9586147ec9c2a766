package pipeline_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// refuseReviews is an acceptance check that refuses the reviews classes.
func refuseReviews(res *compiler.Result) schema.Errors {
	var es schema.Errors
	for _, c := range res.Classes {
		if strings.HasPrefix(c.Name, "reviews-") {
			es = append(es, &schema.Error{Pos: mesh.Pos{File: "mesh.cue", Line: 16, Column: 3}, Path: "mesh.services.reviews",
				Msg: "class " + c.Name + " refused", Fix: "do not"})
		}
	}
	return es
}

// TestGateVetAndBuild: the gate of weft vet and weft build: the base and
// every environment (vet) or one (build), with the acceptance step
// reporting its problems as findings with their positions; a failing
// build has no result.
func TestGateVetAndBuild(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, services)
	write(t, dir, "environments/prod/prod.cue", "package mesh\n")
	ctx := context.Background()

	g := &pipeline.Gate{}
	rep, err := g.Vet(ctx, dir, pipeline.VetOptions{Revision: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() || len(rep.Envs) != 2 || rep.Envs[0].Name != policies.BaseEnv || rep.Envs[1].Name != "prod" {
		t.Fatalf("vet: failed %v, envs %+v; want base and prod passing", rep.Failed(), rep.Envs)
	}
	rep, res, err := g.Build(ctx, filepath.Join(dir, "environments", "prod"), pipeline.VetOptions{Revision: "r1"})
	if err != nil || res == nil || len(rep.Envs) != 1 || rep.Envs[0].Name != "prod" || res.Class("reviews-v2") == nil {
		t.Fatalf("build of environments/prod: %v, %+v, result %v; want prod compiled", err, rep.Envs, res != nil)
	}

	g = &pipeline.Gate{Accept: refuseReviews}
	rep, err = g.Vet(ctx, dir, pipeline.VetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, f := range rep.Findings() {
		if f.Rule == policies.RuleAcceptance {
			found = append(found, f.Environment+" "+f.Pos.String()+" "+f.Msg)
		}
	}
	if !rep.Failed() || len(found) != 4 || !strings.Contains(found[0], "mesh.cue:16:3 class reviews-v1 refused") {
		t.Errorf("vet with the acceptance step: failed %v, acceptance findings %q", rep.Failed(), found)
	}
	rep, res, err = g.Build(ctx, dir, pipeline.VetOptions{})
	if err != nil || res != nil || !rep.Failed() || len(rep.Envs) != 1 || rep.Envs[0].Name != policies.BaseEnv {
		t.Errorf("build with a refusing acceptance step: %v, result %v, envs %+v; want the base failed and no result", err, res != nil, rep.Envs)
	}

	// A file over the limit fails the vet like a CUE error.
	g = &pipeline.Gate{Limits: pipeline.Limits{Limits: schema.Limits{MaxFileBytes: 100}}}
	rep, err = g.Vet(ctx, dir, pipeline.VetOptions{Env: "prod"})
	if err != nil || !rep.Failed() || !strings.Contains(rep.Envs[0].Schema.Error(), "mesh.cue: is ") {
		t.Errorf("vet over the file limit: %v, %+v", err, rep.Envs)
	}
}
