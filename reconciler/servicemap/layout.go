package servicemap

import (
	"sort"
)

// Sizes of the drawing, in px.
const (
	nodeW, nodeH       = 164, 58
	outsideW, outsideH = 140, 44
	columnW            = 320 // node width plus the gap that holds edge labels
	rowH               = 100
	margin             = 32
)

// layout places the nodes in columns (a layered drawing, after Sugiyama
// et al.): a node's column is the longest path of declared edges that
// leads to it (edges that close a cycle are left out), the outside first;
// within a column, nodes are ordered by the mean position of their
// neighbours in the columns before (then after) them, a few times over,
// ties by id. It sets every node's box and returns the drawing's size.
// Deterministic: nodes and edges come sorted.
func layout(nodes []Node, edges []Edge) (width, height int) {
	if len(nodes) == 0 {
		return 2 * margin, 2 * margin
	}
	idx := map[string]int{}
	for i, n := range nodes {
		idx[n.ID] = i
	}
	succ := make([][]int, len(nodes))
	for _, e := range edges {
		a, okA := idx[e.From]
		b, okB := idx[e.To]
		if okA && okB && a != b {
			succ[a] = append(succ[a], b)
		}
	}
	forward := acyclic(succ)
	layer := longestPath(forward)
	columns := map[int][]int{}
	last := 0
	for i := range nodes {
		columns[layer[i]] = append(columns[layer[i]], i)
		last = max(last, layer[i])
	}
	pred := make([][]int, len(nodes))
	for a, bs := range forward {
		for _, b := range bs {
			pred[b] = append(pred[b], a)
		}
	}
	pos := make([]float64, len(nodes))
	for _, col := range columns {
		for k, i := range col {
			pos[i] = float64(k)
		}
	}
	for iter := 0; iter < 4; iter++ {
		for l := 1; l <= last; l++ {
			order(columns[l], pred, pos, nodes)
		}
		for l := last - 1; l >= 0; l-- {
			order(columns[l], forward, pos, nodes)
		}
	}
	tallest := 0
	for l := 0; l <= last; l++ {
		tallest = max(tallest, len(columns[l]))
	}
	for l := 0; l <= last; l++ {
		col := columns[l]
		top := margin + (tallest-len(col))*rowH/2
		for k, i := range col {
			n := &nodes[i]
			n.Layer = l
			n.W, n.H = nodeW, nodeH
			if n.Outside {
				n.W, n.H = outsideW, outsideH
			}
			n.X = margin + l*columnW + (nodeW-n.W)/2
			n.Y = top + k*rowH + (nodeH-n.H)/2
		}
	}
	return 2*margin + last*columnW + nodeW, 2*margin + (tallest-1)*rowH + nodeH
}

// acyclic returns the edges without those that close a cycle (found by a
// depth-first search from each node in order).
func acyclic(succ [][]int) [][]int {
	const (
		unseen = iota
		open
		done
	)
	state := make([]int, len(succ))
	out := make([][]int, len(succ))
	var visit func(int)
	visit = func(a int) {
		state[a] = open
		for _, b := range succ[a] {
			if state[b] == open {
				continue // a back edge: left out
			}
			out[a] = append(out[a], b)
			if state[b] == unseen {
				visit(b)
			}
		}
		state[a] = done
	}
	for i := range succ {
		if state[i] == unseen {
			visit(i)
		}
	}
	return out
}

// longestPath is each node's column in a DAG: 0 for a node nothing leads
// to, else one more than the furthest of its predecessors.
func longestPath(succ [][]int) []int {
	indeg := make([]int, len(succ))
	for _, bs := range succ {
		for _, b := range bs {
			indeg[b]++
		}
	}
	var queue []int
	for i, d := range indeg {
		if d == 0 {
			queue = append(queue, i)
		}
	}
	layer := make([]int, len(succ))
	for len(queue) > 0 {
		a := queue[0]
		queue = queue[1:]
		for _, b := range succ[a] {
			layer[b] = max(layer[b], layer[a]+1)
			if indeg[b]--; indeg[b] == 0 {
				queue = append(queue, b)
			}
		}
	}
	return layer
}

// order sorts a column by the mean position of each node's neighbours
// (nodes without any keep their position) and renumbers it.
func order(col []int, neigh [][]int, pos []float64, nodes []Node) {
	key := make(map[int]float64, len(col))
	for _, i := range col {
		key[i] = pos[i]
		if len(neigh[i]) > 0 {
			s := 0.0
			for _, j := range neigh[i] {
				s += pos[j]
			}
			key[i] = s / float64(len(neigh[i]))
		}
	}
	sort.SliceStable(col, func(a, b int) bool {
		ka, kb := key[col[a]], key[col[b]]
		if ka != kb {
			return ka < kb
		}
		return nodes[col[a]].ID < nodes[col[b]].ID
	})
	for k, i := range col {
		pos[i] = float64(k)
	}
}
