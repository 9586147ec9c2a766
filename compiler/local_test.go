package compiler

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/weft-dev/weft/internal/tooltest"
)

// localCases are the golden cases whose classes are also localized: one
// port, several ports (HTTP + gRPC, HTTP + TCP), TCP dependencies,
// permissive and disabled mTLS.
var localCases = []string{"basic", "endpoints", "mirror", "tcp", "mtls-permissive", "mtls-disable"}

// placement is a deterministic placement of a class: IP 127.0.0.<i+2>,
// app ports = service port + 10000.
func placement(c *Class, i int) Placement {
	p := Placement{IP: fmt.Sprintf("127.0.0.%d", i+2), AppPorts: map[uint32]uint32{}}
	for _, r := range c.Resources[resource.ListenerType] {
		l := r.(*listenerv3.Listener)
		if l.Name != InboundListenerName {
			continue
		}
		for _, fc := range l.FilterChains {
			port := fc.FilterChainMatch.DestinationPort.Value
			p.AppPorts[port] = port + 10000
		}
	}
	return p
}

func localizedCases(t *testing.T) map[string][]*Class {
	t.Helper()
	out := map[string][]*Class{}
	for _, tc := range cases() {
		found := false
		for _, n := range localCases {
			found = found || n == tc.name
		}
		if !found {
			continue
		}
		res := compileCase(t, tc)
		for i, c := range res.Classes {
			before := golden(t, c)
			lc, err := Localize(c, placement(c, i))
			if err != nil {
				t.Fatalf("%s/%s: %v", tc.name, c.Name, err)
			}
			if after := golden(t, c); !bytes.Equal(before, after) {
				t.Fatalf("%s/%s: Localize modified its input", tc.name, c.Name)
			}
			if _, err := lc.Snapshot(); err != nil {
				t.Fatalf("%s/%s: snapshot of the localized class: %v", tc.name, c.Name, err)
			}
			out[tc.name] = append(out[tc.name], lc)
		}
	}
	if len(out) != len(localCases) {
		t.Fatalf("found %d of the local cases %v", len(out), localCases)
	}
	return out
}

func TestLocalizeGolden(t *testing.T) {
	for name, classes := range localizedCases(t) {
		dir := filepath.Join("testdata", "golden-local", name)
		if *update {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range classes {
			file := filepath.Join(dir, c.Name+".yaml")
			got := golden(t, c)
			if *update {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test ./compiler -run TestLocalizeGolden -update)", err)
			}
			if d := cmp.Diff(string(want), string(got)); d != "" {
				t.Errorf("%s differs from %s (-want +got; -update to accept):\n%s", c.Name, file, d)
			}
		}
	}
}

func TestLocalizeShape(t *testing.T) {
	for name, classes := range localizedCases(t) {
		for _, c := range classes {
			y, err := c.YAML()
			if err != nil {
				t.Fatal(err)
			}
			s := string(y)
			for _, bad := range []string{"0.0.0.0", "127.0.0.1", "original_dst"} {
				if strings.Contains(s, bad) {
					t.Errorf("%s/%s: localized class still has %q", name, c.Name, bad)
				}
			}
		}
	}
}

func TestLocalizeErrors(t *testing.T) {
	res := compileCase(t, cases()[0])
	c := res.Class("reviews-v1")
	for _, p := range []Placement{
		{IP: "nope", AppPorts: map[uint32]uint32{9080: 19080}},
		{IP: "127.0.0.2"},
		{IP: "127.0.0.2", AppPorts: map[uint32]uint32{9080: 9080}},
	} {
		if _, err := Localize(c, p); err == nil {
			t.Errorf("Localize(%+v) succeeded", p)
		}
	}
	// The app may use the service port on another address.
	if _, err := Localize(c, Placement{IP: "127.0.0.2", AppIP: "127.0.0.3", AppPorts: map[uint32]uint32{9080: 9080}}); err != nil {
		t.Error(err)
	}
}

// Every localized class, as a static bootstrap, is accepted by Envoy.
func TestLocalizeEnvoyValidate(t *testing.T) {
	envoy := tooltest.Envoy(t)
	for name, classes := range localizedCases(t) {
		for _, c := range classes {
			t.Run(name+"/"+c.Name, func(t *testing.T) {
				t.Parallel()
				envoyValidate(t, envoy, c)
			})
		}
	}
}
