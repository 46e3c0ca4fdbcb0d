package tracer

import (
	"fmt"

	"github.com/gonetscope/gonetscope/pkg/acceptq"
)

// acceptQueues is pkg/acceptq as a feature: every OverflowInterval, a
// listen_overflow event per traced listener whose accept queue overflowed
// or dropped, with the stacks of the goroutines that accept on it. The
// package keeps the listeners' state and the acceptors' stacks.
func (t *Tracer) acceptQueues(aq *acceptq.Objects) feature {
	return feature{
		hooks: map[string]string{"listen_overflow": aq.Mechanism()},
		trace: aq.Trace,
		// The last drops are sampled while the listeners still exist.
		samplers: []sampler{{every: t.opts.OverflowInterval, atEnd: true,
			run: func(sink Sink) error { return t.sampleOverflow(aq, sink, false) },
			end: func(sink Sink) error { return t.sampleOverflow(aq, sink, true) },
		}},
		attach: func(tg *target) error {
			if err := aq.Baseline(uint32(tg.proc.PID)); err != nil {
				return fmt.Errorf("reading the listeners of PID %d: %w", tg.proc.PID, err)
			}
			return nil
		},
		detach: func(tg *target) { aq.Forget(uint32(tg.proc.PID)) },
		seen:   aq.NoteAccept,
		close:  aq.Close,
	}
}

// sampleOverflow writes a listen_overflow event for every traced listener
// that has overflows or drops not yet reported; final is the last sample,
// which holds nothing back.
func (t *Tracer) sampleOverflow(aq *acceptq.Objects, sink Sink, final bool) error {
	t.mu.Lock()
	comms := make(map[uint32]string, len(t.targets))
	for pid, tg := range t.targets {
		comms[uint32(pid)] = tg.proc.Comm
	}
	t.mu.Unlock()
	if len(comms) == 0 {
		return nil
	}
	evs, err := aq.Sample(t.clock, comms, final)
	if err != nil {
		// Nothing is lost: the counters are cumulative, and the next
		// sample reports these drops.
		return nil
	}
	for _, ev := range evs {
		t.setNsPID(ev.Head())
		if err := sink.Write(ev); err != nil {
			return err
		}
	}
	return nil
}
