package policies

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/weft-dev/weft/schema/mesh"
)

// Format is an output format of `weft vet`.
type Format string

// Output formats.
const (
	// Text is for people: per environment, findings grouped by file
	// (stderr), and "ok\t<env>" for every environment that passes (stdout).
	Text Format = "text"
	// JSON is one document with every finding and a verdict per environment.
	JSON Format = "json"
	// SARIF is a SARIF 2.1.0 log, for GitHub code scanning and other viewers.
	SARIF Format = "sarif"
	// GitHub is GitHub Actions workflow commands (::error / ::warning),
	// which annotate the pull request's files.
	GitHub Format = "github"
)

// Formats lists the output formats.
var Formats = []Format{Text, JSON, SARIF, GitHub}

// ParseFormat checks an output format name.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown output format %q (want text, json, sarif or github)", s)
}

// WriteOptions say where and how a report is written.
type WriteOptions struct {
	// Stdout receives the machine formats and text's "ok" lines; Stderr
	// text's findings and errors.
	Stdout, Stderr io.Writer
	// Base is prefixed to the positions (relative to the mesh
	// repository's root) to make them relative to the working directory:
	// the root as the user named it ("environments"), or "" when the
	// working directory is the root.
	Base string
	// Color enables ANSI colours in text (for a terminal).
	Color bool
	// Version is weft's version, recorded in SARIF.
	Version string
}

// file is how a position's file is written.
func (o WriteOptions) file(f string) string {
	switch {
	case f == "" || strings.HasPrefix(f, "weft:") || filepath.IsAbs(f):
		return f
	default:
		return filepath.ToSlash(filepath.Join(o.Base, f))
	}
}

func (o WriteOptions) pos(p mesh.Pos) mesh.Pos {
	p.File = o.file(p.File)
	return p
}

// Write writes the report in format f.
func (r *Report) Write(f Format, o WriteOptions) error {
	switch f {
	case JSON:
		return r.writeJSON(o)
	case SARIF:
		return r.writeSARIF(o)
	case GitHub:
		return r.writeGitHub(o)
	default:
		return r.writeText(o)
	}
}

// ---- text ----

type palette struct{ bold, red, yellow, dim, reset string }

func colors(on bool) palette {
	if !on {
		return palette{}
	}
	return palette{bold: "\x1b[1m", red: "\x1b[31m", yellow: "\x1b[33m", dim: "\x1b[2m", reset: "\x1b[0m"}
}

func (r *Report) writeText(o WriteOptions) error {
	c := colors(o.Color)
	ew := &errWriter{w: o.Stderr}
	if len(r.Policy) > 0 {
		fmt.Fprintf(ew, "policies: %d problem(s); nothing was vetted\n", len(r.Policy))
		for _, e := range r.Policy {
			fmt.Fprintf(ew, "%s%s%s\n", c.red, (&Error{Pos: o.pos(e.Pos), Msg: e.Msg}).Error(), c.reset)
		}
		return ew.err
	}
	for _, e := range r.Envs {
		switch {
		case len(e.Schema) > 0:
			fmt.Fprintf(ew, "%s: %d problem(s)\n%v\n", e.Name, len(e.Schema), e.Schema.WithBase(o.Base))
		case e.Err != nil:
			fmt.Fprintf(ew, "%s: %v\n", e.Name, e.Err)
		case len(e.Findings) > 0:
			writeFindings(ew, e, o, c)
		}
		if !e.Failed() {
			if _, err := fmt.Fprintf(o.Stdout, "ok\t%s\n", e.Name); err != nil {
				return err
			}
		}
	}
	return ew.err
}

// writeFindings prints one environment's findings grouped by file.
func writeFindings(w io.Writer, e EnvReport, o WriteOptions, c palette) {
	deny, warn := count(e.Findings)
	fmt.Fprintf(w, "%s: %d deny, %d warn\n", e.Name, deny, warn)
	posW, ruleW := 0, 0
	for _, f := range e.Findings {
		posW = max(posW, len(fmt.Sprintf("%d:%d", f.Pos.Line, f.Pos.Column)))
		ruleW = max(ruleW, len(f.Rule))
	}
	indent := strings.Repeat(" ", 4+posW+2+4+2+ruleW+2)
	file := "\x00"
	for _, f := range e.Findings {
		if name := o.file(f.Pos.File); name != file {
			file = name
			if name == "" {
				name = "(no position)"
			}
			fmt.Fprintf(w, "  %s%s%s\n", c.bold, name, c.reset)
		}
		sev := c.yellow + "warn" + c.reset
		if f.Severity == Deny {
			sev = c.red + "deny" + c.reset
		}
		fmt.Fprintf(w, "    %-*s  %s  %s%-*s%s  %s\n", posW, fmt.Sprintf("%d:%d", f.Pos.Line, f.Pos.Column), sev, c.dim, ruleW, f.Rule, c.reset, f.Message(o.pos))
		switch {
		case f.Excused != "":
			fmt.Fprintf(w, "%s%sexcused: %s%s\n", indent, c.dim, f.Excused, c.reset)
		case f.Severity == Deny && f.Fix != "":
			fmt.Fprintf(w, "%s%sfix: %s%s\n", indent, c.dim, f.Fix, c.reset)
		}
	}
}

func count(fs []Finding) (deny, warn int) {
	for _, f := range fs {
		if f.Severity == Deny {
			deny++
		} else {
			warn++
		}
	}
	return deny, warn
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// ---- json ----

// jsonReport is the --output json document.
type jsonReport struct {
	// OK is false when `weft vet` exits 1.
	OK           bool      `json:"ok"`
	Environments []jsonEnv `json:"environments"`
	Findings     []Finding `json:"findings"`
}

type jsonEnv struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	Deny int    `json:"deny"`
	Warn int    `json:"warn"`
}

func (r *Report) writeJSON(o WriteOptions) error {
	doc := jsonReport{OK: !r.Failed(), Environments: []jsonEnv{}, Findings: []Finding{}}
	for _, e := range r.Envs {
		je := jsonEnv{Name: e.Name, OK: !e.Failed()}
		je.Deny, je.Warn = count(e.Findings)
		je.Deny += len(e.Schema)
		if e.Err != nil {
			je.Deny++
		}
		doc.Environments = append(doc.Environments, je)
	}
	for _, f := range r.Findings() {
		f.Msg = f.Message(o.pos)
		f.Pos = o.pos(f.Pos)
		for i, a := range f.Also {
			f.Also[i] = o.pos(a)
		}
		if f.Related != nil {
			rel := make([]Related, len(f.Related))
			for i, a := range f.Related {
				a.Pos = o.pos(a.Pos)
				rel[i] = a
			}
			f.Related = rel
		}
		doc.Findings = append(doc.Findings, f)
	}
	enc := json.NewEncoder(o.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// ---- github ----

func (r *Report) writeGitHub(o WriteOptions) error {
	ew := &errWriter{w: o.Stdout}
	for _, f := range r.Findings() {
		cmd := "warning"
		if f.Severity == Deny {
			cmd = "error"
		}
		var props []string
		if p := o.pos(f.Pos); p.IsValid() && !strings.HasPrefix(p.File, "weft:") {
			props = append(props, "file="+ghProperty(p.File))
			if p.Line > 0 {
				props = append(props, fmt.Sprintf("line=%d", p.Line))
			}
			if p.Column > 0 {
				props = append(props, fmt.Sprintf("col=%d", p.Column))
			}
		}
		props = append(props, "title="+ghProperty("weft/"+f.Rule))
		msg := f.Message(o.pos)
		if f.Environment != "" {
			msg = "[" + f.Environment + "] " + msg
		}
		if f.Path != "" {
			msg += "\n" + f.Path
		}
		switch {
		case f.Excused != "":
			msg += "\nexcused: " + f.Excused
		case f.Fix != "" && f.Severity == Deny:
			msg += "\nfix: " + f.Fix
		}
		fmt.Fprintf(ew, "::%s %s::%s\n", cmd, strings.Join(props, ","), ghData(msg))
	}
	deny, warn := count(r.Findings())
	fmt.Fprintf(o.Stderr, "weft vet: %d deny, %d warn in %d environment(s)\n", deny, warn, len(r.Envs))
	return ew.err
}

// ghData escapes a workflow command's message.
func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// ghProperty escapes a workflow command's property value.
func ghProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}
