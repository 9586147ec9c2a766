package graph

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
)

// View is one graph to draw. With a Base, what the graph changes compared
// with it is marked: added services and edges, removed ones (drawn
// greyed out), split weights that differ (the base's shown beside).
type View struct {
	Graph *Graph
	Base  *Graph
}

// Marks of drawn nodes and edges.
const (
	markAdded   = "added"
	markRemoved = "removed"
	markChanged = "changed"
)

// Colours of the marks (GitHub's Primer palette: readable on white, and
// told apart by their style and text as well as by colour).
const (
	colourAdded   = "#1a7f37"
	colourRemoved = "#8c959f"
	colourChanged = "#bc4c00"
)

type drawing struct {
	title string
	nodes []node
	edges []drawnEdge
}

type node struct {
	name    string
	lines   []string // the first is the name
	outside bool
	mark    string
}

type drawnEdge struct {
	Edge
	label string
	mark  string
}

// title names a view: "base", "dev", "dev (compared with the base)".
func (v View) title() string {
	t := v.Graph.Environment
	if t == "" {
		t = "base"
	}
	if v.Base != nil {
		t += " (compared with the base)"
	}
	return t
}

// draw lays out what a view shows, in a fixed order: outside first, then
// services by name; edges by from, to, kind.
func (v View) draw() drawing {
	g := v.Graph
	d := drawing{title: v.title()}
	var diff Diff
	if v.Base != nil {
		diff = Compare(v.Base, g)
	}
	env := g.Environment
	changed := map[string][]SplitChange{}
	for _, c := range diff.ChangedSplits {
		changed[c.Service] = append(changed[c.Service], c)
	}
	services := slices.Clone(g.Services)
	for _, name := range diff.RemovedServices {
		services = append(services, *v.Base.Service(name))
	}
	slices.SortFunc(services, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	edges := make([]drawnEdge, 0, len(g.Edges)+len(diff.RemovedEdges))
	for _, e := range g.Edges {
		de := drawnEdge{Edge: e, label: e.Label()}
		if slices.Contains(diff.AddedEdges, e) {
			de.mark = markAdded
			de.label = joinLabel("added", de.label)
		}
		edges = append(edges, de)
	}
	for _, e := range diff.RemovedEdges {
		edges = append(edges, drawnEdge{Edge: e, label: joinLabel("removed", e.Label()), mark: markRemoved})
	}
	slices.SortFunc(edges, func(a, b drawnEdge) int { return compareEdges(a.Edge, b.Edge) })
	for _, e := range edges {
		if e.From == Outside {
			d.nodes = append(d.nodes, node{name: Outside, lines: []string{"outside the mesh"}, outside: true})
			break
		}
	}
	for _, s := range services {
		n := node{name: s.Name, lines: []string{s.Name, "ns " + s.Namespace + " · " + strings.Join(s.Versions, ", ")}}
		for _, sp := range s.Splits {
			n.lines = append(n.lines, sp.Route+": "+FormatWeights(sp.Weights))
		}
		for _, c := range changed[s.Name] {
			n.mark = markChanged
			if c.Env == nil {
				n.lines = append(n.lines, c.Route+": "+FormatWeights(nil))
			}
			n.lines = append(n.lines, fmt.Sprintf("(%s in the base: %s)", c.Route, FormatWeights(c.Base)))
		}
		switch {
		case slices.Contains(diff.AddedServices, s.Name):
			n.mark = markAdded
			n.lines = append(n.lines, "(added in "+env+")")
		case slices.Contains(diff.RemovedServices, s.Name):
			n.mark = markRemoved
			n.lines = append(n.lines, "(removed in "+env+")")
		}
		d.nodes = append(d.nodes, n)
	}
	d.edges = edges
	return d
}

// joinLabel is "mark: label", or the mark alone.
func joinLabel(mark, label string) string {
	if label == "" {
		return mark
	}
	return mark + ": " + label
}

// header is the comment at the top of a drawing.
func header(views []View) string {
	if len(views) == 0 {
		return "weft graph: nothing to draw"
	}
	titles := make([]string, len(views))
	for i, v := range views {
		titles[i] = v.title()
	}
	return fmt.Sprintf("weft graph of mesh %s: %s", views[0].Graph.Mesh, strings.Join(titles, "; "))
}

// WriteDOT writes the views as one Graphviz digraph: a single view as the
// graph itself, several as one cluster each (node ids "<view>/<service>").
func WriteDOT(w io.Writer, views []View) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p("// %s\n", header(views))
	name := "mesh"
	if len(views) > 0 {
		name = views[0].Graph.Mesh
	}
	p("digraph %s {\n", dotQuote(name))
	p("  graph [rankdir=LR, fontname=\"Helvetica\", nodesep=0.4, ranksep=0.9];\n")
	p("  node [shape=box, style=rounded, fontname=\"Helvetica\", fontsize=11];\n")
	p("  edge [fontname=\"Helvetica\", fontsize=9];\n")
	for i, v := range views {
		d := v.draw()
		indent, prefix := "  ", ""
		if len(views) > 1 {
			prefix = viewID(v, i) + "/"
			p("  subgraph %s {\n", dotQuote("cluster_"+viewID(v, i)))
			p("    label=%s;\n", dotQuote(d.title))
			indent = "    "
		} else {
			p("  label=%s;\n  labelloc=t;\n", dotQuote(name+": "+d.title))
		}
		for _, n := range d.nodes {
			attrs := []string{"label=" + dotQuote(strings.Join(n.lines, "\n"))}
			if n.outside {
				attrs = append(attrs, "shape=ellipse", "style=dashed")
			}
			attrs = append(attrs, dotMark(n.mark, true)...)
			p("%s%s [%s];\n", indent, dotQuote(prefix+n.name), strings.Join(attrs, ", "))
		}
		for _, e := range d.edges {
			var attrs []string
			if e.label != "" {
				attrs = append(attrs, "label="+dotQuote(e.label))
			}
			if e.Kind == KindMirror && e.mark != markRemoved {
				attrs = append(attrs, "style=dashed")
			}
			attrs = append(attrs, dotMark(e.mark, false)...)
			list := ""
			if len(attrs) > 0 {
				list = " [" + strings.Join(attrs, ", ") + "]"
			}
			p("%s%s -> %s%s;\n", indent, dotQuote(prefix+e.From), dotQuote(prefix+e.To), list)
		}
		if len(views) > 1 {
			p("  }\n")
		}
	}
	p("}\n")
	return bw.Flush()
}

func dotMark(mark string, isNode bool) []string {
	switch mark {
	case markAdded:
		return []string{"color=" + dotQuote(colourAdded), "fontcolor=" + dotQuote(colourAdded), "penwidth=2"}
	case markRemoved:
		style := "dotted"
		if isNode {
			style = "\"rounded,dotted\""
		}
		return []string{"color=" + dotQuote(colourRemoved), "fontcolor=" + dotQuote(colourRemoved), "style=" + style}
	case markChanged:
		return []string{"color=" + dotQuote(colourChanged), "penwidth=2"}
	}
	return nil
}

// dotQuote is a DOT double-quoted string.
func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// viewID is a view's id in ids: its environment, "base", or its index.
func viewID(v View, i int) string {
	if v.Graph.Environment == "" {
		return "base"
	}
	if safeID(v.Graph.Environment) {
		return v.Graph.Environment
	}
	return fmt.Sprintf("view%d", i)
}

func safeID(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return s != ""
}

// WriteMermaid writes the views as one Mermaid flowchart (left to
// right): a single view as the chart, several as one subgraph each. Node
// ids are "g<view index>_<service>" with '-' written '_' (service names
// are DNS labels, so the ids stay distinct).
func WriteMermaid(w io.Writer, views []View) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p("%%%% %s\n", header(views))
	p("flowchart LR\n")
	link := 0
	styles := map[string][]int{}
	classes := map[string][]string{}
	for i, v := range views {
		d := v.draw()
		id := func(name string) string { return fmt.Sprintf("g%d_%s", i, strings.ReplaceAll(name, "-", "_")) }
		indent := "  "
		if len(views) > 1 {
			p("  subgraph g%d[%s]\n", i, mermaidQuote(d.title))
			p("    direction LR\n")
			indent = "    "
		}
		for _, n := range d.nodes {
			label := mermaidQuote(strings.Join(n.lines, "<br/>"))
			if n.outside {
				p("%s%s((%s))\n", indent, id(n.name), label)
			} else {
				p("%s%s[%s]\n", indent, id(n.name), label)
			}
			if n.mark != "" {
				classes[n.mark] = append(classes[n.mark], id(n.name))
			}
		}
		for _, e := range d.edges {
			arrow := "-->"
			switch {
			case e.mark == markAdded:
				arrow = "==>"
			case e.mark == markRemoved || e.Kind == KindMirror:
				arrow = "-.->"
			}
			label := ""
			if e.label != "" {
				label = "|" + mermaidQuote(e.label) + "|"
			}
			p("%s%s %s%s %s\n", indent, id(e.From), arrow, label, id(e.To))
			if e.mark != "" {
				styles[e.mark] = append(styles[e.mark], link)
			}
			link++
		}
		if len(views) > 1 {
			p("  end\n")
		}
	}
	defs := map[string][2]string{
		markAdded:   {"stroke:" + colourAdded + ",stroke-width:3px,color:" + colourAdded, "stroke:" + colourAdded + ",stroke-width:3px"},
		markRemoved: {"stroke:" + colourRemoved + ",stroke-dasharray:4 4,color:" + colourRemoved, "stroke:" + colourRemoved + ",stroke-dasharray:4 4"},
		markChanged: {"stroke:" + colourChanged + ",stroke-width:3px", ""},
	}
	for _, mark := range []string{markAdded, markRemoved, markChanged} {
		if len(classes[mark]) > 0 {
			p("  classDef %s %s\n", mark, defs[mark][0])
			p("  class %s %s\n", strings.Join(classes[mark], ","), mark)
		}
		if len(styles[mark]) > 0 {
			idx := make([]string, len(styles[mark]))
			for k, n := range styles[mark] {
				idx[k] = fmt.Sprint(n)
			}
			p("  linkStyle %s %s\n", strings.Join(idx, ","), defs[mark][1])
		}
	}
	return bw.Flush()
}

// mermaidQuote is a Mermaid double-quoted label ('"' as its entity code).
func mermaidQuote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, "#quot;") + `"`
}
