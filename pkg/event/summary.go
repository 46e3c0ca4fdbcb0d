package event

import (
	"maps"
	"slices"

	"github.com/rs/zerolog"
)

// Summary is one traced process's last interval (--summary-interval):
// every netpoll wait, sent or not, by mode, from the in-kernel histograms,
// and the events written and suppressed by the rate limit
// (--max-events-per-sec), by event type.
type Summary struct {
	Header
	IntervalNs uint64
	// Waits by netpoll mode ("read", "write", "accept", "connect").
	Waits map[string]WaitStats
	// Written and Suppressed count events by type: suppressed ones went
	// over the rate limit and were not written. BelowThreshold counts
	// the connects and accepts not written because they were not notable
	// (--connections notable: fast and successful).
	Written, Suppressed, BelowThreshold map[string]uint64
	// FDs are its open fds, limit and TCP sockets by state at the
	// summary; nil when /proc could not be read.
	FDs *FDs
}

// WaitStats aggregates netpoll waits. P50Ns and P99Ns (of the waits) and
// SchedDelayP99Ns (of their sched_delay part) are upper bounds, within a
// factor of two: the histograms have log2 buckets, and the value lies in
// [bound/2, bound).
type WaitStats struct {
	Count                           uint64
	TotalNs, IoWaitNs, SchedDelayNs uint64
	P50Ns, P99Ns                    uint64
	SchedDelayP99Ns                 uint64
}

func (s *Summary) MarshalZerologObject(e *zerolog.Event) {
	s.marshal(e)
	e.Uint64("interval_ns", s.IntervalNs)
	waits := zerolog.Dict()
	for _, mode := range slices.Sorted(maps.Keys(s.Waits)) {
		w := s.Waits[mode]
		waits.Dict(mode, zerolog.Dict().
			Uint64("count", w.Count).
			Uint64("total_ns", w.TotalNs).
			Uint64("io_wait_ns", w.IoWaitNs).
			Uint64("sched_delay_ns", w.SchedDelayNs).
			Uint64("p50_ns", w.P50Ns).
			Uint64("p99_ns", w.P99Ns).
			Uint64("sched_delay_p99_ns", w.SchedDelayP99Ns))
	}
	e.Dict("waits", waits)
	e.Dict("written", countsOf(s.Written))
	e.Dict("suppressed", countsOf(s.Suppressed))
	e.Dict("below_threshold", countsOf(s.BelowThreshold))
	if s.FDs != nil {
		e.Object("fds", s.FDs)
	}
}

func countsOf(m map[string]uint64) *zerolog.Event {
	d := zerolog.Dict()
	for _, k := range slices.Sorted(maps.Keys(m)) {
		d.Uint64(k, m[k])
	}
	return d
}
