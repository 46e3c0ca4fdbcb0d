package tracer

import (
	"debug/elf"
	"fmt"
	"os"

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
// (built before Go 1.19, say) gets the syscall tracepoints, which then
// serve it alone, and its attached event says so.
type socketCalls struct {
	// progs are every object's uprobe programs; nil where fentry serves,
	// or the netpoll waits come from syscall tracepoints anyway.
	progs []bpfobj.CallUprobe
	// syscallTargets counts the targets the syscall tracepoints serve
	// (where progs is nil: every target); they are attached while it is
	// not zero.
	syscallTargets int
}

// attach places the uprobes in p, whose runtime reader is rt (nil if it
// could not be opened). nil links and the reason where p cannot have
// them: the syscall tracepoints then serve it.
func (s *socketCalls) attach(p proc.Process, rt *goruntime.Process) ([]link.Link, error) {
	if rt == nil {
		return nil, fmt.Errorf("its symbol table could not be read")
	}
	exe := proc.Path(p.PID, "exe")
	fh, err := os.Open(exe)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	f, err := elf.NewFile(fh)
	if err != nil {
		return nil, err
	}
	sites, err := goruntime.SocketSyscallSites(f, rt.Syms.Func, rt.Bin.GoVersion)
	if err != nil {
		return nil, err
	}
	ex, err := link.OpenExecutable(exe)
	if err != nil {
		return nil, err
	}
	// The returns before the calls: the arguments a call saves are
	// always read at its return.
	var links []link.Link
	for _, ret := range []bool{true, false} {
		for _, up := range s.progs {
			if up.At.Return != ret {
				continue
			}
			at := sites[up.At.Syscall].Calls
			if ret {
				at = sites[up.At.Syscall].Returns
			}
			for _, site := range at {
				l, err := ex.Uprobe("", up.Prog, &link.UprobeOptions{Address: site.FileOffset, PID: p.PID})
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

// hookCalls hooks tg's socket calls: with uprobes where they serve and
// tg can have them (tg.calls), else by holding the syscall tracepoints,
// attached with the first target that needs them. why is why tg cannot
// have the uprobes where the others could. t.mu is held.
func (t *Tracer) hookCalls(tg *target) (why error, err error) {
	if t.calls.progs != nil {
		if tg.calls, why = t.calls.attach(tg.proc, tg.rt); why == nil {
			return nil, nil
		}
	}
	if t.calls.syscallTargets == 0 {
		if err := t.setTraced(true); err != nil {
			return why, err
		}
	}
	t.calls.syscallTargets++
	tg.syscalls = true
	return why, nil
}

// unhookCalls undoes hookCalls; twice is once. t.mu is held.
func (t *Tracer) unhookCalls(tg *target) {
	bpfobj.CloseAll(tg.calls)
	tg.calls = nil
	if tg.syscalls {
		tg.syscalls = false
		if t.calls.syscallTargets--; t.calls.syscallTargets == 0 {
			t.setTraced(false)
		}
	}
}
