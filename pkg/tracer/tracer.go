// Package tracer ties gonetscope together: it loads the BPF objects once,
// attaches and detaches target processes by PID, and turns what the kernel
// side reports into one ordered stream of events for a Sink.
//
//	ring buffer "netpoll" ─ reader ─┐
//	ring buffer "tcp"     ─ reader ─┼─ bounded queue ─ Run ─ Sink (JSON)
//	attach, detach, lost  ──────────┘   (drops counted)
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

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/gonetscope/gonetscope/pkg/acceptq"
	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/execwatch"
	"github.com/gonetscope/gonetscope/pkg/goroutines"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
	"github.com/gonetscope/gonetscope/pkg/netpoll"
	"github.com/gonetscope/gonetscope/pkg/proc"
	"github.com/gonetscope/gonetscope/pkg/tcp"
)

// Options configure a Tracer.
type Options struct {
	// MinWait is the shortest netpoll_wait / epoll_wait sent to user space;
	// shorter ones are dropped in the kernel. Zero sends all.
	MinWait time.Duration
	// Hooks forces a mechanism family for the kernel-function hooks:
	// "auto" (default), "fentry", "kprobe" or "tracepoint".
	Hooks string
	// RingBufferBytes sizes each BPF ring buffer; zero means 1 MiB.
	RingBufferBytes uint32
	// QueueLen bounds the queue between the ring buffer readers and the
	// sink; events that find it full are dropped and counted. Zero: 8192.
	QueueLen int
	// PollInterval is how often the lost counters are read and, where
	// the kernel has no pidfd, target liveness is checked (otherwise an
	// exit is seen at once, without polling). Zero: 1s. Execs are checked
	// every OverflowInterval.
	PollInterval time.Duration
	// Stacks: netpoll_wait, tcp_connect and tcp_accept carry the
	// goroutine's symbolized user stack.
	Stacks bool
	// Goroutines tracks goroutine creation and exit (uprobes) for the
	// goroutines and goroutine_leak events, every GoroutineInterval
	// (zero: 10s), with the GoroutineTop sites (zero: 10).
	Goroutines        bool
	GoroutineInterval time.Duration
	GoroutineTop      int
	// OverflowInterval is how often the traced listeners' drop counters
	// are sampled for listen_overflow. Zero: 100ms.
	OverflowInterval time.Duration
	// DrainInterval bounds how long an event waits in the kernel: netpoll
	// submits wake the reader at most once per interval (or when a
	// quarter of the ring buffer is waiting), and the reader drains once
	// more an interval after each wake-up. Zero: 50ms.
	DrainInterval time.Duration
	// Events are the event kinds written (see EventKinds); nil:
	// DefaultEvents.
	Events []string
	// SummaryInterval is how often each target's summary event is
	// written. Zero: 10s; negative: never.
	SummaryInterval time.Duration
	// MaxEventsPerSec limits the events written per target (a token
	// bucket holding one second's worth); the excess is counted in the
	// summary. Zero: no limit.
	MaxEventsPerSec int
	// IdleWaits sends idle netpoll waits too (--waits all): a server
	// connection waiting for its client's next request, an accept finding
	// no connection. They count in the histograms either way.
	IdleWaits bool
	// CostStage and WakeupEach are for make bench's cost table only (see
	// netpoll.Options); zero values run everything, batching wake-ups.
	CostStage  netpoll.CostStage
	WakeupEach bool
	// noExitWatch leaves exits to the poll (TestPIDReuse keeps a dead
	// target attached to test the kernel's start-time check).
	noExitWatch bool
}

// Sink receives the event stream. Run calls it from one goroutine.
type Sink interface {
	Write(event.Event) error
	// Flush is called when the queue runs empty.
	Flush() error
}

// Tracer is the loaded BPF side plus the set of traced processes.
type Tracer struct {
	opts    Options
	clock   bpfobj.Clock
	netpoll *netpoll.Objects
	tcp     *tcp.Objects
	gr      *goroutines.Objects // nil without Options.Goroutines
	// execs notices a target replacing its image by exec.
	execs *execwatch.Objects
	// acceptq samples the listeners for listen_overflow and the metrics.
	acceptq *acceptq.Objects
	hooks   map[string]string
	streams []stream

	queue chan item
	// send are the event kinds written (Options.Events).
	send map[string]bool
	// streamsByPID is each target's rate limit and summary counts; only
	// Run's goroutine uses it.
	streamsByPID map[uint32]*perTarget
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
	// rt is the live process (symbols, goroutine table); nil without
	// --stacks or --goroutines.
	rt *goruntime.Process
	// goroutines is its goroutine tracking; nil without --goroutines.
	goroutines *goroutineState
	// exit reports its exit; nil without pidfds.
	exit *exitWatch
}

// stream is one BPF object's ring buffer and how to decode it.
type stream struct {
	name   string
	reader *ringbuf.Reader
	decode func([]byte, bpfobj.Clock) (event.Event, error)
	lost   func() (map[string]uint64, error)
	// reported are the lost counts already sent in lost events.
	reported map[string]uint64
}

// item is an event, or a reader's mark that it has read everything that
// was in its ring buffer when Flush was called.
type item struct {
	ev      event.Event
	flushed bool
}

// New loads and attaches the BPF programs. Nothing is traced until Attach.
func New(opts Options) (*Tracer, error) {
	defer bpfobj.ReleaseKernelTypes() // every object is loaded on return
	if opts.QueueLen == 0 {
		opts.QueueLen = 8192
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Second
	}
	if opts.GoroutineInterval == 0 {
		opts.GoroutineInterval = 10 * time.Second
	}
	if opts.GoroutineTop == 0 {
		opts.GoroutineTop = 10
	}
	if opts.OverflowInterval == 0 {
		opts.OverflowInterval = 100 * time.Millisecond
	}
	if opts.SummaryInterval == 0 {
		opts.SummaryInterval = 10 * time.Second
	}
	if opts.DrainInterval == 0 {
		opts.DrainInterval = 50 * time.Millisecond
	}
	if opts.Events == nil {
		opts.Events = DefaultEvents
	}
	np, err := netpoll.Load(netpoll.Options{RingBufferBytes: opts.RingBufferBytes, Events: opts.Events, IdleWaits: opts.IdleWaits, CostStage: opts.CostStage, WakeupEach: opts.WakeupEach,
		WakeupInterval: opts.DrainInterval, Hooks: opts.Hooks})
	if err != nil {
		return nil, err
	}
	tc, err := tcp.Load(tcp.Options{Targets: np.Targets(), RingBufferBytes: opts.RingBufferBytes, Hooks: opts.Hooks})
	if err != nil {
		np.Close()
		return nil, err
	}
	ov, err := acceptq.Load(acceptq.Options{Targets: np.Targets(), Parks: np.Parks(), Hooks: opts.Hooks})
	if err != nil {
		tc.Close()
		np.Close()
		return nil, err
	}
	t := &Tracer{
		acceptq:        ov,
		opts:           opts,
		clock:          bpfobj.NewClock(),
		netpoll:        np,
		tcp:            tc,
		hooks:          map[string]string{},
		queue:          make(chan item, opts.QueueLen),
		queueLost:      map[string]uint64{},
		queueLostTotal: map[string]uint64{},
		targets:        map[int]*target{},
		syms:           map[int]*symtab.Table{},
		wake:           make(chan struct{}, 1),
		exited:         make(chan int, 16),
		send:           map[string]bool{},
		streamsByPID:   map[uint32]*perTarget{},
	}
	for _, k := range opts.Events {
		t.send[k] = true
	}
	if t.execs, err = execwatch.Load(np.Targets()); err != nil {
		t.Close()
		return nil, err
	}
	if opts.Goroutines {
		if t.gr, err = goroutines.Load(np.Targets()); err != nil {
			t.Close()
			return nil, err
		}
		t.hooks["goroutines"] = "uprobe"
	}
	maps.Copy(t.hooks, np.Hooks())
	maps.Copy(t.hooks, tc.Hooks())
	t.hooks["listen_overflow"] = ov.Mechanism()
	// Each object hooks accept4 and connect itself, the same way on one
	// kernel; if any fell back to the syscall tracepoints, the host pays.
	for _, m := range []string{tc.Hooks()[bpfobj.SocketCalls], ov.CallsMechanism()} {
		if m == bpfobj.HooksTracepoint {
			t.hooks[bpfobj.SocketCalls] = m
		}
	}
	for _, s := range []struct {
		name   string
		m      *ebpf.Map
		decode func([]byte, bpfobj.Clock) (event.Event, error)
		lost   func() (map[string]uint64, error)
	}{
		{"netpoll", np.Events(), netpoll.Decode, np.Lost},
		{"tcp", tc.Events(), tcp.Decode, tc.Lost},
	} {
		rd, err := ringbuf.NewReader(s.m)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("opening ring buffer %s: %w", s.name, err)
		}
		t.streams = append(t.streams, stream{name: s.name, reader: rd, decode: s.decode, lost: s.lost, reported: map[string]uint64{}})
	}
	return t, nil
}

// Hooks maps each hook point to the mechanism in use.
func (t *Tracer) Hooks() map[string]string { return maps.Clone(t.hooks) }

// Close detaches and unloads everything.
func (t *Tracer) Close() error {
	for _, s := range t.streams {
		s.reader.Close()
	}
	if t.gr != nil {
		t.gr.Close()
	}
	if t.execs != nil {
		t.execs.Close()
	}
	if t.acceptq != nil {
		t.acceptq.Close()
	}
	if t.tcp != nil {
		t.tcp.Close()
	}
	if t.netpoll != nil {
		t.netpoll.Close()
	}
	return nil
}

// Attach starts tracing pid and queues its attached event.
func (t *Tracer) Attach(pid int) (*event.Attached, error) {
	p, bin, err := goruntime.InspectPID(pid)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.targets[pid]; ok {
		return nil, fmt.Errorf("PID %d is already traced", pid)
	}
	return t.install(p, bin, "")
}

// install puts p, a Go program built as bin, into the kernel filter with
// its offsets, reads its listeners and symbols, and queues its attached
// event (reason "exec" when it replaced its image). t.mu is held.
func (t *Tracer) install(p proc.Process, bin *goruntime.Binary, reason string) (*event.Attached, error) {
	pid := p.PID
	ns, err := proc.ReadNamespaces(pid)
	if err != nil {
		return nil, fmt.Errorf("reading the namespaces of PID %d: %w", pid, err)
	}
	v := netpoll.TargetOf(p, ns, bin, t.opts.MinWait)
	if ns.InPIDNamespace() && v.G_goid != 0 && !nsThreadIDsReadable() {
		bin.Limits = append(bin.Limits, "no goroutine ids and no netpoll_wait: the target is in a PID namespace of its own, and this kernel's BTF lacks task_struct.thread_pid or pid.numbers to find its threads' ids there")
	}
	var rt *goruntime.Process
	if t.opts.Stacks || t.opts.Goroutines {
		if rt, err = goruntime.OpenProcess(pid, bin); err != nil {
			bin.Limits = append(bin.Limits, fmt.Sprintf("no stacks or goroutine tracking: %v", err))
		} else if t.opts.Stacks {
			v.Stacks = 1
		}
	}
	t.execs.Reset(pid)
	// Connections accepted before attach, so their idle waits are known
	// as idle; the accept4 hook marks the later ones.
	if err := t.netpoll.SeedAccepted(uint32(pid), proc.AcceptedFDs(pid)); err != nil {
		return nil, err
	}
	if err := t.netpoll.AddTarget(uint32(pid), &v); err != nil {
		return nil, fmt.Errorf("adding PID %d to the kernel filter: %w", pid, err)
	}
	// The process may have exited, and its PID been reused, while we read it.
	if !p.Alive() {
		t.netpoll.RemoveTarget(uint32(pid))
		return nil, fmt.Errorf("no process with PID %d: it exited during attach", pid)
	}
	if err := t.acceptq.Baseline(uint32(pid)); err != nil {
		t.netpoll.RemoveTarget(uint32(pid))
		return nil, fmt.Errorf("reading the listeners of PID %d: %w", pid, err)
	}
	tg := &target{proc: p, ns: ns, bin: bin, exe: bin.Path, since: time.Now(), rt: rt}
	if ns.InPIDNamespace() {
		t.nsPIDs.Store(uint32(pid), uint32(ns.NsPID()))
	}
	if rt != nil {
		t.syms[pid] = rt.Syms
	}
	if exe, err := os.Readlink(p.ExePath()); err == nil {
		tg.exe = exe
	}
	t.attachGoroutines(tg)
	if !t.opts.noExitWatch {
		tg.exit = watchExit(p, t.exited)
	}
	t.targets[pid] = tg
	ev := &event.Attached{
		Header:      t.controlHeader("attached", tg),
		Namespaces:  map[string]uint64{"pid": ns.PID, "mnt": ns.Mnt, "net": ns.Net, "cgroup": ns.Cgroup},
		ContainerID: ns.ContainerID,
		Exe:         tg.exe,
		GoVersion:   bin.GoVersion,
		OffsetsFrom: bin.OffsetsFrom,
		Hooks:       t.Hooks(),
		MinWaitNs:   v.MinWaitNs,
		Limits:      t.limits(bin.Limits),
		Reason:      reason,
	}
	t.queueControl(ev)
	return ev, nil
}

// checkExecs re-inspects every target that replaced its image by exec
// since the last check (the kernel took it out of the filter then): a Go
// image is traced on with its own offsets and a new attached event
// (reason exec); any other is detached (reason exec).
func (t *Tracer) checkExecs() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid, tg := range t.targets {
		if t.execs.Execs(pid) == 0 {
			continue
		}
		// What belonged to the old image goes: its listener state, its
		// goroutine probes (in the old text), its symbols.
		if tg.goroutines != nil {
			t.gr.Detach(pid)
			tg.goroutines = nil
		}
		t.acceptq.Forget(uint32(pid))
		delete(t.targets, pid)
		delete(t.syms, pid)
		p, bin, err := goruntime.InspectPID(pid)
		if err == nil {
			_, err = t.install(p, bin, event.ReasonExec)
		}
		if err != nil {
			t.targets[pid] = tg
			t.detachLocked(pid, event.ReasonExec)
		}
	}
}

// SyscallTracepointLimit is the attached event's limits entry when the
// netpoll waits come from syscall tracepoints (the syscall path: the
// kernel lacks the socket tracepoints of 6.3, or --hooks tracepoint or
// --events epoll_wait asked for it). A second entry, starting with
// NetpollSockWhyNot, says why.
const SyscallTracepointLimit = "netpoll waits are hooked with syscall tracepoints: " +
	"while anything is traced so, every syscall of every process on the host takes the slow entry path (TIF_SYSCALL_TRACEPOINT), " +
	"and every read, write, accept4, connect, close and epoll_pwait on the host pays a tracepoint dispatch and the PID filter"

// NetpollSockWhyNot starts the limits entry that says why the netpoll
// waits do not come from the socket tracepoints.
const NetpollSockWhyNot = "netpoll waits not from socket tracepoints: "

// SyscallEntryLimit is the limits entry on the sock path: accept4,
// connect and getsockopt still have syscall tracepoints.
const SyscallEntryLimit = "accept4, connect and getsockopt are hooked with syscall tracepoints: " +
	"while anything is traced, every syscall of every process on the host takes the slow entry path (TIF_SYSCALL_TRACEPOINT); " +
	"reads and writes pay only the socket tracepoints' PID filter"

// limits is what the attached event lists as switched off or costly for
// a target: the binary's limits, and what the hooks cost the host.
func (t *Tracer) limits(bin []string) []string {
	out := slices.Clone(bin)
	if t.hooks["netpoll"] == netpoll.Tracepoint {
		out = append(out, SyscallTracepointLimit)
		if why := t.netpoll.SockWhyNot(); why != nil {
			out = append(out, NetpollSockWhyNot+why.Error())
		}
	} else if t.hooks[bpfobj.SocketCalls] == bpfobj.HooksTracepoint {
		out = append(out, SyscallEntryLimit)
	}
	return out
}

// Detach stops tracing pid now; its detached event follows the events the
// kernel had already produced for it.
func (t *Tracer) Detach(pid int, reason string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.detachLocked(pid, reason)
}

func (t *Tracer) detachLocked(pid int, reason string) error {
	tg, ok := t.targets[pid]
	if !ok {
		return fmt.Errorf("PID %d is not traced", pid)
	}
	delete(t.targets, pid)
	tg.exit.Close()
	if tg.goroutines != nil {
		t.gr.Detach(pid)
	}
	t.acceptq.Forget(uint32(pid))
	t.execs.Reset(pid)
	if err := t.netpoll.RemoveTarget(uint32(pid)); err != nil {
		return fmt.Errorf("removing PID %d from the kernel filter: %w", pid, err)
	}
	t.queueControl(&event.Detached{Header: t.controlHeader("detached", tg), Reason: reason})
	return nil
}

// TargetInfo describes a traced process.
type TargetInfo struct {
	PID       int
	Comm      string
	Exe       string
	GoVersion string
	Since     time.Time
}

// Targets lists the traced processes, by PID.
func (t *Tracer) Targets() []TargetInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := make([]TargetInfo, 0, len(t.targets))
	for pid, tg := range t.targets {
		list = append(list, TargetInfo{PID: pid, Comm: tg.proc.Comm, Exe: tg.exe, GoVersion: tg.bin.GoVersion, Since: tg.since})
	}
	slices.SortFunc(list, func(a, b TargetInfo) int { return a.PID - b.PID })
	return list
}

func (t *Tracer) controlHeader(name string, tg *target) event.Header {
	p := tg.proc
	h := event.Header{Time: time.Now(), Event: name, PID: uint32(p.PID), TID: uint32(p.PID), Comm: p.Comm}
	if tg.ns.InPIDNamespace() {
		h.NsPID = uint32(tg.ns.NsPID())
		h.NsTID = h.NsPID
	}
	return h
}

// setNsPID adds the target's id in its own PID namespace to an event of a
// target that lives in one. An event about the process as a whole (TID ==
// PID) has the same id for its thread.
func (t *Tracer) setNsPID(h *event.Header) {
	ns, ok := t.nsPIDs.Load(h.PID)
	if !ok {
		return
	}
	h.NsPID = ns.(uint32)
	if h.TID == h.PID {
		h.NsTID = h.NsPID
	}
}

func (t *Tracer) queueControl(ev event.Event) {
	t.control = append(t.control, ev)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// ErrNoTargets is returned by Run when the last target has exited.
var ErrNoTargets = errors.New("no traced process left")

// RunOptions say when Run stops besides its context.
type RunOptions struct {
	// ExitWhenNoTargets ends Run once every target has gone.
	ExitWhenNoTargets bool
	// Reason is the detach reason written when the context ends.
	Reason func() string
}

// Run streams events to sink until ctx ends (or, with ExitWhenNoTargets,
// the last target exits). On the way out it writes what the kernel had
// already produced, then a detached event per remaining target.
func (t *Tracer) Run(ctx context.Context, sink Sink, ro RunOptions) error {
	sink = limitSink{Sink: sink, t: t}
	readers, stopReaders := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range t.streams {
		s := &t.streams[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.read(readers, s)
		}()
	}
	defer func() {
		stopReaders()
		t.flush() // wakes readers blocked in ReadInto
		wg.Wait()
	}()

	tick := time.NewTicker(t.opts.PollInterval)
	defer tick.Stop()
	overflowTick := time.NewTicker(t.opts.OverflowInterval)
	defer overflowTick.Stop()
	// Goroutine counts are due every GoroutineInterval per target (since
	// its attach), which can be shorter than the poll's: check five times
	// an interval.
	var goroutineTick <-chan time.Time
	if t.gr != nil {
		gt := time.NewTicker(max(t.opts.GoroutineInterval/5, 10*time.Millisecond))
		defer gt.Stop()
		goroutineTick = gt.C
	}
	var summaryTick <-chan time.Time
	if t.opts.SummaryInterval > 0 {
		st := time.NewTicker(t.opts.SummaryInterval)
		defer st.Stop()
		summaryTick = st.C
	}
	var (
		held      []event.Event // control events waiting for a flush
		flushing  int           // readers yet to hand over their ring buffer
		flushed   bool          // the flush for held has been started
		finishing bool
	)
	for {
		select {
		case <-ctx.Done():
			if !finishing {
				finishing = true
				// The last drops, while the listeners still exist.
				if err := t.sampleOverflow(sink); err != nil {
					return err
				}
				t.detachAll(ro.reason())
			}
		case <-t.wake:
		case pid := <-t.exited:
			t.reapExited(pid)
		case <-overflowTick.C:
			// Execs too: the kernel took an exec'd target out of the
			// filter, and its new image goes untraced until this runs.
			t.checkExecs()
			if err := t.sampleOverflow(sink); err != nil {
				return err
			}
		case <-summaryTick:
			if err := t.writeSummaries(sink); err != nil {
				return fmt.Errorf("writing event: %w", err)
			}
		case <-tick.C:
			t.reapExited()
			if err := t.reportLost(sink); err != nil {
				return err
			}
		case <-goroutineTick:
			if err := t.goroutineTick(sink); err != nil {
				return err
			}
		case it := <-t.queue:
			if it.flushed {
				flushing--
			} else {
				t.acceptq.NoteAccept(it.ev)
				if err := sink.Write(it.ev); err != nil {
					return fmt.Errorf("writing event: %w", err)
				}
			}
			if len(t.queue) > 0 {
				continue // flush the sink once the burst is written
			}
		}

		// Attach and detach events go out after the events the kernel
		// produced before them: flush the readers first.
		t.mu.Lock()
		held = append(held, t.control...)
		t.control = t.control[:0]
		remaining := len(t.targets)
		t.mu.Unlock()
		if len(held) > 0 && flushing == 0 {
			if !flushed {
				flushing, flushed = t.flush(), true
			}
			if flushing == 0 {
				for _, ev := range held {
					if d, ok := ev.(*event.Detached); ok && t.opts.SummaryInterval > 0 {
						if err := t.writeLastSummary(sink, d); err != nil {
							return fmt.Errorf("writing event: %w", err)
						}
					}
					if err := sink.Write(ev); err != nil {
						return fmt.Errorf("writing event: %w", err)
					}
					if d, ok := ev.(*event.Detached); ok {
						t.forgetSymbols(int(d.PID))
						delete(t.streamsByPID, d.PID)
					}
				}
				held, flushed = held[:0], false
			}
		}
		if err := sink.Flush(); err != nil {
			return fmt.Errorf("writing events: %w", err)
		}
		idle := flushing == 0 && len(held) == 0 && len(t.queue) == 0
		if idle && (finishing || (ro.ExitWhenNoTargets && remaining == 0)) {
			if err := t.reportLost(sink); err != nil {
				return err
			}
			if err := sink.Flush(); err != nil {
				return fmt.Errorf("writing events: %w", err)
			}
			if finishing {
				return nil
			}
			return ErrNoTargets
		}
	}
}

func (ro RunOptions) reason() string {
	if ro.Reason != nil {
		return ro.Reason()
	}
	return event.ReasonSignal
}

func (t *Tracer) detachAll(reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid := range t.targets {
		t.detachLocked(pid, reason)
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
			t.countQueueLost(ev.Head().Event)
		}
	}
}

// reapExited detaches the targets among pids (all when none are given)
// that have exited.
func (t *Tracer) reapExited(pids ...int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid, tg := range t.targets {
		if len(pids) > 0 && !slices.Contains(pids, pid) {
			continue
		}
		if !tg.proc.Alive() {
			t.detachLocked(pid, event.ReasonTargetExited)
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
	for i := range t.streams {
		s := &t.streams[i]
		counts, err := s.lost()
		if err != nil {
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(counts)) {
			if n := counts[name]; n > s.reported[name] {
				if err := sink.Write(t.lostEvent(s.name, name, n-s.reported[name])); err != nil {
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
		if err := sink.Write(t.lostEvent("queue", name, queued[name])); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tracer) lostEvent(stream, lostEvent string, n uint64) *event.Lost {
	return &event.Lost{Header: event.Header{Time: time.Now(), Event: "lost"}, Count: n, Stream: stream, LostEvent: lostEvent}
}

// sampleOverflow writes a listen_overflow event for every traced listener
// whose drop counter rose since the previous sample.
func (t *Tracer) sampleOverflow(sink Sink) error {
	t.mu.Lock()
	comms := make(map[uint32]string, len(t.targets))
	for pid, tg := range t.targets {
		comms[uint32(pid)] = tg.proc.Comm
	}
	t.mu.Unlock()
	if len(comms) == 0 {
		return nil
	}
	evs, err := t.acceptq.Sample(t.clock, comms)
	if err != nil {
		// Nothing is lost: the counters are cumulative, and the next
		// sample reports these drops.
		return nil
	}
	for _, ev := range evs {
		t.setNsPID(ev.Head())
		if err := sink.Write(ev); err != nil {
			return fmt.Errorf("writing event: %w", err)
		}
	}
	return nil
}
