package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/weft-dev/weft/compiler/graph"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/schema"
)

func newGraphCmd() *cobra.Command {
	var (
		env, format string
		limits      pipeline.Limits
	)
	cmd := &cobra.Command{
		Use:   "graph DIR",
		Short: "Print the mesh's dependency graph as Graphviz DOT or Mermaid",
		Long: `graph loads DIR (the CUE schema and the cross references of weft vet; no
policies) and prints its declared dependency graph: every service (namespace,
versions, the weights of each route that names versions), an edge for each
of its calls, a dashed edge for each mirror, and "outside the mesh" into
every edge service.

Without --env it draws the base and every environment, each environment
compared with the base; with --env it draws that environment compared with
the base. What an environment changes is marked: services and edges it adds
(green, bold; labelled "added"), those it removes (grey, dotted; "removed"),
services whose split weights differ (orange, with the base's weights).

--format dot (default) prints one Graphviz digraph (an environment per
cluster): render it with "dot -Tsvg". --format mermaid prints one Mermaid
flowchart (an environment per subgraph), which GitHub renders in a
` + "```mermaid" + ` block. The output is the same bytes for the same definition.`,
		Example: `  weft graph environments | dot -Tsvg > shop.svg
  weft graph environments --env prod --format mermaid`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			write, err := graphWriter(format)
			if err != nil {
				return err
			}
			views, err := graphViews(args[0], env, limits)
			if err != nil {
				return err
			}
			return write(cmd.OutOrStdout(), views)
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment to draw, compared with the base (default: the base and every environment)")
	cmd.Flags().StringVar(&format, "format", "dot", "output format: dot or mermaid")
	limits.BindFlags(cmd.Flags())
	return cmd
}

func graphWriter(format string) (func(io.Writer, []graph.View) error, error) {
	switch format {
	case "dot":
		return graph.WriteDOT, nil
	case "mermaid":
		return graph.WriteMermaid, nil
	}
	return nil, fmt.Errorf("graph: --format %q: want dot or mermaid", format)
}

// graphViews loads the base and the environment (or every environment)
// of dir; an environment is compared with the base.
func graphViews(dir, env string, limits pipeline.Limits) ([]graph.View, error) {
	dir, env = schema.ResolveEnv(dir, env)
	load := func(e string) (*graph.Graph, error) {
		m, err := schema.Load(dir, schema.Options{Env: e, Limits: limits.Limits})
		if err != nil {
			return nil, fmt.Errorf("%s:\n%w", envLabel(e), err)
		}
		return graph.Of(m), nil
	}
	base, err := load("")
	if err != nil {
		return nil, err
	}
	if env != "" {
		g, err := load(env)
		if err != nil {
			return nil, err
		}
		return []graph.View{{Graph: g, Base: base}}, nil
	}
	views := []graph.View{{Graph: base}}
	for _, e := range schema.Environments(dir) {
		g, err := load(e)
		if err != nil {
			return nil, err
		}
		views = append(views, graph.View{Graph: g, Base: base})
	}
	return views, nil
}
