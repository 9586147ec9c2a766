package xds

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

// FuzzAuthorize: what a client controls of its identity handling — the
// URI SAN of its certificate (as the CA would sign it) and the node it
// claims (id, cluster, metadata as JSON). A stream is bound only to a
// node the control plane placed for the peer's SPIFFE id, with that
// node's class, whatever the claim; the SPIFFE id parses back to itself;
// a refusal is recorded in the status bounded in size and count, as valid
// UTF-8 when the claim was.
func FuzzAuthorize(f *testing.F) {
	records := map[string]NodeRecord{
		"catalog-v1-0": {Identity: cav1.Identity{TrustDomain: "shop.example", Namespace: "shop", ServiceAccount: "catalog"}, Class: "catalog-v1"},
		"reviews-v1-0": {Identity: cav1.Identity{TrustDomain: "shop.example", Namespace: "shop", ServiceAccount: "reviews"}, Class: "reviews-v1"},
	}
	auth := RecordAuthorizer{Lookup: func(id string) (NodeRecord, bool) { r, ok := records[id]; return r, ok }}
	s := New(Options{Logger: slog.New(slog.DiscardHandler)})
	defer s.Stop()
	for _, seed := range []struct{ uri, id, cluster, class, meta string }{
		{"spiffe://shop.example/ns/shop/sa/reviews", "reviews-v1-0", "reviews-v1", "", `{}`},
		{"spiffe://shop.example/ns/shop/sa/reviews", "catalog-v1-0", "catalog-v1", "catalog-v1", `{"weft.local.ip": "127.0.0.1", "weft.local.appPorts": "9080=4444"}`},
		{"spiffe://shop.example/ns/shop/sa/reviews", "reviews-v1-0", "catalog-v1", "", `{"weft.class": "catalog-v1"}`},
		{"spiffe://shop.example/ns/shop/sa/catalog/x", "catalog-v1-0", "", "", `{"weft.class": 7}`},
		{"spiffe://shop.example/ns/shop/sa/catalog?x=y", "catalog-v1-0", "catalog-v1", "", `null`},
		{"https://shop.example/ns/shop/sa/catalog", "catalog-v1-0", "catalog-v1", "", `{"a": {"b": [1, "x"]}}`},
		{"spiffe://shop.example/ns/shop/sa/catalog", "catalog-v1-0\x00", "catalog-v1\xff", "", `{}`},
	} {
		f.Add(seed.uri, seed.id, seed.cluster, seed.class, []byte(seed.meta))
	}
	f.Fuzz(func(t *testing.T, uri, id, cluster, class string, metaJSON []byte) {
		var p Peer
		if u, err := url.Parse(uri); err != nil {
			p.IdentityError = err.Error()
		} else if ident, err := identityFromURIs([]*url.URL{u}); err != nil {
			p.IdentityError = err.Error()
		} else {
			if back, err := cav1.ParseIdentity(ident.String()); err != nil || back != ident {
				t.Fatalf("identity %q from %q does not parse back to itself: %v %v", ident, uri, back, err)
			}
			p.Identity = ident
		}
		node := &corev3.Node{Id: id, Cluster: cluster}
		md := &structpb.Struct{}
		if protojson.Unmarshal(metaJSON, md) == nil {
			node.Metadata = md
		}
		if class != "" {
			if node.Metadata == nil {
				node.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{}}
			}
			if node.Metadata.Fields == nil {
				node.Metadata.Fields = map[string]*structpb.Value{}
			}
			node.Metadata.Fields[ClassMetadataKey] = structpb.NewStringValue(class)
		}
		b, err := auth.Authorize(context.Background(), p, node)
		if err == nil {
			rec, ok := records[b.NodeID]
			switch {
			case !ok || b.NodeID != id:
				t.Fatalf("bound to node %q (claimed %q): not a placed node", b.NodeID, id)
			case rec.Identity != p.Identity:
				t.Fatalf("node %s of %s bound for peer %s", b.NodeID, rec.Identity, p.Identity)
			case b.Class != rec.Class || (ClaimedClass(node) != "" && ClaimedClass(node) != rec.Class) || (cluster != "" && cluster != rec.Class):
				t.Fatalf("node %s bound as class %q; its class is %s, the claim %q/%q", b.NodeID, b.Class, rec.Class, cluster, ClaimedClass(node))
			}
			return
		}
		if err.Error() == "" {
			t.Fatal("a refusal without a reason")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.refuse(p, node, errors.New(strings.Repeat(err.Error(), 3)))
		if len(s.refused) > maxRefused {
			t.Fatalf("%d refused streams kept", len(s.refused))
		}
		r := s.refused[0]
		if len(r.NodeID) > 300 || len(r.Class) > 300 || len(r.Reason) > 1100 {
			t.Fatalf("refused stream fields unbounded: %d, %d, %d bytes", len(r.NodeID), len(r.Class), len(r.Reason))
		}
		if utf8.ValidString(id) && !utf8.ValidString(r.NodeID) {
			t.Fatalf("node id %q kept as invalid UTF-8 %q", id, r.NodeID)
		}
	})
}

// FuzzNACKReason: a NACK's error_detail is whatever the client sends.
// The reason drawn from it is never longer than the message or the bound,
// and the message kept is bounded.
func FuzzNACKReason(f *testing.F) {
	for _, seed := range []string{
		"missing ): (unclosed",
		"Error adding/updating listener(s) inbound: cannot bind '0.0.0.0:46369': Address already in use\n",
		"goo.gle/debugonly\nname: \"outbound|http\"\nvirtual_hosts {\n  name: \"x\"\n}\n: Proto constraint validation failed (RouteConfigurationValidationError.VirtualHosts[0]: embedded message failed validation | caused by HeaderValueValidationError.Value: value length must be at most 16384 bytes)",
		"goo.gle/debugproto\nname: \"outbound|http\"\nvirtual_hosts {\n  name: \"aaaa...(truncated)",
		"name: \"x\"\n: ",
		"Proto constraint validation failed (",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		reason, _ := envoyReason(msg)
		if len(reason) > len(msg) {
			t.Fatalf("reason %q longer than the message %q", reason, msg)
		}
		n := newNACK("fe", "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", sentResponse{version: "r1/x"}, msg, nil, nil, time.Time{})
		if len(n.Reason) > maxNACKReason+32 || len(n.Message) > maxNACKMessage+32 || n.Reason == "" {
			t.Fatalf("reason of %d bytes, message of %d bytes", len(n.Reason), len(n.Message))
		}
	})
}
