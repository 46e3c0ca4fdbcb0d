package goroutines

// Detector flags creation sites whose live goroutine count keeps growing.
// Feed it one sample of every site's live count per interval.
type Detector struct {
	// Intervals is how many consecutive intervals a site must grow in.
	Intervals int
	// MinGrowth is the least total growth over those intervals.
	MinGrowth int64
	history   map[Site][]int64
}

// NewDetector flags a site that grew in each of the last 3 intervals by
// at least 10 goroutines in all.
func NewDetector() *Detector {
	return &Detector{Intervals: 3, MinGrowth: 10, history: map[Site][]int64{}}
}

// Leak is a site that keeps growing.
type Leak struct {
	Site   Site
	Live   int64
	Growth []int64 // per interval, oldest first
}

// Observe records one interval's live counts and returns the sites that
// have grown in each of the last Intervals intervals. A site a short-lived
// workload churns through goes up and down, and is not flagged.
func (d *Detector) Observe(live map[Site]int64) []Leak {
	var leaks []Leak
	for s, n := range live {
		h := append(d.history[s], n)
		if len(h) > d.Intervals+1 {
			h = h[len(h)-d.Intervals-1:]
		}
		d.history[s] = h
		if len(h) < d.Intervals+1 {
			continue
		}
		growth := make([]int64, 0, d.Intervals)
		growing := true
		for i := 1; i < len(h); i++ {
			growth = append(growth, h[i]-h[i-1])
			if h[i] <= h[i-1] {
				growing = false
			}
		}
		if growing && h[len(h)-1]-h[0] >= d.MinGrowth {
			leaks = append(leaks, Leak{Site: s, Live: n, Growth: growth})
		}
	}
	for s := range d.history {
		if _, ok := live[s]; !ok {
			delete(d.history, s)
		}
	}
	return leaks
}
