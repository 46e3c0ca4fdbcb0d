// Package netpoll loads bpf/netpoll.bpf.c: per-goroutine waits in Go's
// netpoller (netpoll_wait) and the netpoller's own epoll_pwait blocks
// (epoll_wait). Each target's waits come from uprobes in its own runtime
// where it can (the uprobe path), else from syscall tracepoints (the
// syscall path); AddTarget chooses and says which. It also owns the
// `targets` map that every BPF object filters on.
package netpoll

import (
	"debug/elf"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// Target is one traced process as the BPF programs see it (struct target).
type Target netpollTarget

// The mechanisms of the netpoll hooks, as the attached event names them.
const (
	Uprobe     = "uprobe"     // uprobes in the target's runtime
	Tracepoint = "tracepoint" // syscall tracepoints
	Off        = "off"
)

// Objects are the loaded programs and maps, and what is attached.
type Objects struct {
	coll *ebpf.Collection
	spec *ebpf.CollectionSpec
	opts Options

	mu sync.Mutex
	// uprobeWhyNot says why the uprobe path is not available on this
	// kernel or with these options; nil when it is.
	uprobeWhyNot error
	// The syscall tracepoints, attached while a target is on the syscall
	// path, and the uprobe path's host-wide tp_btf programs
	// (hostPrograms), attached while a target is on it.
	syscallLinks, sendLinks []link.Link
	// Each target's path, and its uprobes.
	paths   map[uint32]string
	uprobes map[uint32][]link.Link
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
	// SyscallsOnly puts every target on the syscall path (--hooks
	// tracepoint).
	SyscallsOnly bool
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
	if opts.StackTraces != 0 {
		spec.Maps[netpollMapNetpollStackTraces].MaxEntries = opts.StackTraces
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
	for name, v := range map[string]any{
		netpollVarSendEvents:       send,
		netpollVarSendIdle:         sendIdle,
		netpollVarCost:             uint32(opts.CostStage),
		netpollVarWakeupEach:       wakeupEach,
		netpollVarWakeupBytes:      opts.WakeupBytes,
		netpollVarWakeupIntervalNs: uint64(opts.WakeupInterval.Nanoseconds()),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("setting %s: %w", name, err)
		}
	}
	o := &Objects{spec: spec, opts: opts, paths: map[uint32]string{}, uprobes: map[uint32][]link.Link{}}
	o.uprobeWhyNot = uprobePathWhyNot(opts)
	if o.uprobeWhyNot != nil {
		// The kernel may not know the tp_btf targets: leave them out.
		for _, prog := range hostPrograms {
			delete(spec.Programs, prog)
		}
	}
	if o.coll, err = ebpf.NewCollection(spec); err != nil {
		return nil, bpfobj.LoadError("netpoll BPF object", err)
	}
	return o, nil
}

// uprobePathWhyNot says why no target can take the uprobe path, or nil.
func uprobePathWhyNot(opts Options) error {
	if opts.SyscallsOnly {
		return errors.New("--hooks tracepoint asks for syscall tracepoints")
	}
	if slices.Contains(opts.Events, eventNames[netpollEventTypeEVENT_EPOLL_WAIT]) {
		return errors.New("epoll_wait events come from the epoll_pwait syscall tracepoints")
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("reading the kernel's BTF: %w", err)
	}
	for _, tp := range []string{"sock_send_length", "sk_data_ready"} {
		if _, err := kernel.AnyTypeByName("btf_trace_" + tp); err != nil {
			return fmt.Errorf("the kernel has no sock:%s tracepoint (Linux 6.3+)", tp)
		}
	}
	return nil
}

// hostPrograms are the uprobe path's tp_btf programs: they run for every
// process on the host (the PID filter or a map lookup first), attached
// while a target is on that path.
var hostPrograms = []string{netpollProgSent, netpollProgSockState, netpollProgDataReady}

// Mechanism is the netpoll hooks' mechanism a target gets when its
// runtime allows: Uprobe, or Tracepoint when the kernel or the options
// rule the uprobe path out (UprobeWhyNot says why).
func (o *Objects) Mechanism() string {
	if o.uprobeWhyNot != nil {
		return Tracepoint
	}
	return Uprobe
}

// UprobeWhyNot says why no target takes the uprobe path; nil if they can.
func (o *Objects) UprobeWhyNot() error { return o.uprobeWhyNot }

// Targets is the map of traced processes, keyed by PID, value Target.
// Add and remove targets with AddTarget and RemoveTarget, which keep the
// PID filter in step.
func (o *Objects) Targets() *ebpf.Map { return o.coll.Maps[netpollMapTargets] }

// Probes is where a target's netpoll uprobes go: its executable (by a
// path the kernel can open, /proc/PID/exe) and the sites in it, or why
// there are none.
type Probes struct {
	Exe   string
	Sites goruntime.NetpollSites
	Err   error
}

// FindProbes finds the netpoll probe sites of bin, the executable of
// process pid at exe. funcs looks up its functions (ELF symbols, or the
// pclntab of a stripped binary); nil when neither could be read.
func FindProbes(exe string, bin *goruntime.Binary, funcs goruntime.FuncLookup) Probes {
	p := Probes{Exe: exe}
	switch {
	case bin.Offsets.GGoid == 0 || bin.Offsets.PdFd == 0:
		p.Err = errors.New("runtime.g.goid or pollDesc.fd offsets unknown")
	case !bin.RegisterArgs():
		p.Err = fmt.Errorf("%s on %s passes arguments on the stack", bin.GoVersion, bin.Arch)
	case funcs == nil:
		p.Err = errors.New("no symbol table read")
	}
	if p.Err != nil {
		return p
	}
	f, err := elf.Open(exe)
	if err != nil {
		p.Err = err
		return p
	}
	defer f.Close()
	p.Sites, p.Err = goruntime.FindNetpollSites(f, funcs)
	return p
}

// ProbesOf finds where pid's netpoll uprobes go: in its executable
// through /proc/PID/exe (a container's binary needs no path), with the ELF
// symbols or, for a stripped binary, the pclntab (rt's, or read now).
func ProbesOf(pid int, bin *goruntime.Binary, rt *goruntime.Process) Probes {
	exe := proc.Path(pid, "exe")
	var funcs goruntime.FuncLookup
	if f, err := elf.Open(exe); err == nil {
		funcs = goruntime.ELFFuncs(f)
		f.Close()
	}
	if funcs == nil && rt == nil {
		var err error
		if rt, err = goruntime.OpenProcess(pid, bin); err != nil {
			return Probes{Exe: exe, Err: fmt.Errorf("stripped, and its pclntab: %w", err)}
		}
	}
	if funcs == nil {
		funcs = rt.Syms.Func
	}
	return FindProbes(exe, bin, funcs)
}

// AddTarget starts tracing pid: its Target entry first, then its netpoll
// hooks: the uprobes of probes if the uprobe path is available and the
// probes were found, else the syscall tracepoints with pid's bit in their
// PID filter. It returns the mechanism and, for the syscall path, why the
// uprobe path was not taken.
func (o *Objects) AddTarget(pid uint32, t *Target, probes Probes) (mechanism string, whyNot error, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.removeLocked(pid) // a target that exec'd comes back with a new image
	if err := o.Targets().Put(pid, t); err != nil {
		return "", nil, err
	}
	whyNot = o.uprobeWhyNot
	if whyNot == nil {
		whyNot = probes.Err
	}
	if whyNot == nil {
		if whyNot = o.attachUprobes(pid, probes); whyNot == nil {
			o.paths[pid] = Uprobe
			return Uprobe, nil, nil
		}
	}
	if err := o.attachSyscalls(); err != nil {
		o.Targets().Delete(pid)
		return "", nil, err
	}
	if err := o.setBit(netpollMapTracedPids, pid, true); err != nil {
		o.Targets().Delete(pid)
		return "", nil, err
	}
	o.paths[pid] = Tracepoint
	return Tracepoint, whyNot, nil
}

// attachUprobes puts the two uprobes into pid's executable, and attaches
// the host programs and sets pid's bit in their filter.
func (o *Objects) attachUprobes(pid uint32, p Probes) error {
	ex, err := link.OpenExecutable(p.Exe)
	if err != nil {
		return err
	}
	var links []link.Link
	for _, u := range []struct {
		prog string
		site goruntime.Site
	}{
		{netpollProgUprobePark, p.Sites.Park},
		{netpollProgUprobeResume, p.Sites.Resume},
	} {
		l, err := ex.Uprobe("", o.coll.Programs[u.prog], &link.UprobeOptions{Address: u.site.FileOffset, PID: int(pid)})
		if err != nil {
			bpfobj.CloseAll(links)
			return fmt.Errorf("attaching a uprobe at %#x (%s): %w", u.site.Addr, u.site.Inst, err)
		}
		links = append(links, l)
	}
	if o.sendLinks == nil {
		for _, prog := range hostPrograms {
			l, err := link.AttachTracing(link.TracingOptions{Program: o.coll.Programs[prog]})
			if err != nil {
				bpfobj.CloseAll(links)
				bpfobj.CloseAll(o.sendLinks)
				o.sendLinks = nil
				return fmt.Errorf("attaching %s: %w", prog, err)
			}
			o.sendLinks = append(o.sendLinks, l)
		}
	}
	if err := o.setBit(netpollMapProbedPids, pid, true); err != nil {
		bpfobj.CloseAll(links)
		return err
	}
	o.uprobes[pid] = links
	return nil
}

// attachSyscalls attaches the syscall tracepoints if they are not yet.
func (o *Objects) attachSyscalls() error {
	if o.syscallLinks != nil {
		return nil
	}
	links, err := bpfobj.AttachTracepoints(o.spec, o.coll.Programs)
	if err != nil {
		return err
	}
	o.syscallLinks = links
	return nil
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
// The hooks no target needs any more are detached: a tracer with no
// target on the syscall path costs the host's syscalls nothing.
func (o *Objects) RemoveTarget(pid uint32) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.removeLocked(pid)
}

func (o *Objects) removeLocked(pid uint32) error {
	bpfobj.CloseAll(o.uprobes[pid])
	delete(o.uprobes, pid)
	delete(o.paths, pid)
	for _, m := range []string{netpollMapTracedPids, netpollMapProbedPids} {
		if err := o.setBit(m, pid, false); err != nil {
			return err
		}
	}
	if err := o.Targets().Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	var syscalls, uprobes bool
	for _, path := range o.paths {
		syscalls = syscalls || path == Tracepoint
		uprobes = uprobes || path == Uprobe
	}
	if !syscalls {
		bpfobj.CloseAll(o.syscallLinks)
		o.syscallLinks = nil
	}
	if !uprobes {
		bpfobj.CloseAll(o.sendLinks)
		o.sendLinks = nil
	}
	return nil
}

// setBit flips pid's bit in a PID filter (traced_pids or probed_pids).
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
	for _, links := range o.uprobes {
		bpfobj.CloseAll(links)
	}
	bpfobj.CloseAll(o.syscallLinks)
	bpfobj.CloseAll(o.sendLinks)
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
			Header:       hdr,
			FD:           r.Fd,
			Mode:         modes[netpollMode(r.Mode)],
			Kind:         kinds[netpollWaitKind(r.Kind)],
			Addrs:        bpfobj.Addrs(r.Addrs.Family, r.Addrs.Saddr, r.Addrs.Daddr, r.Addrs.Sport, r.Addrs.Dport),
			WaitNs:       r.WaitNs,
			IoWaitNs:     r.IoWaitNs,
			SchedDelayNs: r.SchedDelayNs,
			ReadySeen:    r.ReadySeen != 0,
			ParkTID:      r.ParkTid,
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
