package pipeline

import (
	"math"
	"math/rand/v2"
	"time"
)

// Backoff spaces the retries of a failing source or revision: the n-th
// consecutive failure (n from 0) waits Initial×Factor^n, capped at Max,
// minus a random part of up to Jitter of it, so that many followers do
// not retry in step. Zero fields take DefaultBackoff's.
type Backoff struct {
	Initial, Max time.Duration
	Factor       float64
	// Jitter is the fraction (0..1) of a delay that may be taken off at
	// random.
	Jitter float64
}

// DefaultBackoff: 1s, doubling, capped at 5 minutes (Flux's default
// interval), up to 20% jitter.
var DefaultBackoff = Backoff{Initial: time.Second, Max: 5 * time.Minute, Factor: 2, Jitter: 0.2}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Factor < 1 {
		b.Factor = DefaultBackoff.Factor
	}
	if b.Jitter <= 0 || b.Jitter > 1 {
		b.Jitter = DefaultBackoff.Jitter
	}
	return b
}

// Delay is the wait after the n-th consecutive failure (n from 0): in
// [d×(1-Jitter), d] where d = min(Initial×Factor^n, Max).
func (b Backoff) Delay(n int) time.Duration {
	b = b.withDefaults()
	d := float64(b.Initial) * math.Pow(b.Factor, float64(n))
	if d > float64(b.Max) || math.IsInf(d, 0) {
		d = float64(b.Max)
	}
	return time.Duration(d * (1 - b.Jitter*rand.Float64()))
}
