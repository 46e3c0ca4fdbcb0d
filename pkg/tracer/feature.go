package tracer

import (
	"time"

	"github.com/cilium/ebpf"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
)

// A feature is one kind of thing gonetscope reports (netpoll waits, TCP
// connects and accepts, accept queues, goroutine lifecycles), plugged into
// a Tracer. It owns its BPF object and its per-target state, and says what
// the Tracer reads and samples for it; the Tracer owns attach and detach,
// the readers and tickers, and the order in which everything reaches the
// sink. Every field may be left zero.
type feature struct {
	// hooks maps its hook points to the mechanism in use, for the
	// attached event.
	hooks map[string]string
	// streams are its ring buffers, read while Run runs.
	streams []source
	// samplers run on Run's goroutine, each at its own interval.
	samplers []sampler
	// attach starts tracing tg, which is in the kernel filter already;
	// an error refuses the target. t.mu is held.
	attach func(tg *target) error
	// detach stops tracing tg: it is being detached, or it replaced its
	// image by exec (attach follows then, for the new image). It may be
	// called twice for one attach. t.mu is held.
	detach func(tg *target)
	// trace is told true before the first target's attach and false
	// after the last one's detach: hooks that cost the whole host (the
	// syscall tracepoints where fentry does not serve) are attached only
	// while something is traced. t.mu is held.
	trace func(on bool) error
	// seen is shown every event of the streams as Run writes it, in
	// order, before --events and the rate limit choose.
	seen func(event.Event)
	// hists reads its in-kernel histograms and counters for the metrics;
	// entries of PIDs keep refuses are deleted.
	hists func(keep func(pid uint32) bool) ([]bpfobj.Hist, error)
	close func() error
}

// source is a ring buffer a feature fills, and how to decode it.
type source struct {
	name   string
	events *ebpf.Map
	decode func([]byte, bpfobj.Clock) (event.Event, error)
	// lost counts the events the BPF side could not submit, by event name.
	lost func() (map[string]uint64, error)
}

// sampler is work Run does every interval, writing to its sink.
type sampler struct {
	every time.Duration
	// atEnd: it runs once more when Run's context ends, before the
	// remaining targets are detached.
	atEnd bool
	run   func(Sink) error
	// end, if set, is what runs at the end instead of run.
	end func(Sink) error
}

// eventObject is a BPF object that hooks every target alike, with nothing
// to do per target: one ring buffer of events, and histograms. netpoll
// (whose targets map is the kernel filter the Tracer itself fills) and
// tcp are.
type eventObject interface {
	Hooks() map[string]string
	Events() *ebpf.Map
	Lost() (map[string]uint64, error)
	Hists(keep func(pid uint32) bool) ([]bpfobj.Hist, error)
	Close() error
}

// eventStream is o as a feature whose stream name is name, decoded by
// decode.
func eventStream(name string, o eventObject, decode func([]byte, bpfobj.Clock) (event.Event, error)) feature {
	f := feature{
		hooks:   o.Hooks(),
		streams: []source{{name, o.Events(), decode, o.Lost}},
		hists:   o.Hists,
		close:   o.Close,
	}
	if tr, ok := o.(interface{ Trace(bool) error }); ok {
		f.trace = tr.Trace
	}
	return f
}
