package tracer

import (
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/netpoll"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// Attach starts tracing pid and queues its attached event.
func (t *Tracer) Attach(pid int) (*event.Attached, error) {
	defer goruntime.TightGC()()
	p, bin, err := goruntime.InspectPID(pid)
	if err != nil {
		return nil, err
	}
	// Reading the binary's DWARF leaves a few MB of garbage: returned at
	// once, attaching does not raise the daemon's RSS for good.
	defer debug.FreeOSMemory()
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.targets[pid]; ok {
		return nil, fmt.Errorf("PID %d is already traced", pid)
	}
	return t.install(p, bin, "")
}

// install puts p, a Go program built as bin, into the kernel filter with
// its offsets, attaches the features to it, and queues its attached event
// (reason "exec" when it replaced its image). t.mu is held.
func (t *Tracer) install(p proc.Process, bin *goruntime.Binary, reason string) (*event.Attached, error) {
	pid := p.PID
	ns, err := proc.ReadNamespaces(pid)
	if err != nil {
		return nil, fmt.Errorf("reading the namespaces of PID %d: %w", pid, err)
	}
	v := netpoll.TargetOf(p, ns, bin, t.opts.MinWait)
	// Goroutine ids are checked against the thread's id there only where
	// the goroutine's stack bounds are unknown (bpf/gonetscope.h read_goid).
	if ns.InPIDNamespace() && v.G_goid != 0 && v.G_stackHi == 0 && !nsThreadIDsReadable() {
		bin.Limits = append(bin.Limits, "no goroutine ids and no netpoll_wait: the target is in a PID namespace of its own, and this kernel's BTF lacks task_struct.thread_pid or pid.numbers to find its threads' ids there")
	}
	// One reader of the target's runtime, opened here, for every feature
	// and the metrics (the symbol table is mapped, not read, so this is
	// cheap even for a large binary).
	rt, err := goruntime.OpenProcess(pid, bin)
	if err != nil {
		rt = nil
		if t.opts.Stacks || t.opts.Goroutines || t.opts.Requests {
			bin.Limits = append(bin.Limits, fmt.Sprintf("no stacks, goroutine tracking or request tracing: %v", err))
		}
	} else if t.opts.Stacks {
		v.Stacks = 1
	}
	t.execs.Reset(pid)
	tg := &target{proc: p, ns: ns, bin: bin, exe: bin.Path, since: time.Now(), rt: rt}
	if exe, err := os.Readlink(p.ExePath()); err == nil {
		tg.exe = exe
	}
	// Before the target is in the filter: whether its accept4 and
	// connect have uprobes is in its entry there.
	callsLimits, err := t.hookCalls(tg)
	if err != nil {
		return nil, err
	}
	if tg.callsUprobe {
		v.CallsUprobe = 1
	}
	// Connections accepted before attach, so their idle waits are known
	// as idle; the accept4 hook marks the later ones.
	if err := t.netpoll.SeedAccepted(uint32(pid), proc.AcceptedFDs(pid)); err != nil {
		t.unhookCalls(tg)
		return nil, err
	}
	if err := t.netpoll.AddTarget(uint32(pid), &v); err != nil {
		t.unhookCalls(tg)
		return nil, fmt.Errorf("adding PID %d to the kernel filter: %w", pid, err)
	}
	// The process may have exited, and its PID been reused, while we read it.
	if !p.Alive() {
		t.unhookCalls(tg)
		t.netpoll.RemoveTarget(uint32(pid))
		return nil, fmt.Errorf("no process with PID %d: it exited during attach", pid)
	}
	for i, f := range t.features {
		if f.attach == nil {
			continue
		}
		if err := f.attach(tg); err != nil {
			t.detachFeatures(tg, t.features[:i])
			t.unhookCalls(tg)
			t.netpoll.RemoveTarget(uint32(pid))
			return nil, err
		}
	}
	if ns.InPIDNamespace() {
		t.nsPIDs.Store(uint32(pid), uint32(ns.NsPID()))
	}
	if rt != nil {
		t.syms[pid] = rt.Syms
	}
	if !t.opts.noExitWatch {
		tg.exit = watchExit(p, t.exited)
	}
	t.targets[pid] = tg
	hooks := t.Hooks()
	if tg.syscalls && t.calls.progs != nil {
		hooks[bpfobj.SocketCalls] = bpfobj.HooksTracepoint
	}
	limits := slices.Concat(bin.Limits, callsLimits)
	ev := &event.Attached{
		Header:      controlHeader("attached", tg),
		Namespaces:  map[string]uint64{"pid": ns.PID, "mnt": ns.Mnt, "net": ns.Net, "cgroup": ns.Cgroup},
		ContainerID: ns.ContainerID,
		Exe:         tg.exe,
		GoVersion:   bin.GoVersion,
		OffsetsFrom: bin.OffsetsFrom,
		Hooks:       hooks,
		MinWaitNs:   v.MinWaitNs,
		Limits:      t.limits(limits, hooks),
		Reason:      reason,
	}
	t.queueControl(ev)
	return ev, nil
}

// detachFeatures detaches fs from tg, the last attached first.
func (t *Tracer) detachFeatures(tg *target, fs []feature) {
	for _, f := range slices.Backward(fs) {
		if f.detach != nil {
			f.detach(tg)
		}
	}
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
		t.detachFeatures(tg, t.features)
		t.unhookCalls(tg)
		delete(t.targets, pid)
		delete(t.syms, pid)
		p, bin, err := goruntime.InspectPID(pid)
		if err == nil {
			_, err = t.install(p, bin, event.ReasonExec)
		}
		if err != nil {
			t.targets[pid] = tg
			t.detachLocked(pid, event.ReasonExec)
			continue
		}
		tg.exit.Close() // the new image's target watches the same process
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

// SyscallEntryLimit is the limits entry on the sock path where accept4,
// connect and getsockopt have syscall tracepoints.
const SyscallEntryLimit = "accept4, connect and getsockopt are hooked with syscall tracepoints: " +
	"while anything is traced, every syscall of every process on the host takes the slow entry path (TIF_SYSCALL_TRACEPOINT); " +
	"reads and writes pay only the socket tracepoints' PID filter"

// limits is what the attached event lists as switched off or costly for
// a target: the binary's limits, and what its hooks cost the host.
func (t *Tracer) limits(bin []string, hooks map[string]string) []string {
	out := slices.Clone(bin)
	if hooks["netpoll"] == netpoll.Tracepoint {
		out = append(out, SyscallTracepointLimit)
		if why := t.netpoll.SockWhyNot(); why != nil {
			out = append(out, NetpollSockWhyNot+why.Error())
		}
	} else if hooks[bpfobj.SocketCalls] == bpfobj.HooksTracepoint {
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
	t.detachFeatures(tg, t.features)
	t.unhookCalls(tg)
	t.execs.Reset(pid)
	if err := t.netpoll.RemoveTarget(uint32(pid)); err != nil {
		return fmt.Errorf("removing PID %d from the kernel filter: %w", pid, err)
	}
	t.queueControl(&event.Detached{Header: controlHeader("detached", tg), Reason: reason})
	return nil
}

// setTraced tells the features whether a target needs the syscall
// tracepoints (feature.trace; hookCalls); if one cannot start, those told
// before are told false again.
func (t *Tracer) setTraced(on bool) error {
	for i, f := range t.features {
		if f.trace == nil {
			continue
		}
		if err := f.trace(on); err != nil && on {
			for _, g := range t.features[:i] {
				if g.trace != nil {
					g.trace(false)
				}
			}
			return fmt.Errorf("attaching the syscall tracepoints: %w", err)
		}
	}
	return nil
}

func (t *Tracer) detachAll(reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid := range t.targets {
		t.detachLocked(pid, reason)
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

// controlHeader is the header of an event about tg as a whole.
func controlHeader(name string, tg *target) event.Header {
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

// queueControl queues an attached or detached event for Run, which writes
// it after the events the kernel produced before it. t.mu is held.
func (t *Tracer) queueControl(ev event.Event) {
	t.control = append(t.control, ev)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}
