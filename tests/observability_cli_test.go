package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-dev/weft/internal/tooltest"
)

// TestBuildWritesDashboardsAndRules: weft build of the example's dev
// environment writes a Grafana dashboard per service and the SLO rules of
// frontend and orders (their slo blocks), which promtool accepts.
func TestBuildWritesDashboardsAndRules(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if r := weftRun(t, examplesDir(), "build", ".", "--env", "dev", "--revision", "r1", "-o", out); r.code != 0 {
		t.Fatalf("build: %+v", r)
	}
	dashboards, _ := filepath.Glob(filepath.Join(out, "monitoring", "dashboards", "*.json"))
	if len(dashboards) != 8 {
		t.Errorf("%d dashboards, want one per service (8): %v", len(dashboards), dashboards)
	}
	for _, d := range dashboards {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			UID    string `json:"uid"`
			Panels []struct {
				Type    string `json:"type"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		graphs := 0
		for _, p := range dash.Panels {
			if p.Type == "timeseries" {
				graphs++
				if len(p.Targets) == 0 || !strings.Contains(p.Targets[0].Expr, "envoy_weft_") {
					t.Errorf("%s: a panel without a weft query: %+v", d, p)
				}
			}
		}
		if !strings.HasPrefix(dash.UID, "weft-shop-") || graphs < 4 {
			t.Errorf("%s: uid %q, %d graphs", d, dash.UID, graphs)
		}
	}
	rules, _ := filepath.Glob(filepath.Join(out, "monitoring", "rules", "*.yaml"))
	var names []string
	for _, r := range rules {
		names = append(names, filepath.Base(r))
	}
	if strings.Join(names, ",") != "frontend.yaml,orders.yaml" {
		t.Fatalf("rule files %v, want frontend's and orders'", names)
	}
	o, err := exec.Command(tooltest.Promtool(t), append([]string{"check", "rules"}, rules...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, o)
	}
}
