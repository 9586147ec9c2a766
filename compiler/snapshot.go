package compiler

import (
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"fmt"
	"hash"

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
// (type URL, name, deterministic proto encoding), in type then name order:
// the snapshot version without its revision. state is the hash's state
// after every type but the load assignments (the last type), from which
// WithEndpoints finishes the hash of new load assignments.
func contentHash(res map[resource.Type][]types.Resource) (sum string, state []byte, err error) {
	h := sha256.New()
	last := len(ResourceTypes) - 1
	if err := hashTypes(h, ResourceTypes[:last], res); err != nil {
		return "", nil, err
	}
	if state, err = h.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
		return "", nil, err
	}
	if err := hashTypes(h, ResourceTypes[last:], res); err != nil {
		return "", nil, err
	}
	return hashSum(h), state, nil
}

// hashTypes adds the resources of the given types to h.
func hashTypes(h hash.Hash, ts []resource.Type, res map[resource.Type][]types.Resource) error {
	opts := proto.MarshalOptions{Deterministic: true}
	for _, t := range ts {
		for _, r := range res[t] {
			b, err := opts.Marshal(r)
			if err != nil {
				return fmt.Errorf("hashing %s %q: %w", t, cache.GetResourceName(r), err)
			}
			hashResource(h, t, cache.GetResourceName(r), b)
		}
	}
	return nil
}

// hashResource adds one resource, marshaled deterministically, to h.
func hashResource(h hash.Hash, t resource.Type, name string, b []byte) {
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00", t, name, len(b))
	h.Write(b)
}

// hashSum is the first 12 hex digits of h's sum.
func hashSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil))[:12] }

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
