package diagnose

import (
	"fmt"
	"slices"
	"strings"
)

// The items from gonetscope's reads of the runtime's own records (no
// probe): gc and no_deadline events.

// runtimeReadsOff says why the stream has no runtime reads for the
// target, or "": an older gonetscope, or a limit naming what (prefix).
func runtimeReadsOff(s *stream, prefix string) string {
	if s.target.Hooks["runtime_reads"] == "" {
		return "the stream has no reads of the runtime's records (recorded by a gonetscope without them)"
	}
	for _, l := range s.target.Limits {
		if strings.HasPrefix(l, prefix) || strings.HasPrefix(l, "no gc events, goroutine scan or no_deadline") {
			return l
		}
	}
	return ""
}

// gcPauses: the p99 of the GC's stop-the-world pauses in the window, from
// the gc events (every cycle that ended, with its pause from the runtime's
// own ring).
func gcPauses(s *stream) Item {
	th := uint64(s.th.GCPauseP99)
	it := Item{ID: "gc_pauses", Title: "GC pauses", Unit: "ns", Threshold: "p99 ≤ " + dur(th), Limit: f64(float64(th))}
	if why := runtimeReadsOff(s, "no gc events"); why != "" {
		it.Status, it.Why = NA, why
		return it
	}
	var pauses []uint64
	var cycles, missed uint32
	var total uint64
	var last Event
	for _, e := range s.of("gc") {
		pauses = append(pauses, e.PausesNs...)
		cycles += e.Cycles
		missed += e.PausesMissed
		for _, p := range e.PausesNs {
			total += p
		}
		last = e
	}
	if cycles == 0 {
		it.Status, it.Measured, it.Value = OK, f64(0), "no GC cycle ended in the window"
		return it
	}
	slices.Sort(pauses)
	p, worst := p99(pauses), pauses[len(pauses)-1]
	it.Measured = f64(float64(p))
	it.Value = fmt.Sprintf("p99 %s over %s (max %s)", dur(p), plural(len(pauses), "cycle"), dur(worst))
	if missed > 0 {
		it.Value += fmt.Sprintf("; %d more cycles' pauses left the runtime's ring before they were read", missed)
	}
	if p <= th {
		it.Status = OK
		return it
	}
	it.Status = Problem
	it.score = float64(p) / float64(th)
	gogc := "GOGC unknown"
	if last.GOGC != nil {
		gogc = fmt.Sprintf("GOGC %d", *last.GOGC)
	}
	it.Evidence = append(it.Evidence, Evidence{Count: uint64(cycles), ValueNs: worst,
		Text: fmt.Sprintf("%s in the window: p99 pause %s, max %s, %s stopped in all; %s, heap goal %d bytes",
			plural(uint64(cycles), "GC cycle"), dur(p), dur(worst), dur(total), gogc, last.HeapGoal)})
	it.Finding = fmt.Sprintf("The GC stopped the world for up to %s (p99 %s over %s): every goroutine waits that long. "+
		"Long stop-the-world pauses mostly come from goroutines that do not reach a preemption point (tight loops, long cgo or system calls) or from a starved CPU.",
		dur(worst), dur(p), plural(len(pauses), "cycle"))
	return it
}

// readDeadlines: no_deadline events, goroutines parked on a TCP
// connection's read or write past --no-deadline-after with no deadline
// for it.
func readDeadlines(s *stream) Item {
	it := Item{ID: "read_deadlines", Title: "Reads without deadline", Unit: "count", Threshold: "none parked past --no-deadline-after", Limit: f64(0)}
	if why := runtimeReadsOff(s, "no no_deadline"); why != "" {
		it.Status, it.Why = NA, why
		return it
	}
	evs := s.of("no_deadline")
	it.Measured = f64(float64(len(evs)))
	if len(evs) == 0 {
		it.Status, it.Value = OK, "no goroutine parked on a TCP connection without a deadline past the threshold"
		return it
	}
	it.Status = Problem
	it.score = float64(len(evs))
	it.Value = fmt.Sprintf("%s parked on a connection with no deadline", plural(len(evs), "goroutine"))
	for _, e := range evs[:min(5, len(evs))] {
		var goids []uint64
		if e.Goid != nil {
			goids = []uint64{*e.Goid}
		}
		it.Evidence = append(it.Evidence, Evidence{Goids: goids, FDs: []int32{e.FD}, Laddr: e.Laddr, Lport: e.Lport, Raddr: e.Raddr, Rport: e.Rport,
			CreatedAt: e.CreatedAt, ValueNs: e.ParkedNs, Stack: telling(e.Stack, 4),
			Text: fmt.Sprintf("%s (%s, started at %s) parked %s in a %s on fd %d (%s:%d → %s:%d) with no %s deadline",
				goroutineOf(e), e.Func, short(e.CreatedAt), dur(e.ParkedNs), e.Mode, e.FD, e.Laddr, e.Lport, e.Raddr, e.Rport, e.Mode)})
	}
	e := evs[0]
	it.Finding = fmt.Sprintf("%s of %s waits on %s:%d with no %s deadline (parked %s): if the peer never answers it waits forever. "+
		"Set one (SetReadDeadline, http.Server ReadTimeout/IdleTimeout, a context with a timeout).",
		goroutineOf(e), e.Func, e.Raddr, e.Rport, e.Mode, dur(e.ParkedNs))
	return it
}

// fdSnapshots are the stream's readings of the process's open fds and
// limit: process events (diagnose), summaries' fds and fd_pressure events
// (trace), as process events.
func fdSnapshots(s *stream) []Event {
	var out []Event
	for _, e := range s.evs {
		switch {
		case e.Event == "process":
			out = append(out, e)
		case e.Event == "summary" && e.FDs != nil:
			e.OpenFDs, e.FDLimit = &e.FDs.Open, e.FDs.Limit
			out = append(out, e)
		case e.Event == "fd_pressure" && e.Open != nil:
			e.OpenFDs, e.FDLimit = e.Open, e.Limit
			out = append(out, e)
		}
	}
	return out
}
