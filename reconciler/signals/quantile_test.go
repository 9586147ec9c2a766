package signals

import (
	"math"
	"testing"
	"time"
)

// TestQuantile interpolates within the bucket like histogram_quantile:
// 100 observations, 50 within 10ms, 90 within 20ms, all within 50ms.
func TestQuantile(t *testing.T) {
	old := map[float64]float64{10: 5, 20: 5, 50: 5, math.Inf(1): 5}
	cur := map[float64]float64{10: 55, 20: 95, 50: 105, math.Inf(1): 105}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 10 * time.Millisecond},
		{0.7, 15 * time.Millisecond},
		{0.99, 47 * time.Millisecond}, // 20 + 30 × (99-90)/(100-90)
	} {
		if got := quantile(c.q, cur, old); got != c.want {
			t.Errorf("q%v = %v, want %v", c.q, got, c.want)
		}
	}
	if got := quantile(0.99, old, old); got != 0 {
		t.Errorf("no observations: %v, want 0", got)
	}
}
