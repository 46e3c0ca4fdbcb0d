// Package netpoll loads bpf/netpoll.bpf.c: per-goroutine waits in Go's
// netpoller (netpoll_wait) and the netpoller's own epoll_pwait blocks
// (epoll_wait). The waits come from the kernel's socket tracepoints where
// it has them (the sock path, Linux 6.3+), else from the same places with
// fentry/fexit where the kernel allows it (the sock path on fentry), else
// from syscall tracepoints (the syscall path); Load chooses and Mechanism
// says which. It also owns the `targets` map that every BPF object
// filters on.
package netpoll

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
)

// Target is one traced process as the BPF programs see it (struct target).
type Target netpollTarget

// The mechanisms of the netpoll hooks, as the attached event names them.
const (
	Sock       = "tp_btf"     // the sock path: socket tracepoints, as tp_btf
	SockFentry = "fentry"     // the sock path on the kernel functions those tracepoints sit in
	Tracepoint = "tracepoint" // syscall tracepoints
	Off        = "off"
)

// Objects are the loaded programs and maps, and what is attached.
type Objects struct {
	coll *ebpf.Collection
	spec *ebpf.CollectionSpec

	mu sync.Mutex
	// mechanism is the path every target takes: Sock, SockFentry or
	// Tracepoint.
	mechanism string
	// sendmsg is the kernel function whose exit the SockFentry path
	// hooks for sends: __sock_sendmsg, or sock_sendmsg before it.
	sendmsg string
	// sockWhyNot says why the sock path (either way) is not available on
	// this kernel or with these options; nil when it is.
	sockWhyNot error
	// The syscall tracepoints that only the syscall path needs, those
	// both paths need (accept4, connect, getsockopt), and the sock path's
	// tp_btf programs: each attached while a target needs them.
	syscallLinks, sharedLinks, sockLinks []link.Link
	// calls hooks accept4, connect and getsockopt instead of their
	// syscall tracepoints (fentry, attached at Load; nil where the kernel
	// or --hooks rules it out).
	calls *bpfobj.Attached
	// epollEvents: epoll_wait events are sent (EpollUprobes).
	epollEvents bool
	// The traced PIDs, true for those whose accept4, connect and
	// getsockopt the syscall tracepoints serve (where neither fentry nor
	// uprobes in the target do).
	pids map[uint32]bool
}

// Options change the object before it is loaded.
type Options struct {
	// RingBufferBytes sizes the event ring buffer (a power of two, a
	// multiple of the page size). Zero keeps the default of 1 MiB.
	RingBufferBytes uint32
	// StackTraces sizes the map of netpoll wait stacks (see EnableStacks).
	// Zero keeps 1 entry: no room for stacks, no memory spent.
	StackTraces uint32
	// CostStage cuts every program short after one part of its work, for
	// make bench's cost table only (see enum cost_stage in
	// bpf/netpoll.bpf.c). Zero runs everything.
	CostStage CostStage
	// WakeupEach makes every submit wake the reader when it has caught up
	// (the kernel's default; make bench's cost table only). Otherwise a
	// submit wakes the reader only if the last wake-up was WakeupInterval
	// ago or more (zero: 50ms) or WakeupBytes are waiting, and the reader
	// must drain once more WakeupInterval after each wake-up (see submit
	// in bpf/netpoll.bpf.c).
	WakeupEach     bool
	WakeupInterval time.Duration
	// Events names the event types sent to user space ("netpoll_wait",
	// "epoll_wait"); nil sends netpoll_wait only. The waits not sent
	// still count in the histograms.
	Events []string
	// IdleWaits sends idle netpoll waits too (--waits all); otherwise
	// only in_request ones are sent.
	IdleWaits bool
	// WakeupBytes is the backlog that wakes the reader; zero: a quarter
	// of the ring buffer.
	WakeupBytes uint64
	// Hooks is the --hooks family. "tracepoint" puts every target on the
	// syscall path and hooks accept4, connect and getsockopt with their
	// syscall tracepoints, as "kprobe" does; "auto" and "fentry" hook
	// them with fentry ("fentry" fails where the kernel cannot).
	Hooks string
	// TrackRequests offers every wait to the request its goroutine
	// serves (bpf/requests.h; pkg/requests opens and closes them).
	// Otherwise the request maps get one entry each and no memory.
	TrackRequests bool
}

// CostStage is how much of each program runs (make bench's cost table).
type CostStage = netpollCostStage

// The cost stages, each including the ones before it.
const (
	CostAll      = netpollCostStageCOST_ALL
	CostDispatch = netpollCostStageCOST_DISPATCH
	CostFilter   = netpollCostStageCOST_FILTER
	CostGoid     = netpollCostStageCOST_GOID
	CostRecords  = netpollCostStageCOST_RECORDS
)

// Load loads the programs and maps into the kernel and attaches them.
func Load(opts Options) (*Objects, error) {
	spec, err := loadNetpoll()
	if err != nil {
		return nil, err
	}
	if opts.RingBufferBytes != 0 {
		spec.Maps[netpollMapEvents].MaxEntries = opts.RingBufferBytes
	}
	stackTraces := uint32(0)
	if opts.StackTraces != 0 {
		spec.Maps[netpollMapNetpollStackTraces].MaxEntries = opts.StackTraces
		stackTraces = 1
	}
	if opts.WakeupBytes == 0 {
		opts.WakeupBytes = uint64(spec.Maps[netpollMapEvents].MaxEntries / 4)
	}
	wakeupEach := uint32(0)
	if opts.WakeupEach {
		wakeupEach = 1
	}
	if opts.WakeupInterval == 0 {
		opts.WakeupInterval = 50 * time.Millisecond
	}
	send := uint32(1 << netpollEventTypeEVENT_NETPOLL_WAIT)
	if opts.Events != nil {
		send = 0
		for typ, name := range eventNames {
			if slices.Contains(opts.Events, name) {
				send |= 1 << typ
			}
		}
	}
	sendIdle := uint32(0)
	if opts.IdleWaits {
		sendIdle = 1
	}
	trackRequests := uint32(0)
	if opts.TrackRequests {
		trackRequests = 1
	} else {
		spec.Maps[netpollMapReqActive].MaxEntries = 1
		spec.Maps[netpollMapReqFds].MaxEntries = 1
		spec.Maps[netpollMapReqParentOff].MaxEntries = 1
		spec.Maps[netpollMapReqReadStarts].MaxEntries = 1
	}
	for name, v := range map[string]any{
		netpollVarSendEvents:       send,
		netpollVarSendIdle:         sendIdle,
		netpollVarTrackRequests:    trackRequests,
		netpollVarStackTraces:      stackTraces,
		netpollVarCost:             uint32(opts.CostStage),
		netpollVarWakeupEach:       wakeupEach,
		netpollVarWakeupBytes:      opts.WakeupBytes,
		netpollVarWakeupIntervalNs: uint64(opts.WakeupInterval.Nanoseconds()),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("setting %s: %w", name, err)
		}
	}
	o := &Objects{spec: spec, pids: map[uint32]bool{}, epollEvents: send&(1<<netpollEventTypeEVENT_EPOLL_WAIT) != 0}
	var noTracepoints error
	o.mechanism, noTracepoints = choosePath(opts)
	if o.mechanism == Tracepoint {
		o.sockWhyNot = noTracepoints
	}
	calls := bpfobj.SyscallsFentry(callHooks)
	for {
		ps := pathSpec(spec, o.mechanism)
		o.coll, err = bpfobj.NewCollection(bpfobj.Without(ps, bpfobj.CandidateProgs(calls)...), ebpf.CollectionOptions{})
		if p := ps.Programs[netpollProgFexitSockSendmsg]; p != nil && o.mechanism == SockFentry {
			o.sendmsg = p.AttachTo
		}
		if err == nil && o.mechanism == SockFentry {
			// A kernel may load fentry programs and still refuse to
			// attach them (Debian's arm64 6.1 has no trampolines):
			// tried once here, not at the first target's attach.
			var links []link.Link
			if links, err = o.attachSock(); err != nil {
				o.coll.Close()
			}
			bpfobj.CloseAll(links)
		}
		if err == nil {
			break
		}
		if o.mechanism != SockFentry {
			return nil, bpfobj.LoadError("netpoll BPF object", err)
		}
		if opts.Hooks == bpfobj.HooksFentry {
			return nil, fmt.Errorf("the kernel refused --hooks=fentry for the netpoll waits (%w); try --hooks=auto", bpfobj.LoadError("netpoll BPF object", err))
		}
		// The kernel refused fentry there (Debian's 5.10, for one,
		// lets no tracing program use socket storage; arm64 6.1
		// attaches none): the syscall path.
		o.mechanism = Tracepoint
		o.sockWhyNot = fmt.Errorf("%w, and refused fentry on the functions they sit in (%v)", noTracepoints, err)
	}
	// Attached now: fentry costs nothing until the calls it hooks, and
	// the programs filter on both paths' PIDs.
	if o.calls, err = bpfobj.AttachFirst(spec, o.coll.Maps, calls, cmp.Or(opts.Hooks, bpfobj.HooksAuto)); err != nil {
		o.coll.Close()
		return nil, fmt.Errorf("hook %s: %w", bpfobj.SocketCalls, err)
	}
	return o, nil
}

// callHooks are accept4, connect and getsockopt, which no socket
// tracepoint sees: both paths need them.
var callHooks = []bpfobj.SyscallHook{
	{Tracing: netpollProgFentryAccept4, Uprobe: netpollProgUprobeAccept4, At: bpfobj.CallPoint{Syscall: goruntime.Accept4},
		Tracepoint: netpollProgEnterAccept4},
	{Tracing: netpollProgFexitAccept4, Uprobe: netpollProgUprobeAccept4Return, At: bpfobj.CallPoint{Syscall: goruntime.Accept4, Return: true},
		Tracepoint: netpollProgExitAccept4},
	{Tracing: netpollProgFentryConnect, Uprobe: netpollProgUprobeConnect, At: bpfobj.CallPoint{Syscall: goruntime.Connect},
		Tracepoint: netpollProgEnterConnect},
	{Tracing: netpollProgFexitConnect, Uprobe: netpollProgUprobeConnectReturn, At: bpfobj.CallPoint{Syscall: goruntime.Connect, Return: true},
		Tracepoint: netpollProgExitConnect},
	{Tracing: netpollProgFentryGetsockopt, Uprobe: netpollProgUprobeGetsockopt, At: bpfobj.CallPoint{Syscall: goruntime.Getsockopt},
		Tracepoint: netpollProgEnterGetsockopt},
}

// CallUprobes are the programs that hook accept4, connect and getsockopt
// with uprobes in a target (pkg/tracer places them; the ones at the calls
// save the arguments for every object's programs at the returns), where
// fentry does not serve; nil where it does, and on the syscall path, whose
// syscall tracepoints cost the host as much with them as without.
func (o *Objects) CallUprobes() []bpfobj.CallUprobe {
	if o.calls != nil || o.mechanism == Tracepoint {
		return nil
	}
	return bpfobj.CallUprobes(o.coll, callHooks)
}

// EpollUprobes are the programs that see the netpoller's epoll_pwait
// with uprobes in a target (goruntime.EpollWaitSites; pkg/tracer places
// them), on the sock path where epoll_wait events are sent; nil
// otherwise: the syscall path has its tracepoints, and nothing else needs
// them.
func (o *Objects) EpollUprobes() []bpfobj.CallUprobe {
	if !o.epollEvents || o.mechanism == Tracepoint {
		return nil
	}
	return []bpfobj.CallUprobe{
		{At: bpfobj.CallPoint{Syscall: goruntime.EpollPwait}, Prog: o.coll.Programs[netpollProgUprobeEpollWait]},
		{At: bpfobj.CallPoint{Syscall: goruntime.EpollPwait, Return: true}, Prog: o.coll.Programs[netpollProgUprobeEpollWaitReturn]},
	}
}

// CallArgs is the map in which the uprobes at the calls save the
// arguments (bpf/calls.h), shared with pkg/tcp and pkg/acceptq.
func (o *Objects) CallArgs() *ebpf.Map { return o.coll.Maps[netpollMapSavedCalls] }

// choosePath picks the path every target takes: the sock path on the
// socket tracepoints where the kernel has them, else on fentry where
// --hooks allows it (Load falls back to the syscall path if the kernel
// refuses it), else the syscall path. why says why the socket
// tracepoints are not used; nil where they are.
func choosePath(opts Options) (mechanism string, why error) {
	if opts.Hooks == bpfobj.HooksTracepoint {
		return Tracepoint, errors.New("--hooks tracepoint asks for syscall tracepoints")
	}
	kernel, err := bpfobj.KernelSpec()
	if err != nil {
		return Tracepoint, fmt.Errorf("reading the kernel's BTF: %w", err)
	}
	for _, tp := range []string{"sock_recv_length", "sock_send_length", "sk_data_ready", "inet_sock_set_state"} {
		if _, err := kernel.AnyTypeByName("btf_trace_" + tp); err != nil {
			why = fmt.Errorf("the kernel has no %s tracepoint (Linux 6.3+)", tp)
			break
		}
	}
	switch {
	case why == nil:
		return Sock, nil
	case opts.Hooks == bpfobj.HooksKprobe:
		return Tracepoint, fmt.Errorf("%w, and --hooks kprobe rules out fentry", why)
	}
	return SockFentry, why
}

// pathSpec is spec with the programs of mechanism's path only. The path is
// chosen once, at Load: the other paths' programs would never be
// attached, the kernel may not know their targets, and verifying the
// syscall path's was most of the start-up (exit_epoll_pwait alone 0.6 s
// on 6.18).
func pathSpec(spec *ebpf.CollectionSpec, mechanism string) *ebpf.CollectionSpec {
	out := spec.Copy()
	keep := sockPrograms[mechanism]
	for name, prog := range out.Programs {
		switch {
		case prog.Type == ebpf.TracePoint && mechanism != Tracepoint && !sharedPrograms[name],
			isSockProgram(name) && !slices.Contains(keep, name),
			prog.Type == ebpf.Kprobe && mechanism == Tracepoint: // uprobes: see CallUprobes
			delete(out.Programs, name)
		}
	}
	if mechanism == SockFentry {
		// Linux 6.6 made sock_sendmsg a wrapper of __sock_sendmsg,
		// which write(2), sendto and sendmsg call directly (stable
		// kernels took it back to 6.1: Debian's 6.1.192 has it);
		// before, sock_sendmsg is the function they call.
		if kernel, err := bpfobj.KernelSpec(); err == nil {
			var fn *btf.Func
			if kernel.TypeByName("__sock_sendmsg", &fn) != nil {
				out.Programs[netpollProgFexitSockSendmsg].AttachTo = "sock_sendmsg"
			}
		}
	}
	return out
}

// sockPrograms are the sock path's programs, by mechanism. They run for
// every socket read, write and wake-up on the host, the PID filter (or,
// for a wake-up, one map lookup) first. A handshake's end has its
// tracepoint on every kernel the sock path serves.
var sockPrograms = map[string][]string{
	Sock:       {netpollProgSockRecv, netpollProgSockSend, netpollProgDataReady, netpollProgSockState},
	SockFentry: {netpollProgFexitSockRecvmsg, netpollProgFexitSockSendmsg, netpollProgFentrySockReadable, netpollProgSockState},
}

func isSockProgram(name string) bool {
	for _, progs := range sockPrograms {
		if slices.Contains(progs, name) {
			return true
		}
	}
	return false
}

// sharedPrograms are the syscall tracepoints both paths need where the
// kernel has no fentry: no socket tracepoint sees an accept4, a connect or
// its getsockopt(SO_ERROR).
var sharedPrograms = bpfobj.SyscallTracepoints(callHooks)

// Mechanism is the netpoll hooks' mechanism: Sock, SockFentry, or
// Tracepoint when the kernel or the options rule the sock path out
// (SockWhyNot says why).
func (o *Objects) Mechanism() string { return o.mechanism }

// SendmsgFunc is the kernel function whose exit the SockFentry path hooks
// for socket sends ("" on the other paths).
func (o *Objects) SendmsgFunc() string {
	if o.mechanism != SockFentry {
		return ""
	}
	return o.sendmsg
}

// Hooks maps this object's hook points to their mechanism: the netpoll
// waits', the netpoller's epoll_pwait (the syscall path's tracepoints;
// on the sock path, uprobes where epoll_wait events are sent, else off),
// and the calls no socket tracepoint sees (accept4, connect, getsockopt).
func (o *Objects) Hooks() map[string]string {
	epoll := Off
	switch {
	case o.Mechanism() == Tracepoint:
		epoll = Tracepoint
	case o.EpollUprobes() != nil:
		epoll = bpfobj.HooksUprobe
	}
	calls := bpfobj.CallsMechanism(o.calls)
	if o.CallUprobes() != nil {
		calls = bpfobj.HooksUprobe
	}
	return map[string]string{"netpoll": o.Mechanism(), "epoll_pwait": epoll, bpfobj.SocketCalls: calls}
}

// pidFilter is the PID bitmap of this object's path.
func (o *Objects) pidFilter() string {
	if o.mechanism == Tracepoint {
		return netpollMapTracedPids
	}
	return netpollMapSockPids
}

// SockWhyNot says why the sock path is not used; nil when it is.
func (o *Objects) SockWhyNot() error { return o.sockWhyNot }

// Targets is the map of traced processes, keyed by PID, value Target.
// Add and remove targets with AddTarget and RemoveTarget, which keep the
// PID filter in step.
func (o *Objects) Targets() *ebpf.Map { return o.coll.Maps[netpollMapTargets] }

// AddTarget starts tracing pid: its Target entry first, then the hooks
// its path needs, then its bit in that path's PID filter, which the
// programs check before anything else. t.CallsUprobe says its accept4,
// connect and getsockopt have uprobes (CallUprobes), already attached.
func (o *Objects) AddTarget(pid uint32, t *Target) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.Targets().Put(pid, t); err != nil {
		return err
	}
	o.pids[pid] = t.CallsUprobe == 0
	err := o.attachFor()
	if err == nil {
		err = o.setBit(o.pidFilter(), pid, true)
	}
	if err != nil {
		o.removeLocked(pid)
		return err
	}
	return nil
}

// attachFor attaches what the path needs while a PID is traced, and
// detaches it when none is: a tracer with no target costs the host
// nothing.
func (o *Objects) attachFor() error {
	traced := len(o.pids) > 0
	syscalls := traced && o.Mechanism() == Tracepoint
	socks := traced && o.Mechanism() != Tracepoint
	callSyscalls := slices.Contains(slices.Collect(maps.Values(o.pids)), true)
	var err error
	update := func(links *[]link.Link, want bool, attach func() ([]link.Link, error)) {
		switch {
		case want && *links == nil && err == nil:
			*links, err = attach()
		case !want:
			bpfobj.CloseAll(*links)
			*links = nil
		}
	}
	update(&o.sharedLinks, callSyscalls && o.calls == nil, func() ([]link.Link, error) {
		return bpfobj.AttachTracepoints(o.spec, o.programs(func(name string) bool { return sharedPrograms[name] }))
	})
	update(&o.syscallLinks, syscalls, func() ([]link.Link, error) {
		return bpfobj.AttachTracepoints(o.spec, o.programs(func(name string) bool { return !sharedPrograms[name] }))
	})
	update(&o.sockLinks, socks, o.attachSock)
	return err
}

// attachSock attaches the sock path's programs.
func (o *Objects) attachSock() ([]link.Link, error) {
	var links []link.Link
	for _, prog := range sockPrograms[o.mechanism] {
		l, err := link.AttachTracing(link.TracingOptions{Program: o.coll.Programs[prog]})
		if err != nil {
			bpfobj.CloseAll(links)
			return nil, fmt.Errorf("attaching %s: %w", prog, err)
		}
		links = append(links, l)
	}
	return links, nil
}

// programs are the loaded programs whose names keep says.
func (o *Objects) programs(keep func(string) bool) map[string]*ebpf.Program {
	out := map[string]*ebpf.Program{}
	for name, p := range o.coll.Programs {
		if keep(name) {
			out[name] = p
		}
	}
	return out
}

// SeedAccepted marks fds of pid as connections it accepted (before
// attach: those accepted later are marked by the accept4 hook), so that
// a read waiting on one for the client's next request is an idle wait.
func (o *Objects) SeedAccepted(pid uint32, fds []int32) error {
	m := o.coll.Maps[netpollMapAcceptedFds]
	for _, fd := range fds {
		if err := m.Put(netpollConnKey{Pid: pid, Fd: fd}, netpollConn{}); err != nil {
			return fmt.Errorf("marking accepted fd %d of PID %d: %w", fd, pid, err)
		}
	}
	return nil
}

// RemoveTarget stops tracing pid. A pid that was not traced is no error.
// With the last target, the hooks are detached.
func (o *Objects) RemoveTarget(pid uint32) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.removeLocked(pid)
}

func (o *Objects) removeLocked(pid uint32) error {
	delete(o.pids, pid)
	bpfobj.DeleteWhere[netpollCallKey, netpollCallArgs](o.CallArgs(), func(k *netpollCallKey) bool { return k.Pid == pid })
	if err := o.setBit(o.pidFilter(), pid, false); err != nil {
		return err
	}
	if err := o.Targets().Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return o.attachFor()
}

// setBit flips pid's bit in a PID filter (traced_pids: the syscall path's
// targets; sock_pids: the sock path's).
// Callers hold o.mu; the BPF side only reads the words.
func (o *Objects) setBit(bitmap string, pid uint32, on bool) error {
	m := o.coll.Maps[bitmap]
	word := pid / 64
	if word >= m.MaxEntries() {
		return fmt.Errorf("PID %d above the PID filter's range", pid)
	}
	var w uint64
	if err := m.Lookup(word, &w); err != nil {
		return fmt.Errorf("reading the PID filter: %w", err)
	}
	if on {
		w |= 1 << (pid % 64)
	} else {
		w &^= 1 << (pid % 64)
	}
	if err := m.Put(word, w); err != nil {
		return fmt.Errorf("writing the PID filter: %w", err)
	}
	return nil
}

// Parks is the map of goroutines parked in the netpoller, keyed by (pid,
// fd, direction); pkg/acceptq reads it to see whether an acceptor is parked.
func (o *Objects) Parks() *ebpf.Map { return o.coll.Maps[netpollMapParks] }

// RequestMaps are the requests in flight and the downstream connections
// of their round trips (bpf/requests.h), shared with pkg/requests.
func (o *Objects) RequestMaps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		netpollMapReqActive:    o.coll.Maps[netpollMapReqActive],
		netpollMapReqFds:       o.coll.Maps[netpollMapReqFds],
		netpollMapReqParentOff: o.coll.Maps[netpollMapReqParentOff],
		// The sock path's HTTP/1 request starts (requests.h req_read).
		netpollMapReqReadStarts: o.coll.Maps[netpollMapReqReadStarts],
		// Its PID filter, which requests' socket programs run first.
		netpollMapSockPids: o.coll.Maps[netpollMapSockPids],
	}
}

// Events is the ring buffer of netpoll_wait and epoll_wait records.
func (o *Objects) Events() *ebpf.Map { return o.coll.Maps[netpollMapEvents] }

// Lost returns how many events of each type found the ring buffer full so far.
func (o *Objects) Lost() (map[string]uint64, error) {
	return bpfobj.LostCounts(o.coll.Maps[netpollMapLost], eventNames)
}

var eventNames = map[netpollEventType]string{
	netpollEventTypeEVENT_NETPOLL_WAIT: "netpoll_wait",
	netpollEventTypeEVENT_EPOLL_WAIT:   "epoll_wait",
}

// Close detaches and unloads everything.
func (o *Objects) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	bpfobj.CloseAll(o.sockLinks)
	bpfobj.CloseAll(o.syscallLinks)
	bpfobj.CloseAll(o.sharedLinks)
	if o.calls != nil {
		o.calls.Close()
	}
	o.coll.Close()
	return nil
}

var modes = map[netpollMode]string{
	netpollModeMODE_READ:    "read",
	netpollModeMODE_WRITE:   "write",
	netpollModeMODE_ACCEPT:  "accept",
	netpollModeMODE_CONNECT: "connect",
}

var kinds = map[netpollWaitKind]string{
	netpollWaitKindWAIT_IN_REQUEST: "in_request",
	netpollWaitKindWAIT_IDLE:       "idle",
}

// Decode turns one ring buffer record into an event.
func Decode(raw []byte, clock bpfobj.Clock) (event.Event, error) {
	h, err := bpfobj.View[bpfobj.EventHeader](raw)
	if err != nil {
		return nil, err
	}
	switch netpollEventType(h.Type) {
	case netpollEventTypeEVENT_NETPOLL_WAIT:
		r, err := bpfobj.View[netpollNetpollWaitEvent](raw)
		if err != nil {
			return nil, err
		}
		hdr := h.Header(eventNames[netpollEventTypeEVENT_NETPOLL_WAIT], clock)
		hdr.Stack = bpfobj.Stack(r.Stack.Pcs[:], r.Stack.Len)
		return &event.NetpollWait{
			Header:          hdr,
			FD:              r.Fd,
			Mode:            modes[netpollMode(r.Mode)],
			Kind:            kinds[netpollWaitKind(r.Kind)],
			Addrs:           bpfobj.Addrs(r.Addrs.Family, r.Addrs.Saddr, r.Addrs.Daddr, r.Addrs.Sport, r.Addrs.Dport),
			WaitNs:          r.WaitNs,
			IoWaitNs:        r.IoWaitNs,
			SchedDelayNs:    r.SchedDelayNs,
			ReadySeen:       r.ReadySeen != 0,
			ParkTID:         r.ParkTid,
			DeadlineNs:      r.DeadlineNs,
			HasDeadline:     netpollDeadline(r.Deadline) == netpollDeadlineDEADLINE_SET,
			DeadlineExpired: netpollDeadline(r.Deadline) == netpollDeadlineDEADLINE_EXPIRED,
		}, nil
	case netpollEventTypeEVENT_EPOLL_WAIT:
		r, err := bpfobj.View[netpollEpollWaitEvent](raw)
		if err != nil {
			return nil, err
		}
		return &event.EpollWait{
			Header:    h.Header(eventNames[netpollEventTypeEVENT_EPOLL_WAIT], clock),
			BlockNs:   r.BlockNs,
			Ready:     r.Ready,
			TimeoutMs: r.TimeoutMs,
			EpFD:      r.Epfd,
		}, nil
	}
	return nil, fmt.Errorf("netpoll: unknown event type %d", h.Type)
}
