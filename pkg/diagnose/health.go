package diagnose

import (
	"cmp"
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
	if len(pauses) == 0 {
		// More than 256 cycles between two reads, every pause gone.
		it.Status, it.Why = NA, fmt.Sprintf("%s ended, and their pauses left the runtime's ring of 256 before they were read", plural(uint64(cycles), "GC cycle"))
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

// heapGrowth: the heap in use at the end of the window against its
// start; a problem when it grew by HeapGrowth and HeapGrowthBytes. The
// readings are diagnose's heap_profile events (the runtime's own heap
// profile at the attach and at the detach: in use as of the last GC
// cycle), or in a stream without them, the live heap that each GC cycle
// marked (gc events), which must then end at its largest. The evidence
// is the allocation sites whose bytes in use grew the most between the
// first and last heap profiles.
func heapGrowth(s *stream) Item {
	th := s.th
	it := Item{ID: "heap", Title: "Heap and allocation", Unit: "ratio", Limit: f64(th.HeapGrowth),
		Threshold: fmt.Sprintf("in use grows < ×%.2g or < %s", th.HeapGrowth, bytesText(int64(th.HeapGrowthBytes)))}
	if why := runtimeReadsOff(s, "no gc events"); why != "" {
		it.Status, it.Why = NA, why
		return it
	}
	var cycles uint32
	var rate float64
	// One reading per cycle: a gc event repeats the last cycle's heap
	// until another ends.
	var live []heapReading
	for _, e := range s.of("gc") {
		cycles += e.Cycles
		if e.HeapAfter != nil && (len(live) == 0 || live[len(live)-1].gc != e.NumGC) {
			live = append(live, heapReading{e.NumGC, *e.HeapAfter})
		}
		if e.AllocRate != nil {
			rate = *e.AllocRate
		}
	}
	var profs []Event
	for _, e := range s.of("heap_profile") {
		if e.Unreadable == "" && e.MemProfileRate != nil {
			profs = append(profs, e)
		}
	}
	var first, last uint64
	rising := true
	switch {
	case len(profs) >= 2:
		first, last = uint64(max(profs[0].InuseBytes, 0)), uint64(max(profs[len(profs)-1].InuseBytes, 0))
		it.Value = fmt.Sprintf("in use %s → %s (the heap profile)", bytesText(int64(first)), bytesText(int64(last)))
	case len(live) >= 2:
		first, last = live[0].heap, live[len(live)-1].heap
		for _, r := range live {
			rising = rising && r.heap <= last
		}
		it.Value = fmt.Sprintf("live heap %s → %s (GC cycles %d to %d)", bytesText(int64(first)), bytesText(int64(last)), live[0].gc, live[len(live)-1].gc)
	default:
		it.Status, it.Why = NA, "no two readings of the heap in the window: diagnose reads the heap profile at its start and end, and a trace stream has a gc event per GC cycle or summary"
		if len(s.of("heap_profile")) > 0 {
			it.Why = "fewer than two GC cycles ended in the window, and no heap profile: " + s.of("heap_profile")[0].Unreadable
		}
		return it
	}
	ratio := float64(last) / float64(max(first, 1))
	it.Measured = f64(ratio)
	if first > 0 {
		it.Value += fmt.Sprintf(", ×%.2f", ratio)
	}
	it.Value += fmt.Sprintf("; %s ended; allocating %s/s", plural(uint64(cycles), "GC cycle"), bytesText(int64(rate)))
	if ratio < th.HeapGrowth || last-min(last, first) < th.HeapGrowthBytes || !rising {
		it.Status = OK
		return it
	}
	it.Status = Problem
	it.score = ratio / th.HeapGrowth
	var grown []siteGrowth
	if len(profs) >= 2 {
		grown = sitesGrown(profs[0], profs[len(profs)-1], func(now, then GoroutineSite) int64 { return now.InuseBytes - then.InuseBytes })
	}
	for i, g := range grown[:min(3, len(grown))] {
		if i > 0 && uint64(g.by) < (last-first)/20 {
			break // under 5% of the growth: not where it went
		}
		now := g.now
		it.Evidence = append(it.Evidence, Evidence{Site: now.Func, Stack: []string{now.key()},
			Bytes: g.by, Count: uint64(max(now.InuseObjects-g.then.InuseObjects, 0)),
			Text: fmt.Sprintf("%s (%s:%d) holds %s more than at the start (%s in %s now)",
				now.Func, short(now.File), now.Line, bytesText(g.by), bytesText(now.InuseBytes), plural(max(now.InuseObjects, 0), "object"))})
	}
	if len(it.Evidence) == 0 {
		it.Evidence = append(it.Evidence, Evidence{Bytes: int64(last - first),
			Text: fmt.Sprintf("live heap after each GC cycle: %s; no heap profile in the stream names the sites (diagnose reads it; trace does not)", heapSeries(live))})
	}
	it.Finding = fmt.Sprintf("The heap in use grew from %s to %s in the window", bytesText(int64(first)), bytesText(int64(last)))
	if len(grown) > 0 {
		g := grown[0]
		it.Finding += fmt.Sprintf(", most of it held by allocations at %s (%s:%d, +%s)", g.now.Func, short(g.now.File), g.now.Line, bytesText(g.by))
	}
	it.Finding += ": memory that is kept and never freed (a leak, an unbounded cache or queue), unless the service is still warming up."
	return it
}

// lockContention: the delay that the runtime's own mutex profile gained
// between diagnose's first and last contention_profile events, per second
// of that span; a problem over LockDelay. n/a when the program records no
// mutex profile: reading it costs nothing, but only the program can turn
// it on (runtime.SetMutexProfileFraction). The block profile is not used:
// it counts goroutines idle on a channel as blocked as well.
func lockContention(s *stream) Item {
	th := uint64(s.th.LockDelay)
	it := Item{ID: "lock_contention", Title: "Lock contention", Unit: "ns", Limit: f64(float64(th)),
		Threshold: "waiting ≤ " + dur(th) + " per second"}
	why := "the stream has no contention_profile events (diagnose reads the runtime's mutex profile)"
	var profs []Event
	for _, e := range s.of("contention_profile") {
		switch {
		case e.Kind != "mutex":
		case e.Unreadable != "":
			why = "the runtime's mutex profile: " + e.Unreadable
		default:
			profs = append(profs, e)
		}
	}
	if len(profs) < 2 {
		it.Status, it.Why = NA, why
		return it
	}
	first, last := profs[0], profs[len(profs)-1]
	span := last.Time.Sub(first.Time)
	if span <= 0 {
		it.Status, it.Why = NA, "the mutex profile was read at one moment only"
		return it
	}
	delay := uint64(max(last.DelayNs-first.DelayNs, 0))
	perSec := uint64(float64(delay) / span.Seconds())
	it.Measured = f64(float64(perSec))
	it.Value = fmt.Sprintf("%s waited per second (%s over %s, %s; the runtime's mutex profile)",
		dur(perSec), dur(delay), dur(uint64(span)), plural(max(last.Contentions-first.Contentions, 0), "contention"))
	if perSec <= th {
		it.Status = OK
		return it
	}
	it.Status = Problem
	it.score = float64(perSec) / float64(max(th, 1))
	grown := sitesGrown(first, last, func(now, then GoroutineSite) int64 { return now.DelayNs - then.DelayNs })
	for _, g := range grown[:min(3, len(grown))] {
		now, contentions := g.now, g.now.Contentions-g.then.Contentions
		it.Evidence = append(it.Evidence, Evidence{Site: now.Func, Stack: []string{now.key()}, ValueNs: uint64(g.by), Count: uint64(max(contentions, 0)),
			Text: fmt.Sprintf("%s (%s:%d) unlocked a lock others waited for: %s of waiting over %s",
				now.Func, short(now.File), now.Line, dur(uint64(g.by)), plural(contentions, "contention"))})
	}
	it.Finding = fmt.Sprintf("Goroutines waited %s per second for locks", dur(perSec))
	if len(grown) > 0 {
		g := grown[0].now
		it.Finding += fmt.Sprintf(", most for the lock that %s (%s:%d) holds", g.Func, short(g.File), g.Line)
	}
	it.Finding += ": shorten what runs under the lock, or split it."
	return it
}

// siteGrowth is a site of a profile event (heap_profile,
// contention_profile) as the last one lists it (now), as the first one did
// (then: zero when it did not list it), and how much it grew by.
type siteGrowth struct {
	now, then GoroutineSite
	by        int64
}

// sitesGrown pairs each site of last with the same site of first and
// returns those that grew (by > 0), most first. A site not among first's
// top sites counts as having had nothing then: its growth is at most what
// it has now.
func sitesGrown(first, last Event, by func(now, then GoroutineSite) int64) []siteGrowth {
	before := map[string]GoroutineSite{}
	for _, g := range first.Sites {
		before[g.key()] = g
	}
	var out []siteGrowth
	for _, g := range last.Sites {
		sg := siteGrowth{now: g, then: before[g.key()]}
		if sg.by = by(sg.now, sg.then); sg.by > 0 {
			out = append(out, sg)
		}
	}
	slices.SortStableFunc(out, func(a, b siteGrowth) int { return cmp.Compare(b.by, a.by) })
	return out
}

// heapReading is one GC cycle's live heap: what it marked.
type heapReading struct {
	gc   uint32
	heap uint64
}

func heapSeries(live []heapReading) string {
	parts := make([]string, 0, len(live))
	for _, r := range live {
		parts = append(parts, bytesText(int64(r.heap)))
	}
	return strings.Join(parts, ", ")
}

// bytesText writes n bytes with a binary unit: "512 B", "3.4 MiB".
func bytesText(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for ; (f >= unit || f <= -unit) && i < 4; i++ {
		f /= unit
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGT"[i-1])
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
