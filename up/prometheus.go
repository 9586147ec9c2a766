package up

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/compiler/monitoring"
	"github.com/weft-dev/weft/reconciler/metrics"
	"github.com/weft-dev/weft/schema/mesh"
)

// The Prometheus scrape configuration that `weft up` keeps in its state
// directory (docs/observability.md):
//
//	<state>/prometheus/prometheus.yml   scrape jobs weft-proxies and weft-control-plane, rule_files
//	<state>/prometheus/proxies.json     file_sd targets: every running instance's stats listener
//	<state>/prometheus/rules/*.yaml     the recording and alerting rules of the served revision
//
// `prometheus --config.file=<state>/prometheus/prometheus.yml` scrapes the
// local mesh; proxies.json is rewritten (atomically) whenever instances
// start or stop, and Prometheus re-reads it on its own.
const (
	PrometheusDir     = "prometheus"
	PrometheusConfig  = "prometheus.yml"
	PrometheusTargets = "proxies.json"
	PrometheusRules   = "rules"
)

// ScrapeInterval is the interval the generated prometheus.yml scrapes at.
const ScrapeInterval = "5s"

// PrometheusConfigPath is the generated prometheus.yml.
func (m *Mesh) PrometheusConfigPath() string {
	return filepath.Join(m.opts.StateDir, PrometheusDir, PrometheusConfig)
}

// fileSDGroup is one target group of a Prometheus file_sd file.
type fileSDGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// writePrometheusConfig writes prometheus.yml (once the status address is
// known) and an empty target list.
func (m *Mesh) writePrometheusConfig() error {
	dir := filepath.Join(m.opts.StateDir, PrometheusDir)
	if err := os.MkdirAll(filepath.Join(dir, PrometheusRules), 0o755); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# Written by weft up: scrapes every proxy of the local mesh and its
# control plane. Run: prometheus --config.file=%[1]s
# (or copy the two jobs into your own configuration).
global:
  scrape_interval: %[2]s
  evaluation_interval: %[2]s
rule_files:
  - %[3]s
scrape_configs:
  - job_name: weft-proxies
    metrics_path: %[4]s
    file_sd_configs:
      - files: [%[5]s]
        refresh_interval: %[2]s
  - job_name: weft-control-plane
    metrics_path: %[6]s
    static_configs:
      - targets: [%[7]q]
`, filepath.Join(dir, PrometheusConfig), ScrapeInterval, filepath.Join(dir, PrometheusRules, "*.yaml"),
		compiler.StatsPath, filepath.Join(dir, PrometheusTargets), metrics.Path, m.statusAddr)
	if err := writeFileAtomic(filepath.Join(dir, PrometheusConfig), []byte(cfg)); err != nil {
		return err
	}
	return m.writePrometheusTargetsLocked()
}

// writePrometheusTargetsLocked rewrites proxies.json from the running
// instances; m.mu is held (or the mesh is not running yet).
func (m *Mesh) writePrometheusTargetsLocked() error {
	groups := []fileSDGroup{}
	for _, ri := range m.instances {
		in := ri.in
		groups = append(groups, fileSDGroup{
			Targets: []string{in.StatsAddr},
			Labels:  map[string]string{"weft_node": in.NodeID, "weft_class": in.Class},
		})
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].Labels["weft_node"] < groups[j].Labels["weft_node"] })
	b, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(m.opts.StateDir, PrometheusDir, PrometheusTargets), append(b, '\n'))
}

// writeRulesLocked replaces the rule files with those of the served
// revision's model (compiler/monitoring, the rules weft build writes).
func (m *Mesh) writeRulesLocked(model *mesh.Model) error {
	all, err := monitoring.Files(model)
	if err != nil {
		return err
	}
	files := map[string][]byte{}
	for name, b := range all {
		if rest, ok := strings.CutPrefix(name, "rules/"); ok {
			files[rest] = b
		}
	}
	dir := filepath.Join(m.opts.StateDir, PrometheusDir, PrometheusRules)
	old, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range old {
		if _, keep := files[filepath.Base(f)]; !keep {
			_ = os.Remove(f)
		}
	}
	for name, b := range files {
		if strings.ContainsRune(name, filepath.Separator) {
			return fmt.Errorf("rule file name %q", name)
		}
		if err := writeFileAtomic(filepath.Join(dir, name), b); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
