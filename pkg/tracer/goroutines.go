package tracer

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goroutines"
	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
)

// goroutineState is a target's goroutine tracking (--goroutines).
type goroutineState struct {
	detector *goroutines.Detector
	last     time.Time
}

// attachGoroutines places the lifecycle uprobes in a target; on failure
// the target is traced without them and its attached event says why.
func (t *Tracer) attachGoroutines(tg *target) {
	if t.gr == nil {
		return
	}
	if tg.rt == nil {
		return // Attach noted why there are no symbols
	}
	if err := t.gr.Attach(tg.rt); err != nil {
		tg.bin.Limits = append(tg.bin.Limits, fmt.Sprintf("no goroutine tracking: %v", err))
		return
	}
	tg.goroutines = &goroutineState{detector: goroutines.NewDetector(), last: time.Now()}
}

// goroutineTick writes, every GoroutineInterval, a goroutines event per
// tracked target and a goroutine_leak event per site that keeps growing.
func (t *Tracer) goroutineTick(sink Sink) error {
	if t.gr == nil {
		return nil
	}
	// The map reads below can take a while on a big process: the readers,
	// which symbolize under t.mu, must not wait for them.
	t.mu.Lock()
	tgs := slices.Collect(maps.Values(t.targets))
	t.mu.Unlock()
	now := time.Now()
	for _, tg := range tgs {
		st := tg.goroutines
		if st == nil || now.Sub(st.last) < t.opts.GoroutineInterval {
			continue
		}
		st.last = now
		counts, err := t.gr.Sites(tg.proc.PID)
		if err != nil {
			continue
		}
		ev := &event.Goroutines{Header: t.controlHeader("goroutines", tg), Untracked: t.gr.Untracked()}
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
		ev.Sites = ev.Sites[:min(len(ev.Sites), t.opts.GoroutineTop)]
		if err := sink.Write(ev); err != nil {
			return err
		}
		for _, l := range st.detector.Observe(live) {
			// Goroutines of a leak outlive the window it grew in; those of
			// a busy but healthy site come and go within it.
			oldest, _ := t.gr.Oldest(tg.proc.PID, l.Site, 5)
			window := time.Duration(st.detector.Intervals) * t.opts.GoroutineInterval
			if len(oldest) == 0 || time.Duration(bpfobj.Now()-oldest[0].CreateNs) < window {
				continue
			}
			leak := &event.GoroutineLeak{
				Header:        t.controlHeader("goroutine_leak", tg),
				GoroutineSite: siteOf(tg.rt.Syms, l.Site, counts[l.Site]),
				Growth:        l.Growth,
				IntervalNs:    uint64(t.opts.GoroutineInterval),
			}
			for _, g := range oldest {
				leak.OldestGoids = append(leak.OldestGoids, g.Goid)
				leak.ParkedOn = append(leak.ParkedOn, parkedOn(tg, g.G))
			}
			leak.OldestAgeNs = bpfobj.Now() - oldest[0].CreateNs
			if err := sink.Write(leak); err != nil {
				return err
			}
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
