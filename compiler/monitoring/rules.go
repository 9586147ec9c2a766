package monitoring

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/yaml"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/schema/mesh"
)

// BurnWindow is one multiwindow burn-rate condition: the error budget
// burns Factor times faster than sustainable over both the Long and the
// Short window. The values are those of the Google SRE workbook, chapter
// "Alerting on SLOs" (multiwindow, multi-burn-rate alerts, for a 30-day
// SLO period): 2% of the budget in 1 hour or 5% in 6 hours pages; 10% in 3
// days, or 3x over a day, opens a ticket. The short window (1/12 of the
// long one) makes the alert stop soon after the burning stops.
type BurnWindow struct {
	Severity    string
	Long, Short string
	Factor      float64
}

// BurnWindows are the conditions of every SLO alert, in order.
var BurnWindows = []BurnWindow{
	{"page", "1h", "5m", 14.4},
	{"page", "6h", "30m", 6},
	{"ticket", "1d", "2h", 3},
	{"ticket", "3d", "6h", 1},
}

// Windows are the ratio windows the recording rules keep, shortest first.
var Windows = []string{"5m", "30m", "1h", "2h", "6h", "1d", "3d"}

// AlertName is the name of every SLO alert; its labels tell the service,
// the objective (slo) and the severity.
const AlertName = "WeftErrorBudgetBurn"

// RuleFile is a Prometheus rule file.
type RuleFile struct {
	Groups []RuleGroup `json:"groups"`
}

// RuleGroup is one group of rules.
type RuleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []Rule `json:"rules"`
}

// Rule is a recording rule (Record) or an alerting rule (Alert).
type Rule struct {
	Record      string            `json:"record,omitempty"`
	Alert       string            `json:"alert,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// objective is one SLO of a service: a bad-request ratio and its budget.
type objective struct {
	name   string  // "availability", "latency-p99"
	record string  // recording rule name prefix
	budget float64 // allowed bad share, 0 to 1
	ratio  func(window string) string
	what   string // for humans
}

func objectives(m *mesh.Model, s *mesh.Service) []objective {
	if s.SLO == nil {
		return nil
	}
	fl := Served(m, s)
	labels := []string{compiler.LabelMesh, compiler.LabelDestService}
	var out []objective
	if a := s.SLO.Availability; a > 0 {
		out = append(out, objective{
			name: "availability", record: "weft:slo_errors",
			budget: round(1 - a/100),
			ratio:  func(w string) string { return fl.ErrorRatio(w, labels...) },
			what:   fmt.Sprintf("%g%% of requests answered without a server error", a),
		})
	}
	for _, o := range s.SLO.Latency.Objectives() {
		ms := float64(o.Bound.Milliseconds())
		out = append(out, objective{
			name: "latency-" + o.Name, record: "weft:slo_latency_" + o.Name + "_misses",
			budget: round(1 - o.Quantile),
			ratio:  func(w string) string { return fl.SlowRatio(ms, w, labels...) },
			what:   fmt.Sprintf("%g%% of requests answered within %s", o.Quantile*100, o.Bound),
		})
	}
	return out
}

// round keeps budgets like 1-0.999 printable as 0.001.
func round(f float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', 9, 64), 64)
	return v
}

// Rules are the rules of a service's SLO (nil without an slo block): per
// objective, a recording rule of its bad-request ratio over each of
// Windows ("<record>:ratio_rate<window>", labels mesh and
// destination_service), and two alerts, AlertName with severity "page"
// (1h/5m at 14.4x or 6h/30m at 6x the budget) and "ticket" (1d/2h at 3x or
// 3d/6h at 1x). The ratios count every request to the service once
// (Served): mesh callers' requests at the caller, outside requests at the
// service.
func Rules(m *mesh.Model, s *mesh.Service) *RuleFile {
	objs := objectives(m, s)
	if len(objs) == 0 {
		return nil
	}
	g := RuleGroup{Name: fmt.Sprintf("weft-slo-%s-%s", m.Name, s.Name)}
	sel := fmt.Sprintf(`{%s=%q, %s=%q}`, compiler.LabelMesh, m.Name, compiler.LabelDestService, s.Name)
	for _, o := range objs {
		for _, w := range Windows {
			g.Rules = append(g.Rules, Rule{
				Record: o.record + ":ratio_rate" + w,
				Expr:   o.ratio(w),
			})
		}
		for _, sev := range []string{"page", "ticket"} {
			var conds []string
			for _, bw := range BurnWindows {
				if bw.Severity != sev {
					continue
				}
				limit := strconv.FormatFloat(round(bw.Factor*o.budget), 'f', -1, 64)
				conds = append(conds, fmt.Sprintf("(%s:ratio_rate%s%s > %s and %s:ratio_rate%s%s > %s)",
					o.record, bw.Long, sel, limit, o.record, bw.Short, sel, limit))
			}
			g.Rules = append(g.Rules, Rule{
				Alert:  AlertName,
				Expr:   strings.Join(conds, " or "),
				Labels: map[string]string{"severity": sev, "slo": o.name, "service": s.Name, "mesh": m.Name},
				Annotations: map[string]string{
					"summary": fmt.Sprintf("%s is burning its %s error budget (%s)", s.Name, o.name, o.what),
					"description": fmt.Sprintf("The share of bad requests to %s over the alert's windows is above %s times the budget of %g (%s).",
						s.Name, burnFactors(sev), o.budget, o.what),
				},
			})
		}
	}
	return &RuleFile{Groups: []RuleGroup{g}}
}

func burnFactors(sev string) string {
	var fs []string
	for _, bw := range BurnWindows {
		if bw.Severity == sev {
			fs = append(fs, fmt.Sprintf("%g (over %s and %s)", bw.Factor, bw.Long, bw.Short))
		}
	}
	return strings.Join(fs, " or ")
}

// YAML is the rule file as YAML.
func (f *RuleFile) YAML() ([]byte, error) { return yaml.Marshal(f) }

// Files are the monitoring files of a mesh, keyed by slash-separated
// path: "dashboards/<service>.json" for every service and
// "rules/<service>.yaml" for every service with an slo block. Services
// are done concurrently, one worker per core (a 1,000-service mesh's
// dashboards take ~0.6 s of CPU); the result does not depend on it.
func Files(m *mesh.Model) (map[string][]byte, error) {
	names := m.ServiceNames()
	type files struct {
		dashboard, rules []byte
		err              error
	}
	done := make([]files, len(names))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, name := range names {
		g.Go(func() error {
			done[i].dashboard, done[i].rules, done[i].err = serviceFiles(m, name)
			return nil // kept per service: the first by name is returned
		})
	}
	_ = g.Wait()
	out := map[string][]byte{}
	for i, name := range names {
		if done[i].err != nil {
			return nil, done[i].err
		}
		out["dashboards/"+name+".json"] = done[i].dashboard
		if done[i].rules != nil {
			out["rules/"+name+".yaml"] = done[i].rules
		}
	}
	return out, nil
}

// serviceFiles are one service's dashboard and rule file (nil without an
// slo block).
func serviceFiles(m *mesh.Model, name string) (dashboard, rules []byte, err error) {
	s := m.Services[name]
	if dashboard, err = DashboardJSON(m, s); err != nil {
		return nil, nil, err
	}
	if rf := Rules(m, s); rf != nil {
		if rules, err = rf.YAML(); err != nil {
			return nil, nil, fmt.Errorf("rules of %s: %w", name, err)
		}
	}
	return dashboard, rules, nil
}
