package compiler

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// ResourceTypes are the xDS types a class holds, in the order they are
// hashed and written out: listeners, routes, clusters, endpoints.
var ResourceTypes = []resource.Type{
	resource.ListenerType,
	resource.RouteType,
	resource.ClusterType,
	resource.EndpointType,
}

// contentHash is the first 12 hex digits of a sha256 over every resource
// (type URL, name, deterministic proto encoding), in type then name order.
func contentHash(res map[resource.Type][]types.Resource) (string, error) {
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for _, t := range ResourceTypes {
		for _, r := range res[t] {
			b, err := opts.Marshal(r)
			if err != nil {
				return "", fmt.Errorf("hashing %s %q: %w", t, cache.GetResourceName(r), err)
			}
			fmt.Fprintf(h, "%s\x00%s\x00%d\x00", t, cache.GetResourceName(r), len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// versionString is a snapshot version: "<revision>/<hash>", or the hash
// alone without a revision.
func versionString(revision, hash string) string {
	if revision == "" {
		return hash
	}
	return revision + "/" + hash
}

// Snapshot is the class as a go-control-plane snapshot, versioned with
// SnapshotVersion. It is checked with Consistent: every EDS cluster has
// its load assignment and every RDS name its route configuration, and
// nothing else.
func (c *Class) Snapshot() (*cache.Snapshot, error) {
	s, err := cache.NewSnapshot(c.SnapshotVersion, c.Resources)
	if err != nil {
		return nil, fmt.Errorf("class %s: %w", c.Name, err)
	}
	if err := s.Consistent(); err != nil {
		return nil, fmt.Errorf("class %s: inconsistent snapshot: %w", c.Name, err)
	}
	return s, nil
}

// All returns the class's resources in the order of ResourceTypes, each
// type sorted by name.
func (c *Class) All() []types.Resource {
	var out []types.Resource
	for _, t := range ResourceTypes {
		out = append(out, c.Resources[t]...)
	}
	return out
}
