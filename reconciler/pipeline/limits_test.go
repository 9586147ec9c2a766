package pipeline_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/schema"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "512KiB": 512 << 10, "4MiB": 4 << 20, "4mb": 4 << 20, "1.5M": 3 << 19, "2G": 2 << 30, "7 B": 7} {
		if got, err := pipeline.ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "lots", "4XB", "0.1"} {
		if _, err := pipeline.ParseBytes(in); err == nil || !strings.Contains(err.Error(), "want a positive number of bytes") {
			t.Errorf("ParseBytes(%q) = %v, want an error", in, err)
		}
	}
}

// TestBindFlags: the flags carry the documented defaults and set the
// limits.
func TestBindFlags(t *testing.T) {
	var l pipeline.Limits
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	l.BindFlags(fs)
	if l.MaxFileBytes != schema.DefaultMaxFileBytes || l.MaxTotalBytes != schema.DefaultMaxTotalBytes || l.Timeout != pipeline.DefaultTimeout {
		t.Errorf("defaults %+v", l)
	}
	if d := fs.Lookup("max-file-size").DefValue; d != "4 MiB" {
		t.Errorf("--max-file-size default shows %q", d)
	}
	if err := fs.Parse([]string{"--max-file-size", "512KiB", "--max-source-size=64MiB", "--revision-timeout", "30s"}); err != nil {
		t.Fatal(err)
	}
	if l.MaxFileBytes != 512<<10 || l.MaxTotalBytes != 64<<20 || l.Timeout != 30*time.Second {
		t.Errorf("parsed %+v", l)
	}
	if err := fs.Parse([]string{"--max-file-size", "huge"}); err == nil || !strings.Contains(err.Error(), `size "huge"`) {
		t.Errorf("bad size: %v", err)
	}
}

// TestBackoff: exponential from Initial, capped at Max, jittered down by
// at most Jitter.
func TestBackoff(t *testing.T) {
	b := pipeline.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Factor: 2, Jitter: 0.2}
	for n, want := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		want *= time.Millisecond
		for i := 0; i < 50; i++ {
			if d := b.Delay(n); d > want || d < want*8/10 {
				t.Fatalf("Delay(%d) = %s, want in [%s, %s]", n, d, want*8/10, want)
			}
		}
	}
	if d := (pipeline.Backoff{}).Delay(100); d > pipeline.DefaultBackoff.Max || d < pipeline.DefaultBackoff.Max*8/10 {
		t.Errorf("zero Backoff after 100 failures: %s, want about %s", d, pipeline.DefaultBackoff.Max)
	}
}
