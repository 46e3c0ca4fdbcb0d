// Package tracer ties gonetscope together: it loads the BPF objects once,
// attaches and detaches target processes by PID, and turns what the kernel
// side reports into one ordered stream of events for a Sink.
//
// What is traced comes in features (feature.go): netpoll waits, TCP
// connects and accepts, accept queues, goroutine lifecycles. Each brings
// ring buffers to read, samplers to run, and what to do per target on
// attach and detach. Attach, Detach and Run know none of them by name;
// New plugs them in.
//
//	feature ring buffers ─ a reader each ─ bounded queue ─┐
//	feature samplers, lost counts, summaries ─────────────┼─ Run ─ Sink (JSON)
//	attach, detach (after the events before them) ────────┘
package tracer

import (
	"cmp"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/acceptq"
	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/contention"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/execwatch"
	"github.com/gonetscope/gonetscope/pkg/goroutines"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
	"github.com/gonetscope/gonetscope/pkg/netpoll"
	"github.com/gonetscope/gonetscope/pkg/proc"
	"github.com/gonetscope/gonetscope/pkg/requests"
	"github.com/gonetscope/gonetscope/pkg/tcp"
)

// Sink receives the event stream. Run calls it from one goroutine.
type Sink interface {
	Write(event.Event) error
	// Flush is called when the queue runs empty.
	Flush() error
}

// Tracer is the loaded BPF side plus the set of traced processes.
type Tracer struct {
	opts  Options
	clock bpfobj.Clock
	// netpoll's targets map is the kernel filter every object shares:
	// a PID is traced while it is in there.
	netpoll *netpoll.Objects
	// execs notices a target replacing its image by exec.
	execs *execwatch.Objects
	// acceptq lists the listeners for the metrics.
	acceptq *acceptq.Objects
	// requests are the net/http probes (--requests), or nil.
	requests *requests.Objects
	// features, in the order they attach to a target.
	features []feature
	// calls hooks each target's accept4, connect and getsockopt where
	// the kernel has no fentry for them.
	calls    socketCalls
	hooks    map[string]string
	streams  []*stream
	samplers []sampler

	queue chan item
	// send are the event kinds written (Options.Events).
	send map[string]bool
	// perPID is each target's rate limit and summary counts; only Run's
	// goroutine uses it.
	perPID map[uint32]*perTarget
	// queueLost counts events dropped in user space, by event name.
	queueLostMu sync.Mutex
	queueLost   map[string]uint64
	// queueLostTotal counts the same since New, for metrics.
	queueLostTotal map[string]uint64

	mu      sync.Mutex
	targets map[int]*target
	// syms symbolizes stacks by PID. An entry outlives its target until
	// the target's detached event is written: events still in the ring
	// buffers when it exited keep their stacks.
	syms    map[int]*symtab.Table
	control []event.Event // attach/detach events, never dropped
	// nsPIDs maps the PID of each target in a PID namespace of its own to
	// its id there, for the events' ns_pid. Read by the ring buffer readers
	// without t.mu. An entry outlives its target like syms does.
	nsPIDs sync.Map
	wake   chan struct{}
	// exited receives the PIDs of targets whose exit a pidfd reported.
	exited chan int
}

type target struct {
	proc  proc.Process
	ns    proc.Namespaces
	bin   *goruntime.Binary
	exe   string
	since time.Time
	// rt is the live process (symbols, goroutine table); nil if it could
	// not be opened.
	rt *goruntime.Process
	// calls are its uprobes for the socket calls (callsUprobe) and
	// epoll_pwait (socketCalls); syscalls: the syscall tracepoints serve
	// its socket calls.
	calls       []link.Link
	callsUprobe bool
	syscalls    bool
	// exit reports its exit; nil without pidfds.
	exit *exitWatch
}

// New loads and attaches the BPF programs. Nothing is traced until Attach.
func New(opts Options) (*Tracer, error) {
	defer bpfobj.ReleaseKernelTypes() // every object is loaded on return
	opts = opts.withDefaults()
	t := &Tracer{
		opts:           opts,
		clock:          bpfobj.NewClock(),
		hooks:          map[string]string{},
		queue:          make(chan item, opts.QueueLen),
		queueLost:      map[string]uint64{},
		queueLostTotal: map[string]uint64{},
		targets:        map[int]*target{},
		syms:           map[int]*symtab.Table{},
		wake:           make(chan struct{}, 1),
		exited:         make(chan int, 16),
		send:           map[string]bool{},
		perPID:         map[uint32]*perTarget{},
	}
	for _, k := range opts.Events {
		t.send[k] = true
	}
	if err := t.load(); err != nil {
		t.Close()
		return nil, err
	}
	t.samplers = append(t.samplers, t.ownSamplers()...)
	if err := t.openStreams(); err != nil {
		t.Close()
		return nil, err
	}
	// Loading allocated about 30 MB (the kernel's BTF, decoded) to keep
	// a few; give the rest back now rather than when the scavenger gets
	// to it, so that a daemon at rest holds what it uses.
	debug.FreeOSMemory()
	return t, nil
}

// load loads the BPF objects: netpoll first, whose targets map the others
// share, then a feature per object.
func (t *Tracer) load() error {
	opts := t.opts
	// The kernel's BTF is parsed once for every object (bpfobj): begin
	// while netpoll's own spec is parsed, which needs no kernel types.
	go bpfobj.KernelSpec()
	np, err := netpoll.Load(netpoll.Options{RingBufferBytes: opts.RingBufferBytes, Events: opts.Events, IdleWaits: opts.IdleWaits, CostStage: opts.CostStage, WakeupEach: opts.WakeupEach,
		WakeupInterval: opts.DrainInterval, Hooks: opts.Hooks, TrackRequests: opts.Requests})
	if err != nil {
		return err
	}
	t.netpoll = np
	t.plug(eventStream("netpoll", np, netpoll.Decode))
	// tcp, acceptq and execwatch need only netpoll's maps: they load side
	// by side, each mostly its ELF parse, map allocation and the
	// verifier (about 100 of the 400 ms to the last object, one after
	// another). What loaded is plugged, so Close frees it if another
	// failed.
	var (
		tc                  *tcp.Objects
		aq                  *acceptq.Objects
		tcErr, aqErr, exErr error
		wg                  sync.WaitGroup
	)
	wg.Go(func() {
		tc, tcErr = tcp.Load(tcp.Options{Targets: np.Targets(), CallArgs: np.CallArgs(), RingBufferBytes: opts.RingBufferBytes,
			WakeupInterval: opts.DrainInterval, Hooks: opts.Hooks})
	})
	wg.Go(func() {
		aq, aqErr = acceptq.Load(acceptq.Options{Targets: np.Targets(), Parks: np.Parks(), CallArgs: np.CallArgs(), Hooks: opts.Hooks})
	})
	wg.Go(func() { t.execs, exErr = execwatch.Load(np.Targets()) })
	wg.Wait()
	if tc != nil {
		t.plug(eventStream("tcp", tc, tcp.Decode))
	}
	if aq != nil {
		t.acceptq = aq
		t.plug(t.acceptQueues(aq))
	}
	if err := cmp.Or(tcErr, aqErr, exErr); err != nil {
		return err
	}
	if opts.Requests {
		if err := t.loadRequests(); err != nil {
			return err
		}
	}
	if opts.Contention {
		c, err := contention.Load(contention.Options{MinBlock: cmp.Or(opts.MinBlock, 10*time.Millisecond), RingBufferBytes: opts.RingBufferBytes, WakeupInterval: opts.DrainInterval})
		if err != nil {
			return err
		}
		t.plug(t.contentionTracking(c))
	}
	var lifecycle *goroutines.Objects
	if opts.Goroutines {
		if lifecycle, err = goroutines.Load(np.Targets()); err != nil {
			return err
		}
		t.plug(t.goroutineTracking(lifecycle))
	}
	t.plug(t.runtimeHealth(lifecycle))
	// Each object hooks accept4 and connect itself, the same way on one
	// kernel; if any fell back to the syscall tracepoints, the host pays,
	// unless uprobes in the targets serve instead.
	for _, m := range []string{tc.Hooks()[bpfobj.SocketCalls], t.acceptq.CallsMechanism()} {
		if m == bpfobj.HooksTracepoint {
			t.hooks[bpfobj.SocketCalls] = m
		}
	}
	if progs := np.CallUprobes(); progs != nil {
		t.calls.progs = slices.Concat(progs, tc.CallUprobes(), t.acceptq.CallUprobes())
		t.hooks[bpfobj.SocketCalls] = bpfobj.HooksUprobe
	}
	t.calls.epoll = np.EpollUprobes()
	return nil
}

func (t *Tracer) plug(f feature) {
	t.features = append(t.features, f)
	maps.Copy(t.hooks, f.hooks)
	t.samplers = append(t.samplers, f.samplers...)
}

// ownSamplers are the Tracer's own periodic work: lost counts and exits
// the pidfds did not report, execs, and the summaries.
func (t *Tracer) ownSamplers() []sampler {
	ss := []sampler{
		{every: t.opts.PollInterval, run: func(sink Sink) error {
			t.reapExited()
			return t.reportLost(sink)
		}},
		// The kernel took an exec'd target out of the filter, and its
		// new image goes untraced until this runs.
		{every: t.opts.OverflowInterval, run: func(Sink) error {
			t.checkExecs()
			return nil
		}},
	}
	if t.opts.SummaryInterval > 0 {
		ss = append(ss, sampler{every: t.opts.SummaryInterval, run: t.writeSummaries})
	}
	return ss
}

// Hooks maps each hook point to the mechanism in use.
func (t *Tracer) Hooks() map[string]string { return maps.Clone(t.hooks) }

// Close detaches and unloads everything, netpoll's shared maps last.
func (t *Tracer) Close() error {
	for _, s := range t.streams {
		s.reader.Close()
	}
	if t.execs != nil {
		t.execs.Close()
	}
	for _, f := range slices.Backward(t.features) {
		if f.close != nil {
			f.close()
		}
	}
	return nil
}
