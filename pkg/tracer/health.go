package tracer

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goroutines"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// health is the Go runtime's health read from outside, with no probe: the
// runtime's own records in /proc/PID/mem and the process's /proc files.
// Per target, every HealthInterval: its GC records (gc events) and its fds
// (fd_pressure); every GoroutineInterval: a scan of its goroutine list
// (goroutines, goroutine_leak); every NoDeadlineAfter/4: the goroutines
// parked on a socket whose pollDesc has no deadline (no_deadline).
type health struct {
	interval, scanEvery, noDeadlineAfter time.Duration
	// gcEvery batches gc events: one per cycle, but when cycles come
	// more often, one per gcEvery (the summary interval).
	gcEvery time.Duration
	top     int
	// lifecycle are the --goroutines uprobes' counts, merged into the
	// goroutines event; nil without --goroutines.
	lifecycle *goroutines.Objects
	// mu guards byPID: attach and detach run under t.mu, the ticks on
	// Run's goroutine.
	mu    sync.Mutex
	byPID map[int]*healthState
}

// healthState is one target's. Only the ticks use its fields after attach.
type healthState struct {
	tg *target
	rt *goruntime.Process // nil: no runtime reads (limits say why)

	gcOK bool
	// gcLast is the last read, gcSent the read of the last gc event
	// (the attach's before the first), gcAt when that was; gcPending
	// gathers the cycles read since.
	gcLast, gcSent *goruntime.GCStats
	gcAt           time.Time
	gcPending      *event.GC
	gcSentAny      bool

	fdOver bool

	scanOK    bool
	lastScan  time.Time
	detector  *goroutines.Detector
	firstSeen map[uint64]time.Time // by goid
	names     map[uint64]siteName  // by startpc

	pollOK bool
	parked map[parkKey]time.Time // first seen parked
	told   map[parkKey]bool
}

// siteName is what goroutines started at a pc are named by.
type siteName struct {
	fn       string
	system   bool
	resolved bool // not a wrapper, or the wrapper's callee was read
}

// parkKey is one park of a goroutine on a pollDesc: the goroutine's
// trackingSeq moves each time it stops running, so one that ran and
// parked again between two checks is a new park.
type parkKey struct {
	g    uint64
	goid uint64
	fd   int32
	mode string
	seq  uint8
}

// fdPressureAt is the share of RLIMIT_NOFILE over which fd_pressure is written.
const fdPressureAt = 0.85

func (t *Tracer) runtimeHealth(lifecycle *goroutines.Objects) feature {
	o := t.opts
	h := &health{interval: o.HealthInterval, scanEvery: o.GoroutineInterval, noDeadlineAfter: o.NoDeadlineAfter,
		gcEvery: o.SummaryInterval, top: o.GoroutineTop, lifecycle: lifecycle, byPID: map[int]*healthState{}}
	if h.gcEvery <= 0 {
		h.gcEvery = h.interval
	}
	return feature{
		hooks: map[string]string{"runtime_reads": "proc_mem"},
		samplers: []sampler{
			{every: h.interval, run: func(sink Sink) error { return h.tickGC(sink, false) }},
			{every: math.MaxInt64, atEnd: true, run: func(sink Sink) error { return h.tickGC(sink, true) }},
			{every: h.interval, run: h.tickFDs},
			// Counts are due every GoroutineInterval per target (since
			// its attach): check five times an interval.
			{every: max(h.scanEvery/5, 10*time.Millisecond), run: h.tickScan},
			// And once more at the end, whatever the interval: the
			// counts when the run ended.
			{every: math.MaxInt64, atEnd: true, run: h.scanAll},
			{every: max(h.noDeadlineAfter/4, 10*time.Millisecond), run: h.tickNoDeadline},
		},
		attach: h.attach,
		detach: h.detach,
	}
}

// attach takes the target's runtime reader (opening one if the attach
// could not) and reads its GC records once: the first gc event counts from here.
// What cannot be read is switched off and said in the attached event.
func (h *health) attach(tg *target) error {
	st := &healthState{tg: tg, rt: tg.rt, detector: goroutines.NewDetector(), firstSeen: map[uint64]time.Time{},
		names: map[uint64]siteName{}, parked: map[parkKey]time.Time{}, told: map[parkKey]bool{}, lastScan: time.Now()}
	if st.rt == nil {
		rt, err := goruntime.OpenProcess(tg.proc.PID, tg.bin)
		if err != nil {
			tg.bin.Limits = append(tg.bin.Limits, fmt.Sprintf("no gc events, goroutine scan or no_deadline: %v", err))
		}
		st.rt = rt
	}
	if st.rt != nil {
		if s, err := st.rt.GCStats(); err != nil {
			tg.bin.Limits = append(tg.bin.Limits, fmt.Sprintf("no gc events: %v", err))
		} else {
			st.gcOK, st.gcLast, st.gcSent, st.gcAt = true, s, s, time.Now()
		}
		if err := st.rt.CanReadGoroutines(); err != nil {
			tg.bin.Limits = append(tg.bin.Limits, fmt.Sprintf("no goroutine scan (goroutines, goroutine_leak): %v", err))
		} else {
			st.scanOK = true
		}
		if o := tg.bin.Offsets; o.PdFd == 0 || o.PdRg == 0 || o.PdRd == 0 || o.GTrackingSeq == 0 || !st.scanOK {
			tg.bin.Limits = append(tg.bin.Limits, fmt.Sprintf("no no_deadline: the layout of runtime.pollDesc or runtime.g of %s is not known", tg.bin.GoVersion))
		} else {
			st.pollOK = true
		}
	}
	h.mu.Lock()
	h.byPID[tg.proc.PID] = st
	h.mu.Unlock()
	return nil
}

func (h *health) detach(tg *target) {
	h.mu.Lock()
	delete(h.byPID, tg.proc.PID)
	h.mu.Unlock()
}

func (h *health) states() []*healthState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.SortedFunc(maps.Values(h.byPID), func(a, b *healthState) int { return cmp.Compare(a.tg.proc.PID, b.tg.proc.PID) })
}

// tickGC reads each target's GC records and gathers the cycles that
// ended since the last read (so the runtime's ring of 256 pauses need
// only outlast one read). A gc event goes out when there are some and the
// previous event is at least gcEvery old, or there was none: at once for
// rare cycles, one each; for frequent ones every gcEvery; and, with end,
// whatever was gathered.
func (h *health) tickGC(sink Sink, end bool) error {
	for _, st := range h.states() {
		if !st.gcOK {
			continue
		}
		s, err := st.rt.GCStats()
		if err != nil {
			continue // it exited; the exit is reaped elsewhere
		}
		if d := gcEvent(st.tg, st.gcLast, s, 0); d != nil {
			if p := st.gcPending; p != nil {
				d.PausesNs = append(p.PausesNs, d.PausesNs...)
				d.Cycles += p.Cycles
				d.PausesMissed += p.PausesMissed
			}
			st.gcPending = d
		}
		st.gcLast = s
		since := time.Since(st.gcAt)
		if st.gcPending == nil || (!end && since < h.gcEvery && st.gcSentAny) {
			continue
		}
		ev := st.gcPending
		ev.Header = controlHeader("gc", st.tg)
		// The heap as of this read (no cycle ended since the last one
		// gathered).
		ev.HeapLive, ev.HeapGoal, ev.TotalAlloc, ev.GOGC, ev.MemoryLimit = s.HeapLive, s.HeapGoal, s.TotalAlloc, s.GOGC, s.MemoryLimit
		if s.HasCycleHeap {
			ev.HeapBefore, ev.HeapAfter, ev.HasCycleHeap = s.Heap0, s.Heap2, true
		}
		ev.IntervalNs = uint64(since.Nanoseconds())
		ev.AllocBytesPerSec = allocRate(st.gcSent, s, since)
		st.gcPending, st.gcSent, st.gcAt, st.gcSentAny = nil, s, time.Now(), true
		if err := sink.Write(ev); err != nil {
			return err
		}
	}
	return nil
}

// gcEvent is the gc event for the cycles between two reads, nil if none
// ended in between.
func gcEvent(tg *target, prev, cur *goruntime.GCStats, since time.Duration) *event.GC {
	n := cur.NumGC - prev.NumGC
	if n == 0 {
		return nil
	}
	ev := &event.GC{Header: controlHeader("gc", tg), NumGC: cur.NumGC, NumForcedGC: cur.NumForcedGC,
		PauseTotalNs: cur.PauseTotalNs, Cycles: n, HeapBefore: cur.Heap0, HeapAfter: cur.Heap2, HasCycleHeap: cur.HasCycleHeap,
		HeapLive: cur.HeapLive, HeapGoal: cur.HeapGoal, GOGC: cur.GOGC, MemoryLimit: cur.MemoryLimit,
		TotalAlloc: cur.TotalAlloc, IntervalNs: uint64(since.Nanoseconds())}
	// cur.Pauses are newest first; the event lists them oldest first.
	in := min(int(n), len(cur.Pauses))
	for i := in - 1; i >= 0; i-- {
		ev.PausesNs = append(ev.PausesNs, cur.Pauses[i].Ns)
	}
	ev.PausesMissed = n - uint32(in)
	ev.AllocBytesPerSec = allocRate(prev, cur, since)
	return ev
}

// allocRate is the bytes allocated per second between two reads since
// apart; 0 without a previous read or an interval.
func allocRate(prev, cur *goruntime.GCStats, since time.Duration) float64 {
	if prev == nil || cur.TotalAlloc < prev.TotalAlloc || prev.TotalAlloc == 0 || since <= 0 {
		return 0
	}
	return math.Round(float64(cur.TotalAlloc-prev.TotalAlloc) / since.Seconds())
}

// readFDs reads a process's open fds, limit and TCP sockets by state.
func readFDs(pid int, states bool) (*event.FDs, error) {
	n, err := proc.OpenFDs(pid)
	if err != nil {
		return nil, err
	}
	lim, err := proc.FDLimit(pid)
	if err != nil {
		return nil, err
	}
	f := &event.FDs{Open: n, Limit: lim}
	if lim == math.MaxUint64 {
		f.Limit = 0
	}
	if states {
		if f.TCPStates, err = proc.TCPStates(pid); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// tickFDs writes fd_pressure for a target whose open fds went over 85% of
// its RLIMIT_NOFILE since the last tick: once per crossing.
func (h *health) tickFDs(sink Sink) error {
	for _, st := range h.states() {
		f, err := readFDs(st.tg.proc.PID, false)
		if err != nil || f.Limit == 0 {
			continue
		}
		ratio := float64(f.Open) / float64(f.Limit)
		over := ratio >= fdPressureAt
		if over && !st.fdOver {
			// The sockets by state, for the reading that crossed.
			f.TCPStates, _ = proc.TCPStates(st.tg.proc.PID)
			ev := &event.FDPressure{Header: controlHeader("fd_pressure", st.tg), FDs: *f,
				Ratio: float64(f.Open) / float64(f.Limit), Threshold: fdPressureAt}
			if err := sink.Write(ev); err != nil {
				return err
			}
		}
		st.fdOver = over
	}
	return nil
}

// site is one creation site in a scan.
type scanSite struct {
	key    goroutines.Site
	live   int64
	oldest []goruntime.G // by goid, up to 5
}

// tickScan writes the goroutines event, and goroutine_leak per site its
// detector finds growing, of each target whose GoroutineInterval has
// passed, from a scan of its goroutine list.
func (h *health) tickScan(sink Sink) error {
	now := time.Now()
	for _, st := range h.states() {
		if !st.scanOK || now.Sub(st.lastScan) < h.scanEvery {
			continue
		}
		st.lastScan = now
		if err := h.scan(sink, st); err != nil {
			return err
		}
	}
	return nil
}

// scanAll scans every target now.
func (h *health) scanAll(sink Sink) error {
	for _, st := range h.states() {
		if st.scanOK {
			st.lastScan = time.Now()
			if err := h.scan(sink, st); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *health) scan(sink Sink, st *healthState) error {
	tg, rt := st.tg, st.rt
	start := time.Now()
	gs, err := rt.Goroutines()
	if err != nil {
		return nil
	}
	ev := &event.Goroutines{Header: controlHeader("goroutines", tg), ScanNs: uint64(time.Since(start).Nanoseconds())}
	sites := map[goroutines.Site]*scanSite{}
	seen := make(map[uint64]time.Time, len(gs))
	for _, g := range gs {
		name := st.nameOf(g)
		if name.system {
			ev.System++
			continue
		}
		ev.Live++
		if t, ok := st.firstSeen[g.Goid]; ok {
			seen[g.Goid] = t
		} else {
			seen[g.Goid] = start
		}
		k := goroutines.Site{StartPC: g.StartPC, GoPC: g.GoPC}
		s := sites[k]
		if s == nil {
			s = &scanSite{key: k}
			sites[k] = s
		}
		s.live++
		s.oldest = keepOldest(s.oldest, g, 5)
	}
	st.firstSeen = seen
	var counts map[goroutines.Site]goroutines.Count
	if h.lifecycle != nil {
		if counts, err = h.lifecycle.Sites(tg.proc.PID); err == nil {
			ev.Untracked = h.lifecycle.Untracked()
		}
	}
	live := map[goroutines.Site]int64{}
	for k, s := range sites {
		live[k] = s.live
	}
	all := maps.Clone(live)
	for k := range counts {
		if _, ok := all[k]; !ok {
			all[k] = 0 // all exited: only the uprobes know it
		}
	}
	for k, n := range all {
		gs := st.siteOf(k, n, counts)
		ev.Sites = append(ev.Sites, gs)
	}
	slices.SortFunc(ev.Sites, func(a, b event.GoroutineSite) int {
		if a.Live != b.Live {
			return cmp.Compare(b.Live, a.Live)
		}
		if a.Created != b.Created {
			return cmp.Compare(b.Created, a.Created)
		}
		return cmp.Compare(a.Site+a.CreatedAt, b.Site+b.CreatedAt)
	})
	ev.Sites = ev.Sites[:min(len(ev.Sites), h.top)]
	if err := sink.Write(ev); err != nil {
		return err
	}
	leaks := st.detector.Observe(live)
	slices.SortFunc(leaks, func(a, b goroutines.Leak) int { return cmp.Compare(b.Live, a.Live) })
	for _, l := range leaks {
		s := sites[l.Site]
		// Goroutines of a leak outlive the window it grew in; those of
		// a busy but healthy site come and go within it.
		window := time.Duration(st.detector.Intervals) * h.scanEvery
		if s == nil || len(s.oldest) == 0 || start.Sub(seen[s.oldest[0].Goid]) < window {
			continue
		}
		leak := &event.GoroutineLeak{
			Header:        controlHeader("goroutine_leak", tg),
			GoroutineSite: st.siteOf(l.Site, l.Live, counts),
			Growth:        l.Growth,
			IntervalNs:    uint64(h.scanEvery),
			OldestAgeNs:   uint64(start.Sub(seen[s.oldest[0].Goid]).Nanoseconds()),
		}
		for _, g := range s.oldest {
			leak.OldestGoids = append(leak.OldestGoids, g.Goid)
			leak.ParkedOn = append(leak.ParkedOn, g.WaitReason)
		}
		if d, err := rt.Dumped(s.oldest[0]); err == nil && len(d.Stack) > 0 {
			leak.Header.Goid, leak.Header.HasGoid = d.Goid, true
			leak.Header.Stack = &event.Stack{Frames: d.Stack}
		}
		if err := sink.Write(leak); err != nil {
			return err
		}
	}
	return nil
}

// keepOldest adds g to the oldest goroutines of a site (the lowest goids:
// the runtime hands them out in increasing order), keeping n.
func keepOldest(old []goruntime.G, g goruntime.G, n int) []goruntime.G {
	if len(old) == n && g.Goid >= old[n-1].Goid {
		return old
	}
	i, _ := slices.BinarySearchFunc(old, g.Goid, func(a goruntime.G, id uint64) int { return cmp.Compare(a.Goid, id) })
	old = slices.Insert(old, i, g)
	return old[:min(len(old), n)]
}

// nameOf names the goroutines started at g's startpc: the function, or
// for the wrapper the compiler makes of `go f(x)`, f (read from the stack
// of one of them, once per startpc).
func (st *healthState) nameOf(g goruntime.G) siteName {
	if n, ok := st.names[g.StartPC]; ok && n.resolved {
		return n
	}
	n := siteName{fn: fmt.Sprintf("%#x", g.StartPC)}
	fn, wrapper, ok := st.rt.StartFunc(g.StartPC)
	if ok {
		n.fn = fn
	}
	n.system = goruntime.IsSystem(n.fn)
	n.resolved = true
	if !n.system && wrapper {
		n.resolved = false
		if d, err := st.rt.Dumped(g); err == nil && d.Incomplete == "" && d.Func != n.fn {
			n.fn, n.resolved = d.Func, true
		}
	}
	st.names[g.StartPC] = n
	return n
}

// siteOf names a creation site: the function its goroutines run, and the
// go statement at gopc (a return address: the call is the byte before),
// innermost inlined frame first; with the lifecycle counts when known.
func (st *healthState) siteOf(k goroutines.Site, live int64, counts map[goroutines.Site]goroutines.Count) event.GoroutineSite {
	gs := event.GoroutineSite{Site: fmt.Sprintf("%#x", k.StartPC), CreatedAt: fmt.Sprintf("%#x", k.GoPC), Live: live}
	if n, ok := st.names[k.StartPC]; ok {
		gs.Site = n.fn
	} else if fs := st.rt.Syms.Frames(k.StartPC, true); len(fs) > 0 {
		gs.Site = fs[len(fs)-1].Func
	}
	if fs := st.rt.Syms.Frames(k.GoPC, false); len(fs) > 0 {
		gs.CreatedAt = fmt.Sprintf("%s:%d", fs[0].File, fs[0].Line)
		gs.CreatedBy = fs[0].Func
	}
	if counts != nil {
		c := counts[k]
		gs.Created, gs.Exited, gs.Lifecycle = c.Created, c.Exited, true
	}
	return gs
}

// tickNoDeadline writes no_deadline for each goroutine parked on a socket
// read or write, with no deadline for it, for longer than NoDeadlineAfter:
// once per goroutine, fd and mode.
func (h *health) tickNoDeadline(sink Sink) error {
	for _, st := range h.states() {
		if !st.pollOK {
			continue
		}
		if err := h.checkDeadlines(sink, st); err != nil {
			return err
		}
	}
	return nil
}

func (h *health) checkDeadlines(sink Sink, st *healthState) error {
	pds, err := st.rt.PollDescs()
	if err != nil {
		return nil
	}
	// The goroutines parked on an fd with no deadline for that
	// direction, read in one batch.
	type wait struct {
		fd   int32
		g    uint64
		mode string
	}
	var waits []wait
	var addrs []uint64
	for _, pd := range pds {
		if pd.Rg != 0 && pd.Rd == 0 {
			waits, addrs = append(waits, wait{pd.FD, pd.Rg, "read"}), append(addrs, pd.Rg)
		}
		if pd.Wg != 0 && pd.Wd == 0 {
			waits, addrs = append(waits, wait{pd.FD, pd.Wg, "write"}), append(addrs, pd.Wg)
		}
	}
	gs, read, err := st.rt.GoroutinesAt(addrs)
	if err != nil {
		return nil
	}
	now := time.Now()
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	mono := ts.Nano()
	parked := map[parkKey]time.Time{}
	var socks map[int32]proc.TCPSocket
	for i, w := range waits {
		g := gs[i]
		if !read[i] || g.Status != goruntime.StatusWaiting {
			continue
		}
		k := parkKey{g: w.g, goid: g.Goid, fd: w.fd, mode: w.mode, seq: g.TrackingSeq}
		first, ok := st.parked[k]
		if !ok {
			first = now
		}
		parked[k] = first
		if st.told[k] {
			continue
		}
		for_ := now.Sub(first)
		if g.WaitSince > 0 && mono > g.WaitSince {
			for_ = max(for_, time.Duration(mono-g.WaitSince))
		}
		if for_ < h.noDeadlineAfter {
			continue
		}
		st.told[k] = true // judged once, reported or not
		if socks == nil {
			socks = map[int32]proc.TCPSocket{}
			if ss, err := proc.TCPSockets(st.tg.proc.PID); err == nil {
				for _, s := range ss {
					socks[s.FD] = s
				}
			}
		}
		// Only TCP connections: an accept loop waits on its listener
		// forever by design, and so does a UDP server's read loop.
		s, ok := socks[w.fd]
		if !ok || s.State == "LISTEN" {
			continue
		}
		ev := &event.NoDeadline{Header: controlHeader("no_deadline", st.tg), FD: w.fd, Mode: w.mode,
			ParkedNs: uint64(for_.Nanoseconds()), Status: g.Describe(),
			Addrs: event.Addrs{Local: s.Local, LocalPort: s.LocalPort, Remote: s.Remote, RemotePort: s.RemotePort}}
		ev.Header.Goid, ev.Header.HasGoid = g.Goid, true
		if d, err := st.rt.Dumped(g); err == nil {
			if len(d.Stack) > 0 {
				ev.Header.Stack = &event.Stack{Frames: d.Stack}
			}
			ev.Func, ev.CreatedBy = d.Func, d.CreatedBy.Func
			if d.CreatedBy.File != "" {
				ev.CreatedAt = fmt.Sprintf("%s:%d", d.CreatedBy.File, d.CreatedBy.Line)
			}
		}
		if err := sink.Write(ev); err != nil {
			return err
		}
	}
	// Forget parks that ended; one told about stays told while it lasts.
	for k := range st.told {
		if _, ok := parked[k]; !ok {
			delete(st.told, k)
		}
	}
	st.parked = parked
	return nil
}
