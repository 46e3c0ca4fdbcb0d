package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
)

// The target's GC, read at scrape from its runtime's own records
// (runtime.memstats, runtime.gcController), as client_golang's Go
// collector exposes them from inside: go_gc_duration_seconds is the same
// summary (quantiles of the pauses in the runtime's ring of the last 256
// cycles, count NumGC, sum PauseTotalNs), per target.
var (
	gcDurationDesc = desc("go_gc_duration_seconds",
		"Stop-the-world pauses of the target's GC cycles (as go_gc_duration_seconds of client_golang: quantiles over the runtime's last 256 pauses, count and sum over all).")
	heapLiveDesc   = desc("go_heap_live_bytes", "The target's heap as its GC pacer sees it (gcController.heapLive): marked by the last cycle plus allocated since.")
	heapMarkedDesc = desc("go_heap_marked_bytes", "The live heap the target's last GC cycle marked (gcController.heapMarked).")
	heapGoalDesc   = desc("go_heap_goal_bytes", "The heap size at which GOGC makes the target's next GC cycle finish (gcController.gcPercentHeapGoal).")
	allocDesc      = desc("go_alloc_bytes_total", "Bytes the target allocated since it started (gcController.totalAlloc, counted per span handed out): rate() is its allocation rate.")
	gogcDesc       = desc("go_gogc", "The target's GOGC (negative: GC off).")
	memLimitDesc   = desc("go_memory_limit_bytes", "The target's memory limit (math.MaxInt64: none).")
)

func describeGC(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{gcDurationDesc, heapLiveDesc, heapMarkedDesc, heapGoalDesc, allocDesc, gogcDesc, memLimitDesc} {
		ch <- d
	}
}

// collectGC emits p's GC metrics; nothing when its records cannot be read.
func collectGC(ch chan<- prometheus.Metric, p *goruntime.Process, labels ...string) {
	s, err := p.GCStats()
	if err != nil {
		return
	}
	pauses := make([]float64, len(s.Pauses))
	for i, ps := range s.Pauses {
		pauses[i] = float64(ps.Ns) / 1e9
	}
	ch <- prometheus.MustNewConstSummary(gcDurationDesc, uint64(s.NumGC), float64(s.PauseTotalNs)/1e9, PauseQuantiles(pauses), labels...)
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(heapLiveDesc, float64(s.HeapLive))
	gauge(heapMarkedDesc, float64(s.HeapMarked))
	gauge(heapGoalDesc, float64(s.HeapGoal))
	gauge(gogcDesc, float64(s.GOGC))
	gauge(memLimitDesc, float64(s.MemoryLimit))
	if s.TotalAlloc > 0 {
		ch <- prometheus.MustNewConstMetric(allocDesc, prometheus.CounterValue, float64(s.TotalAlloc), labels...)
	}
}

// PauseQuantiles are the 0, 0.25, 0.5, 0.75 and 1 quantiles of pauses
// (seconds) as client_golang's Go collector gets them from
// debug.ReadGCStats: of the n sorted pauses, the one at n*i/4 for
// quantile i/4, and the largest for 1; empty without pauses.
func PauseQuantiles(pauses []float64) map[float64]float64 {
	qs := map[float64]float64{}
	if len(pauses) == 0 {
		return qs
	}
	sorted := slices.Sorted(slices.Values(pauses))
	const nq = 4
	for i := 0; i < nq; i++ {
		qs[float64(i)/nq] = sorted[len(sorted)*i/nq]
	}
	qs[1] = sorted[len(sorted)-1]
	return qs
}
