package compiler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestHoldsSorted: the merge-free comparison agrees with merging, on
// random sorted lists of addresses (with ports 0 and duplicates across
// versions), against load assignments of the same or other addresses.
func TestHoldsSorted(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sortedList := func() []Address {
		seen := map[Address]bool{}
		var out []Address
		for range rng.IntN(5) {
			a := Address{Host: fmt.Sprintf("10.0.0.%d", rng.IntN(6))}
			if rng.IntN(3) == 0 {
				a.Port = 8080 + uint32(rng.IntN(2))
			}
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
		key := func(a Address) Address {
			if a.Port == 0 {
				a.Port = 8080
			}
			return a
		}
		slices.SortFunc(out, func(a, b Address) int {
			ka, kb := key(a), key(b)
			if ka.Host != kb.Host {
				if ka.Host < kb.Host {
					return -1
				}
				return 1
			}
			return int(ka.Port) - int(kb.Port)
		})
		// Two addresses that are equal once port 0 is read as 8080 are
		// not strictly increasing: holdsSorted says it is not sure.
		return out
	}
	sure := 0
	for i := range 5000 {
		lists := make([][]Address, 1+rng.IntN(3))
		for j := range lists {
			lists[j] = sortedList()
		}
		var cla = loadAssignment("c", mergeAddresses(lists, 8080))
		if rng.IntN(2) == 0 {
			other := make([][]Address, 1+rng.IntN(3))
			for j := range other {
				other[j] = sortedList()
			}
			cla = loadAssignment("c", mergeAddresses(other, 8080))
		}
		got, ok := holdsSorted(cla, lists, 8080)
		if !ok {
			continue
		}
		sure++
		if want := holds(cla, mergeAddresses(lists, 8080)); got != want {
			t.Fatalf("case %d: lists %v: holdsSorted %v, merging says %v", i, lists, got, want)
		}
	}
	if sure < 1000 {
		t.Fatalf("only %d of 5000 cases were decided without merging", sure)
	}
}
