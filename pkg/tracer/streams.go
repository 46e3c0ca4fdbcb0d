package tracer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/gonetscope/gonetscope/pkg/event"
)

// stream is a feature's ring buffer, open for reading.
type stream struct {
	source
	reader *ringbuf.Reader
	// reported are the lost counts already sent in lost events.
	reported map[string]uint64
}

// item is an event, or a reader's mark that it has read everything that
// was in its ring buffer when Flush was called.
type item struct {
	ev      event.Event
	flushed bool
}

// openStreams opens a reader on every feature's ring buffers.
func (t *Tracer) openStreams() error {
	for _, f := range t.features {
		for _, src := range f.streams {
			rd, err := ringbuf.NewReader(src.events)
			if err != nil {
				return fmt.Errorf("opening ring buffer %s: %w", src.name, err)
			}
			t.streams = append(t.streams, &stream{source: src, reader: rd, reported: map[string]uint64{}})
		}
	}
	return nil
}

// startReaders starts a reader per stream; stop ends them, waking any
// blocked in ReadInto, and waits for them.
func (t *Tracer) startReaders() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range t.streams {
		wg.Go(func() { t.read(ctx, s) })
	}
	return func() {
		cancel()
		t.flush()
		wg.Wait()
	}
}

// flush asks every reader to hand over what is in its ring buffer now and
// returns how many flush marks to wait for.
func (t *Tracer) flush() int {
	n := 0
	for _, s := range t.streams {
		if s.reader.Flush() == nil {
			n++
		}
	}
	return n
}

// read moves records from one ring buffer to the queue. A full queue drops
// the event and counts it: the kernel side never waits for the sink.
//
// The BPF side wakes the reader at most once per DrainInterval and submits
// the records in between without a wake-up. So after reading a record the
// reader drains again one interval later, and again while drains find
// records; once one finds none, every record submitted since the last
// wake-up has been read, and it blocks until the next wake-up.
func (t *Tracer) read(ctx context.Context, s *stream) {
	var rec ringbuf.Record
	armed, got := false, false
	for ctx.Err() == nil {
		err := s.reader.ReadInto(&rec)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Everything that was in the ring buffer has been read.
			if got {
				s.reader.SetDeadline(time.Now().Add(t.opts.DrainInterval))
			} else {
				s.reader.SetDeadline(time.Time{})
				armed = false
			}
			got = false
			continue
		case errors.Is(err, ringbuf.ErrFlushed):
			select {
			case t.queue <- item{flushed: true}:
			case <-ctx.Done():
			}
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			return
		case err != nil:
			continue
		}
		got = true
		if !armed {
			s.reader.SetDeadline(time.Now().Add(t.opts.DrainInterval))
			armed = true
		}
		ev, err := s.decode(rec.RawSample, t.clock)
		if err != nil {
			t.countQueueLost("undecodable")
			continue
		}
		h := ev.Head()
		t.setNsPID(h)
		if h.Stack != nil {
			t.symbolize(h)
		}
		select {
		case t.queue <- item{ev: ev}:
		default:
			t.countQueueLost(h.Event)
		}
	}
}

func (t *Tracer) countQueueLost(name string) {
	t.queueLostMu.Lock()
	t.queueLost[name]++
	t.queueLostTotal[name]++
	t.queueLostMu.Unlock()
}

// reportLost writes a lost event per stream and event type whose count grew.
func (t *Tracer) reportLost(sink Sink) error {
	for _, s := range t.streams {
		counts, err := s.lost()
		if err != nil {
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(counts)) {
			if n := counts[name]; n > s.reported[name] {
				if err := sink.Write(lostEvent(s.name, name, n-s.reported[name])); err != nil {
					return err
				}
				s.reported[name] = n
			}
		}
	}
	t.queueLostMu.Lock()
	queued := t.queueLost
	t.queueLost = map[string]uint64{}
	t.queueLostMu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(queued)) {
		if err := sink.Write(lostEvent("queue", name, queued[name])); err != nil {
			return err
		}
	}
	return nil
}

func lostEvent(stream, lostEvent string, n uint64) *event.Lost {
	return &event.Lost{Header: event.Header{Time: time.Now(), Event: "lost"}, Count: n, Stream: stream, LostEvent: lostEvent}
}
