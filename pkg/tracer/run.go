package tracer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gonetscope/gonetscope/pkg/event"
)

// ErrNoTargets is returned by Run when the last target has exited.
var ErrNoTargets = errors.New("no traced process left")

// RunOptions say when Run stops besides its context.
type RunOptions struct {
	// ExitWhenNoTargets ends Run once every target has gone.
	ExitWhenNoTargets bool
	// Reason is the detach reason written when the context ends.
	Reason func() string
}

func (ro RunOptions) reason() string {
	if ro.Reason != nil {
		return ro.Reason()
	}
	return event.ReasonSignal
}

// Run streams events to sink until ctx ends (or, with ExitWhenNoTargets,
// the last target exits). On the way out it writes what the kernel had
// already produced, then a detached event per remaining target.
func (t *Tracer) Run(ctx context.Context, sink Sink, ro RunOptions) error {
	sink = limitSink{Sink: sink, t: t}
	stopReaders := t.startReaders()
	defer stopReaders()
	due, stopSamplers := startSamplers(t.samplers)
	defer stopSamplers()
	var ord ordering
	// finishDue: the context ended, and the way out (the last samples,
	// the detaches) starts once the attached events held for ordering
	// are written, so that no target's last samples come before its
	// attached event (a run of a few ms); finishing: it has started.
	end, finishDue, finishing := ctx.Done(), false, false
	for {
		select {
		case <-end:
			end, finishDue = nil, true
		case <-t.wake:
		case pid := <-t.exited:
			t.reapExited(pid)
		case s := <-due:
			if err := s.run(sink); err != nil {
				return fmt.Errorf("writing event: %w", err)
			}
		case it := <-t.queue:
			if err := t.take(sink, &ord, it); err != nil {
				return err
			}
			if len(t.queue) > 0 {
				continue // flush the sink once the burst is written
			}
		}
		remaining, err := t.writeControl(sink, &ord)
		if err != nil {
			return err
		}
		if finishDue && ord.done() {
			finishDue, finishing = false, true
			if err := t.finish(sink, ro.reason()); err != nil {
				return err
			}
			if remaining, err = t.writeControl(sink, &ord); err != nil {
				return err
			}
		}
		if err := sink.Flush(); err != nil {
			return fmt.Errorf("writing events: %w", err)
		}
		idle := ord.done() && len(t.queue) == 0
		if idle && (finishing || (ro.ExitWhenNoTargets && remaining == 0)) {
			return t.stop(sink, finishing)
		}
	}
}

// startSamplers hands each sampler to Run, on the returned channel, every
// interval until stop is called.
func startSamplers(ss []sampler) (due <-chan *sampler, stop func()) {
	ch, done := make(chan *sampler), make(chan struct{})
	for i := range ss {
		s := &ss[i]
		go func() {
			tick := time.NewTicker(s.every)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					select {
					case ch <- s:
					case <-done:
						return
					}
				case <-done:
					return
				}
			}
		}()
	}
	return ch, func() { close(done) }
}

// take writes an event from the queue, or counts down a reader's flush
// mark. The features see every event, written or not.
func (t *Tracer) take(sink Sink, ord *ordering, it item) error {
	if it.flushed {
		ord.flushing--
		return nil
	}
	for _, f := range t.features {
		if f.seen != nil {
			f.seen(it.ev)
		}
	}
	if err := sink.Write(it.ev); err != nil {
		return fmt.Errorf("writing event: %w", err)
	}
	return nil
}

// ordering is how Run writes attached and detached events after the
// events the kernel produced before them: it holds them, has every reader
// hand over what is in its ring buffer, and writes them once all have.
type ordering struct {
	held     []event.Event // control events waiting for a flush
	flushing int           // readers yet to hand over their ring buffer
	flushed  bool          // the flush for held has been started
}

func (o *ordering) done() bool { return o.flushing == 0 && len(o.held) == 0 }

// writeControl takes the attached and detached events queued since the
// last call and writes those whose flush is complete. It returns how many
// targets remain.
func (t *Tracer) writeControl(sink Sink, ord *ordering) (remaining int, err error) {
	t.mu.Lock()
	ord.held = append(ord.held, t.control...)
	t.control = t.control[:0]
	remaining = len(t.targets)
	t.mu.Unlock()
	if len(ord.held) == 0 || ord.flushing > 0 {
		return remaining, nil
	}
	if !ord.flushed {
		ord.flushing, ord.flushed = t.flush(), true
		if ord.flushing > 0 {
			return remaining, nil
		}
	}
	for _, ev := range ord.held {
		if err := t.writeControlEvent(sink, ev); err != nil {
			return remaining, fmt.Errorf("writing event: %w", err)
		}
	}
	ord.held, ord.flushed = ord.held[:0], false
	return remaining, nil
}

// writeControlEvent writes an attached or detached event. A detached one
// comes after its target's last summary (what it suppressed since the
// previous one is not lost), and then what was kept for its late events
// goes.
func (t *Tracer) writeControlEvent(sink Sink, ev event.Event) error {
	d, detached := ev.(*event.Detached)
	if detached && t.opts.SummaryInterval > 0 {
		if err := t.writeLastSummary(sink, d); err != nil {
			return err
		}
	}
	if err := sink.Write(ev); err != nil {
		return err
	}
	if detached {
		t.forgetSymbols(int(d.PID))
		delete(t.perPID, d.PID)
	} else if h := ev.Head(); h.Event == "attached" && t.perPID[h.PID] == nil {
		// The first summary's interval starts here, whether or not an
		// event of the target comes before it.
		t.perTarget(h.PID).since = h.Time
	}
	return nil
}

// finish starts the way out when Run's context ends: the samplers that
// want a last sample take it while the targets are still attached, then
// every target is detached.
func (t *Tracer) finish(sink Sink, reason string) error {
	for _, s := range t.samplers {
		if s.atEnd {
			run := s.run
			if s.end != nil {
				run = s.end
			}
			if err := run(sink); err != nil {
				return fmt.Errorf("writing event: %w", err)
			}
		}
	}
	t.detachAll(reason)
	return nil
}

// stop writes the last lost counts and ends Run: nil when its context
// ended, ErrNoTargets when the last target went.
func (t *Tracer) stop(sink Sink, finishing bool) error {
	if err := t.reportLost(sink); err != nil {
		return fmt.Errorf("writing event: %w", err)
	}
	if err := sink.Flush(); err != nil {
		return fmt.Errorf("writing events: %w", err)
	}
	if finishing {
		return nil
	}
	return ErrNoTargets
}
