package tracer

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// socketCalls hooks accept4, connect and getsockopt (bpfobj.SocketCalls)
// with uprobes in each target where the kernel has no fentry for them:
// netpoll, tcp and acceptq each have programs for them, and the syscall
// tracepoints that would serve instead put every thread on the host on the
// slow syscall entry while attached. A target that cannot have the uprobes
// (its symbol table unreadable: Go before 1.20) gets the syscall
// tracepoints, which then serve it alone, and its attached event says so.
// Where epoll_wait events are asked for on the sock path, it places
// netpoll's uprobes on the netpoller's epoll_pwait too.
type socketCalls struct {
	// progs are every object's uprobe programs; nil where fentry serves,
	// or the netpoll waits come from syscall tracepoints anyway.
	progs []bpfobj.CallUprobe
	// epoll are netpoll's programs for epoll_pwait, or nil.
	epoll []bpfobj.CallUprobe
	// syscallTargets counts the targets the syscall tracepoints serve
	// (where progs is nil: every target); they are attached while it is
	// not zero.
	syscallTargets int
}

// attach places the uprobes in p, whose runtime reader is rt (nil if it
// could not be opened): links are the socket calls' (why, where p cannot
// have them: the syscall tracepoints then serve it; none and no why for a
// program that makes none of the calls) and epoll_pwait's (why, where p
// cannot have them: it has no epoll_wait events).
func (s *socketCalls) attach(p proc.Process, rt *goruntime.Process) (calls, epoll []link.Link, callsWhyNot, epollWhyNot error) {
	callsWhyNot, epollWhyNot = errNotAsked, errNotAsked
	if s.progs == nil && s.epoll == nil {
		return nil, nil, callsWhyNot, epollWhyNot
	}
	if rt == nil {
		err := errors.New("its symbol table could not be read")
		return nil, nil, err, err
	}
	f, err := rt.OpenExe()
	if err != nil {
		return nil, nil, err, err
	}
	defer f.Close()
	ex, err := link.OpenExecutable(rt.ExePath())
	if err != nil {
		return nil, nil, err, err
	}
	if s.progs != nil {
		var sites map[string]goruntime.SyscallSites
		if sites, callsWhyNot = goruntime.SocketSyscallSites(f, rt.Syms.Func, rt.Bin.GoVersion); callsWhyNot == nil {
			calls, callsWhyNot = attachAt(ex, p.PID, s.progs, sites)
		}
	}
	if s.epoll != nil {
		var sites goruntime.SyscallSites
		if sites, epollWhyNot = goruntime.EpollWaitSites(f, rt.Syms.Func); epollWhyNot == nil {
			epoll, epollWhyNot = attachAt(ex, p.PID, s.epoll, map[string]goruntime.SyscallSites{goruntime.EpollPwait: sites})
		}
	}
	return calls, epoll, callsWhyNot, epollWhyNot
}

// errNotAsked: no uprobes of that kind serve on this kernel or with these
// options.
var errNotAsked = errors.New("not asked for")

// attachAt attaches each of progs at its sites in ex for pid. The returns
// before the calls: the arguments a call saves are always read at its
// return.
func attachAt(ex *link.Executable, pid int, progs []bpfobj.CallUprobe, sites map[string]goruntime.SyscallSites) ([]link.Link, error) {
	var links []link.Link
	for _, ret := range []bool{true, false} {
		for _, up := range progs {
			if up.At.Return != ret {
				continue
			}
			at := sites[up.At.Syscall].Calls
			if ret {
				at = sites[up.At.Syscall].Returns
			}
			for _, site := range at {
				l, err := ex.Uprobe("", up.Prog, &link.UprobeOptions{Address: site.FileOffset, PID: pid})
				if err != nil {
					bpfobj.CloseAll(links)
					return nil, fmt.Errorf("attaching a uprobe at %#x (%s): %w", site.Addr, site.Inst, err)
				}
				links = append(links, l)
			}
		}
	}
	return links, nil
}

// SocketCallsLimit starts the limits entry of a target whose accept4,
// connect and getsockopt get the syscall tracepoints where the others'
// have uprobes; SyscallEntryLimit follows it.
const SocketCallsLimit = "no uprobes for accept4, connect and getsockopt: "

// EpollUprobeLimit starts the limits entry of a target that gets no
// epoll_wait events where they were asked for.
const EpollUprobeLimit = "no epoll_wait events: "

// hookCalls hooks tg's socket calls: with uprobes where they serve and
// tg can have them (tg.calls), else by holding the syscall tracepoints,
// attached with the first target that needs them; and the netpoller's
// epoll_pwait where that is asked for. The limits say what tg goes
// without. t.mu is held.
func (t *Tracer) hookCalls(tg *target) (limits []string, err error) {
	calls, epoll, callsWhyNot, epollWhyNot := t.calls.attach(tg.proc, tg.rt)
	tg.calls = slices.Concat(calls, epoll)
	if epollWhyNot != nil && t.calls.epoll != nil {
		limits = append(limits, EpollUprobeLimit+epollWhyNot.Error())
	}
	if callsWhyNot == nil { // maybe no link: a program that makes none of the calls
		tg.callsUprobe = true
		return limits, nil
	}
	if t.calls.progs != nil {
		limits = append(limits, SocketCallsLimit+callsWhyNot.Error())
	}
	if t.calls.syscallTargets == 0 {
		if err := t.setTraced(true); err != nil {
			bpfobj.CloseAll(tg.calls)
			tg.calls = nil
			return nil, err
		}
	}
	t.calls.syscallTargets++
	tg.syscalls = true
	return limits, nil
}

// unhookCalls undoes hookCalls; twice is once. t.mu is held.
func (t *Tracer) unhookCalls(tg *target) {
	bpfobj.CloseAll(tg.calls)
	tg.calls, tg.callsUprobe = nil, false
	if tg.syscalls {
		tg.syscalls = false
		if t.calls.syscallTargets--; t.calls.syscallTargets == 0 {
			t.setTraced(false)
		}
	}
}
