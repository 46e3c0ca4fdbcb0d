package tracer

import (
	"maps"

	"github.com/gonetscope/gonetscope/pkg/acceptq"
	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// What pkg/metrics reads at each scrape (it implements metrics.Source).

// TracedProcesses lists the traced processes.
func (t *Tracer) TracedProcesses() []proc.Process {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps := make([]proc.Process, 0, len(t.targets))
	for _, tg := range t.targets {
		ps = append(ps, tg.proc)
	}
	return ps
}

// Runtime is the reader of pid's runtime opened at attach, or nil.
func (t *Tracer) Runtime(pid int) *goruntime.Process {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tg := t.targets[pid]; tg != nil && tg.rt != nil {
		return tg.rt
	}
	return nil
}

// tracedNow is which PIDs are traced at the call, as a keep function for
// the histogram readers (which delete the entries of the others).
func (t *Tracer) tracedNow() func(uint32) bool {
	t.mu.Lock()
	traced := make(map[uint32]bool, len(t.targets))
	for pid := range t.targets {
		traced[uint32(pid)] = true
	}
	t.mu.Unlock()
	return func(pid uint32) bool { return traced[pid] }
}

// Hists reads the in-kernel histograms and counters of every BPF object.
// Entries of processes no longer traced are deleted from the maps.
func (t *Tracer) Hists() ([]bpfobj.Hist, error) {
	keep := t.tracedNow()
	var hs []bpfobj.Hist
	for _, f := range t.features {
		if f.hists == nil {
			continue
		}
		h, err := f.hists(keep)
		if err != nil {
			return nil, err
		}
		hs = append(hs, h...)
	}
	return hs, nil
}

// LostTotals counts the events lost since New, by stream ("netpoll",
// "tcp": the ring buffer was full; "queue": the user-space queue was
// full) and event name.
func (t *Tracer) LostTotals() map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	for _, s := range t.streams {
		if counts, err := s.lost(); err == nil {
			out[s.name] = counts
		}
	}
	t.queueLostMu.Lock()
	out["queue"] = maps.Clone(t.queueLostTotal)
	t.queueLostMu.Unlock()
	return out
}

// Listeners lists the traced processes' TCP listeners now.
func (t *Tracer) Listeners() ([]acceptq.Listener, error) { return t.acceptq.Listeners() }
