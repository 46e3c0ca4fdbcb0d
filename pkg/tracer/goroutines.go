package tracer

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goroutines"
	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
)

// goroutineTracking is pkg/goroutines as a feature (--goroutines): the
// lifecycle uprobes in each target, and every GoroutineInterval a
// goroutines event per target and a goroutine_leak event per creation
// site that keeps growing.
type goroutineTracking struct {
	gr *goroutines.Objects
	// interval is Options.GoroutineInterval, top Options.GoroutineTop.
	interval time.Duration
	top      int
	// mu guards byPID: attach and detach run under t.mu, the tick on
	// Run's goroutine.
	mu    sync.Mutex
	byPID map[int]*goroutineState
}

// goroutineState is one target's goroutine tracking. Only the tick uses
// its fields.
type goroutineState struct {
	tg       *target
	detector *goroutines.Detector
	last     time.Time
}

func (t *Tracer) goroutineTracking(gr *goroutines.Objects) feature {
	g := &goroutineTracking{gr: gr, interval: t.opts.GoroutineInterval, top: t.opts.GoroutineTop, byPID: map[int]*goroutineState{}}
	return feature{
		hooks: map[string]string{"goroutines": "uprobe"},
		// Counts are due every GoroutineInterval per target (since its
		// attach), which can be shorter than the poll's: check five
		// times an interval.
		samplers: []sampler{{every: max(t.opts.GoroutineInterval/5, 10*time.Millisecond), run: g.tick}},
		attach:   g.attach,
		detach:   g.detach,
		close:    gr.Close,
	}
}

// attach places the lifecycle uprobes in a target; on failure the target
// is traced without them and its attached event says why.
func (g *goroutineTracking) attach(tg *target) error {
	if tg.rt == nil {
		return nil // install noted why there are no symbols
	}
	if err := g.gr.Attach(tg.rt); err != nil {
		tg.bin.Limits = append(tg.bin.Limits, fmt.Sprintf("no goroutine tracking: %v", err))
		return nil
	}
	g.mu.Lock()
	g.byPID[tg.proc.PID] = &goroutineState{tg: tg, detector: goroutines.NewDetector(), last: time.Now()}
	g.mu.Unlock()
	return nil
}

func (g *goroutineTracking) detach(tg *target) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.byPID[tg.proc.PID]; ok {
		g.gr.Detach(tg.proc.PID)
		delete(g.byPID, tg.proc.PID)
	}
}

// tick writes the goroutines and goroutine_leak events of the targets
// whose GoroutineInterval has passed.
func (g *goroutineTracking) tick(sink Sink) error {
	// The map reads below can take a while on a big process: attach and
	// detach must not wait for them.
	g.mu.Lock()
	states := slices.Collect(maps.Values(g.byPID))
	g.mu.Unlock()
	now := time.Now()
	for _, st := range states {
		if now.Sub(st.last) < g.interval {
			continue
		}
		st.last = now
		if err := g.report(sink, st); err != nil {
			return err
		}
	}
	return nil
}

// report writes st's target's goroutines event, and a goroutine_leak
// event per site its detector finds growing.
func (g *goroutineTracking) report(sink Sink, st *goroutineState) error {
	tg := st.tg
	counts, err := g.gr.Sites(tg.proc.PID)
	if err != nil {
		return nil
	}
	ev := &event.Goroutines{Header: controlHeader("goroutines", tg), Untracked: g.gr.Untracked()}
	live := map[goroutines.Site]int64{}
	for s, c := range counts {
		live[s] = c.Live()
		ev.Live += c.Live()
		ev.Sites = append(ev.Sites, siteOf(tg.rt.Syms, s, c))
	}
	slices.SortFunc(ev.Sites, func(a, b event.GoroutineSite) int {
		if a.Live != b.Live {
			return int(b.Live - a.Live)
		}
		return int(b.Created - a.Created)
	})
	ev.Sites = ev.Sites[:min(len(ev.Sites), g.top)]
	if err := sink.Write(ev); err != nil {
		return err
	}
	for _, l := range st.detector.Observe(live) {
		// Goroutines of a leak outlive the window it grew in; those of
		// a busy but healthy site come and go within it.
		oldest, _ := g.gr.Oldest(tg.proc.PID, l.Site, 5)
		window := time.Duration(st.detector.Intervals) * g.interval
		if len(oldest) == 0 || time.Duration(bpfobj.Now()-oldest[0].CreateNs) < window {
			continue
		}
		leak := &event.GoroutineLeak{
			Header:        controlHeader("goroutine_leak", tg),
			GoroutineSite: siteOf(tg.rt.Syms, l.Site, counts[l.Site]),
			Growth:        l.Growth,
			IntervalNs:    uint64(g.interval),
		}
		for _, o := range oldest {
			leak.OldestGoids = append(leak.OldestGoids, o.Goid)
			leak.ParkedOn = append(leak.ParkedOn, parkedOn(tg, o.G))
		}
		leak.OldestAgeNs = bpfobj.Now() - oldest[0].CreateNs
		if err := sink.Write(leak); err != nil {
			return err
		}
	}
	return nil
}

// parkedOn is a goroutine's wait reason if it is parked, else "".
func parkedOn(tg *target, g uint64) string {
	gr, err := tg.rt.Goroutine(g)
	if err != nil {
		return ""
	}
	return gr.WaitReason
}

// siteOf names a creation site: the function at startpc, and the go
// statement at gopc (a return address: the call is the byte before),
// innermost inlined frame first.
func siteOf(tab *symtab.Table, s goroutines.Site, c goroutines.Count) event.GoroutineSite {
	gs := event.GoroutineSite{
		Site:      fmt.Sprintf("%#x", s.StartPC),
		CreatedAt: fmt.Sprintf("%#x", s.GoPC),
		Live:      c.Live(),
		Created:   c.Created,
		Exited:    c.Exited,
	}
	if fs := tab.Frames(s.StartPC, true); len(fs) > 0 {
		gs.Site = fs[len(fs)-1].Func
	}
	if fs := tab.Frames(s.GoPC, false); len(fs) > 0 {
		gs.CreatedAt = fmt.Sprintf("%s:%d", fs[0].File, fs[0].Line)
		gs.CreatedBy = fs[0].Func
	}
	return gs
}
