package pipeline

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/weft-dev/weft/schema"
)

// DefaultTimeout is the time limit of one revision, from load to
// publish. The 1,000-service benchmark mesh takes 1.4 s (load, vet,
// compile) on the 2-core reference machine and the 5,000-service one
// about 10 s; two minutes leaves a wide margin on a busy machine while
// bounding what a pathological revision can hold.
const DefaultTimeout = 2 * time.Minute

// Limits bound one revision: what the loader reads (schema.Limits: per
// file and in all) and how long it may take. A revision over any limit
// fails like any bad revision; the last good one keeps serving.
type Limits struct {
	schema.Limits
	// Timeout is the time limit of one revision (0: DefaultTimeout).
	Timeout time.Duration
	// TimeoutSetting is what sets Timeout, named in errors ("":
	// "--revision-timeout").
	TimeoutSetting string
}

// WithDefaults returns l with its zero fields set to the defaults.
func (l Limits) WithDefaults() Limits {
	l.Limits = l.Limits.WithDefaults()
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	return l
}

// BindFlags registers the limits' flags (--max-file-size,
// --max-source-size, --revision-timeout) on fs, with the defaults, the
// way Flux binds its options' flags next to their type.
func (l *Limits) BindFlags(fs *pflag.FlagSet) {
	*l = l.WithDefaults()
	fs.Var((*byteSize)(&l.MaxFileBytes), "max-file-size", "largest file the loader reads (e.g. 512KiB, 4MiB)")
	fs.Var((*byteSize)(&l.MaxTotalBytes), "max-source-size", "most the loader reads for one revision, every file together (e.g. 64MiB)")
	fs.DurationVar(&l.Timeout, "revision-timeout", l.Timeout, "time limit of one revision, from load to publish")
}

// byteSize is a pflag.Value of a size in bytes: "1048576", "512KiB",
// "4MiB", "1GiB" (also KB/MB/GB, and K/M/G, as powers of 1024).
type byteSize int64

func (b *byteSize) String() string { return schema.FormatBytes(int64(*b)) }
func (b *byteSize) Type() string   { return "size" }

func (b *byteSize) Set(s string) error {
	n, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// ParseBytes reads a size: a number of bytes, optionally with a unit
// (B, KiB, MiB, GiB; KB, MB, GB and K, M, G are read as the same powers
// of 1024); it must be positive.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToUpper(strings.TrimSpace(t[i:]))
	mult := map[string]float64{"": 1, "B": 1,
		"K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10,
		"M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
		"G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}[unit]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || v*mult < 1 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes such as 1048576, 512KiB or 4MiB", s)
	}
	return int64(v * mult), nil
}
