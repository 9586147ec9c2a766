package diff

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Format is an output format of a Report.
type Format string

// Output formats.
const (
	Text     Format = "text"
	Markdown Format = "markdown"
	JSON     Format = "json"
)

// ParseFormat checks a format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Text, Markdown, JSON:
		return f, nil
	}
	return "", fmt.Errorf("unknown output format %q (want text, markdown or json)", s)
}

// CommentLimit is the most characters GitHub keeps in a pull-request
// comment; Markdown output stays below it.
const CommentLimit = 65536

// Write writes the report in format f.
func (r *Report) Write(w io.Writer, f Format) error {
	var s string
	switch f {
	case Markdown:
		s = r.Markdown(CommentLimit - 1024)
	case JSON:
		b, err := r.JSON()
		if err != nil {
			return err
		}
		s = string(b)
	default:
		s = r.Text()
	}
	_, err := io.WriteString(w, s)
	return err
}

func envList(envs []string) string { return strings.Join(envs, ", ") }

// Text is the report for a terminal: the summary, then every changed
// class with its resources and fields.
func (r *Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "weft diff %s → %s\n\n", r.Base, r.Head)
	for _, l := range r.Summary() {
		fmt.Fprintf(&b, "%s: %s\n", envList(l.Environments), l.Text)
	}
	for _, e := range r.Envs {
		if len(e.Classes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n== %s ==\n", e.Name)
		for _, c := range e.Classes {
			b.WriteString(classText(c))
		}
	}
	return b.String()
}

// classText is one class group: its classes and status, then each
// resource and its fields.
func classText(c ClassDiff) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n", strings.Join(c.Classes, ", "), c.Status)
	for _, r := range c.Resources {
		fmt.Fprintf(&b, "  %s %s: %s\n", r.Type, r.Name, r.Status)
		for _, f := range r.Fields {
			fmt.Fprintf(&b, "    %s: %s → %s\n", f.Path, f.Old, f.New)
		}
	}
	return b.String()
}

// Markdown is the report as a pull-request comment of at most limit
// characters: the summary as a list, then one collapsible section per
// changed class (classes with the same changes share one), each a code
// block of its resources and fields. What does not fit is cut, with a
// note saying how much and where to see it all.
func (r *Report) Markdown(limit int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### weft diff `%s` → `%s`\n\n", mdCode(r.Base), mdCode(r.Head))
	if !r.Changed() {
		b.WriteString("No change to any proxy's configuration.\n\n")
	}
	summary := r.Summary()
	budget := limit / 2 // the summary gets at most half
	for i, l := range summary {
		line := fmt.Sprintf("- **%s**: %s\n", mdEscape(envList(l.Environments)), mdEscape(l.Text))
		if b.Len()+len(line) > budget {
			fmt.Fprintf(&b, "- … %d more summary lines not shown (the comment is cut under GitHub's %d-character limit; run `weft diff` for everything)\n", len(summary)-i, CommentLimit)
			break
		}
		b.WriteString(line)
	}
	const trailerRoom = 400
	left, shown := 0, 0
	for _, e := range r.Envs {
		left += len(e.Classes)
	}
	for _, e := range r.Envs {
		if len(e.Classes) == 0 {
			continue
		}
		head := fmt.Sprintf("\n#### %s\n\n", mdEscape(e.Name))
		if b.Len()+len(head)+trailerRoom > limit {
			break
		}
		b.WriteString(head)
		for _, c := range e.Classes {
			sec := classSection(c, 8000)
			if b.Len()+len(sec)+trailerRoom > limit {
				break
			}
			b.WriteString(sec)
			shown++
		}
	}
	if shown < left {
		fmt.Fprintf(&b, "\n**… %d more changed class groups not shown**: the comment is cut to stay under GitHub's %d-character limit. Run `weft diff` locally, or see the job's log, for everything.\n", left-shown, CommentLimit)
	}
	return b.String()
}

// classSection is one collapsible section: a summary line naming the
// classes and a code block of the changes, cut at max characters.
func classSection(c ClassDiff, max int) string {
	var body strings.Builder
	for _, r := range c.Resources {
		fmt.Fprintf(&body, "%s %s: %s\n", r.Type, r.Name, r.Status)
		for _, f := range r.Fields {
			fmt.Fprintf(&body, "  %s: %s → %s\n", f.Path, f.Old, f.New)
		}
	}
	text := body.String()
	if len(text) > max {
		cut := strings.LastIndexByte(text[:max], '\n') + 1
		text = text[:cut] + fmt.Sprintf("… %d more lines\n", strings.Count(text[cut:], "\n"))
	}
	fence := "```"
	for strings.Contains(text, fence) {
		fence += "`"
	}
	names := make([]string, len(c.Classes))
	for i, n := range c.Classes {
		names[i] = "<code>" + htmlEscape(n) + "</code>"
	}
	what := fmt.Sprintf("%d resources", len(c.Resources))
	if len(c.Resources) == 1 {
		what = "1 resource"
	}
	return fmt.Sprintf("<details><summary>%s: %s (%s)</summary>\n\n%stext\n%s%s\n\n</details>\n\n",
		strings.Join(names, ", "), c.Status, what, fence, text, fence)
}

// mdEscape escapes the characters Markdown would read as formatting.
func mdEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune("\\`*_{}[]<>#|~!", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// mdCode makes s safe inside a code span.
func mdCode(s string) string { return strings.ReplaceAll(s, "`", "'") }

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// jsonReport is the JSON document: the report with its summary and
// verdict.
type jsonReport struct {
	Base         string        `json:"base"`
	Head         string        `json:"head"`
	Changed      bool          `json:"changed"`
	Summary      []SummaryLine `json:"summary"`
	Environments []EnvDiff     `json:"environments"`
}

// JSON is the report as one indented JSON document.
func (r *Report) JSON() ([]byte, error) {
	doc := jsonReport{Base: r.Base, Head: r.Head, Changed: r.Changed(), Summary: r.Summary(), Environments: r.Envs}
	if doc.Environments == nil {
		doc.Environments = []EnvDiff{}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
