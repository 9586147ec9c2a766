package compiler

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weft-dev/weft/schema/mesh"
)

// Provenance says where a resource came from. It is written into the
// resource's metadata, filter_metadata["weft.dev/provenance"], so that an
// operator looking at a proxy's config dump (or a NACK) can go straight to
// the line of CUE that produced it.
//
// The revision is deliberately not part of it: a value that changes on
// every commit would change every resource, so each revision would resend
// everything and Envoy would drain and replace every listener. The
// revision is in the snapshot version, and the reconciler knows which
// revision it served to the proxy that reports a problem.
type Provenance struct {
	Service string // the service whose definition produced the resource
	File    string // CUE file, relative to the mesh repository ("" if unknown)
	Line    int    // line in File (0 if unknown)
}

// provenance finds the position of a CUE path (or its nearest written
// ancestor) for a resource produced by service.
func (c *compilation) provenance(service, path string) Provenance {
	pos := c.m.Positions.Lookup(path)
	return Provenance{Service: service, File: pos.File, Line: pos.Line}
}

// servicePos is the provenance of a resource produced by a whole service.
func (c *compilation) servicePos(service string) Provenance {
	return c.provenance(service, mesh.ServicePath(service))
}

// routePos is the provenance of a service's route, by route name.
func (c *compilation) routePos(service, route string) Provenance {
	return c.provenance(service, mesh.RoutePath(service, route))
}

// Metadata is p as Envoy metadata. Unknown file/line are left out.
func (p Provenance) Metadata() *corev3.Metadata {
	fields := map[string]*structpb.Value{
		"service": structpb.NewStringValue(p.Service),
	}
	if p.File != "" {
		fields["file"] = structpb.NewStringValue(p.File)
		fields["line"] = structpb.NewNumberValue(float64(p.Line))
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		ProvenanceKey: {Fields: fields},
	}}
}

// ProvenanceOf reads the provenance back from a resource's metadata; ok is
// false when it carries none.
func ProvenanceOf(md *corev3.Metadata) (p Provenance, ok bool) {
	s := md.GetFilterMetadata()[ProvenanceKey]
	if s == nil {
		return Provenance{}, false
	}
	f := s.GetFields()
	p.Service = f["service"].GetStringValue()
	p.File = f["file"].GetStringValue()
	p.Line = int(f["line"].GetNumberValue())
	return p, true
}
