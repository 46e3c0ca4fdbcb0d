package metrics

import (
	"math"
	"math/bits"
	"testing"
)

// A value v lands in log2 bucket floor(log2(v)) in the kernel; its
// Prometheus bucket must be the first whose bound is above v.
func TestBuckets(t *testing.T) {
	log2 := make([]uint64, 40)
	values := []uint64{0, 1, 900, 1500, 50_000_000, 1 << 45}
	for _, v := range values {
		b := 0
		if v > 1 {
			b = bits.Len64(v) - 1
		}
		if b > 39 {
			b = 39
		}
		log2[b]++
	}
	count, buckets := Buckets(log2)
	if count != uint64(len(values)) {
		t.Fatalf("count %d, want %d", count, len(values))
	}
	for le, cum := range buckets {
		var want uint64
		for _, v := range values {
			if float64(v)/1e9 < le {
				want++
			}
		}
		if cum != want {
			t.Errorf("bucket le=%g: %d, want %d", le, cum, want)
		}
	}
	if _, ok := buckets[math.Ldexp(1, 10)/1e9]; !ok || len(buckets) != 40-FirstBucket-1 {
		t.Errorf("bounds: %d buckets, want %d starting at 1.024µs", len(buckets), 40-FirstBucket-1)
	}
}
