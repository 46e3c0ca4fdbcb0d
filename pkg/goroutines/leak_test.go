package goroutines

import (
	"slices"
	"testing"
)

func TestDetector(t *testing.T) {
	leaky, churn, ramp := Site{1, 2}, Site{3, 4}, Site{5, 6}
	d := NewDetector()
	samples := []map[Site]int64{
		{leaky: 10, churn: 40, ramp: 0},
		{leaky: 20, churn: 35, ramp: 1},
		{leaky: 30, churn: 41, ramp: 2},
		{leaky: 40, churn: 38, ramp: 3}, // ramp grew 3 times, but by 3 in all
		{leaky: 45, churn: 44, ramp: 4},
	}
	for i, s := range samples {
		leaks := d.Observe(s)
		var sites []Site
		for _, l := range leaks {
			sites = append(sites, l.Site)
		}
		want := []Site(nil)
		if i >= 3 {
			want = []Site{leaky}
		}
		if !slices.Equal(sites, want) {
			t.Errorf("sample %d: leaks %+v, want %v", i, leaks, want)
		}
		if i == 4 && (leaks[0].Live != 45 || !slices.Equal(leaks[0].Growth, []int64{10, 10, 5})) {
			t.Errorf("sample 4: %+v, want live 45, growth [10 10 5]", leaks[0])
		}
	}
	// A pause in the growth resets it.
	if l := d.Observe(map[Site]int64{leaky: 45}); len(l) != 0 {
		t.Errorf("a site that stopped growing is still flagged: %+v", l)
	}
}
