package pprof

import (
	"github.com/google/pprof/profile"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
)

// Contention builds the block or mutex profile c as runtime/pprof writes
// it (printCountCycleProfile): sample types contentions (count) and delay
// (nanoseconds: the records' CPU ticks at the target's tick rate),
// period type contentions, period 1. The counts are already scaled by the
// sampling rate, as the runtime records them.
func Contention(proc *goruntime.Process, c *goruntime.ContentionProfile) (*profile.Profile, error) {
	b := NewBuilder(proc, []*profile.ValueType{
		{Type: "contentions", Unit: "count"},
		{Type: "delay", Unit: "nanoseconds"},
	}, "")
	b.SetPeriod(&profile.ValueType{Type: "contentions", Unit: "count"}, 1)
	b.CallerPCs = true
	ghz := float64(c.TicksPerSecond) / 1e9
	for _, r := range c.Records {
		b.Add(b.physical(dropGoexit(proc, r.Stack)), []int64{r.Count, int64(float64(r.Cycles) / ghz)}, nil, nil)
	}
	return b.Profile()
}
