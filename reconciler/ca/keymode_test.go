package ca

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRootKeyModeRefused: a root key that group or others may read is
// refused, from a state directory and from files alike, with what to do;
// allowed explicitly, it loads with a warning.
func TestRootKeyModeRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	root := newCA(t, Config{StateDir: dir}).Root()
	key := filepath.Join(dir, RootKeyFileName)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		if err := os.Chmod(key, mode); err != nil {
			t.Fatal(err)
		}
		for _, cfg := range []Config{
			{TrustDomain: "shop.example", StateDir: dir},
			{TrustDomain: "shop.example", RootCertFile: filepath.Join(dir, RootCertFileName), RootKeyFile: key},
		} {
			_, err := New(cfg)
			want := fmt.Sprintf("root key %s has mode %#o: group or others can read the mesh CA's private key", key, mode)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("mode %v: New = %v, want %q", mode, err, want)
			}
			if err != nil && (!strings.Contains(err.Error(), "chmod 600") || !strings.Contains(err.Error(), "--allow-insecure-key-permissions")) {
				t.Errorf("mode %v: %v does not say what to do", mode, err)
			}
		}
	}
	var logs bytes.Buffer
	c, err := New(Config{TrustDomain: "shop.example", StateDir: dir, AllowInsecureKeyPermissions: true,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("allowed: %v", err)
	}
	if !c.Root().Equal(root) || !strings.Contains(logs.String(), "readable by group or others") || !strings.Contains(logs.String(), "mode=0604") {
		t.Errorf("allowed insecure key: same root %v, log %q", c.Root().Equal(root), logs.String())
	}
	if err := os.Chmod(key, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{TrustDomain: "shop.example", StateDir: dir}); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}
