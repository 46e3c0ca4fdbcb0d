package tracer

import (
	"math"
	"slices"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/netpoll"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// KernelTarget is the BPF-side description of p (struct target): what
// Attach puts in the kernel filter, and what a netpoll object loaded
// outside a Tracer needs, as `gonetscope profile` does. A negative minWait
// sends no events at all. ns says whether p lives in a PID namespace of its
// own, where the Go runtime's thread ids (m.procid) are that namespace's.
func KernelTarget(p proc.Process, ns proc.Namespaces, bin *goruntime.Binary, minWait time.Duration) netpoll.Target {
	mw := uint64(math.MaxUint64)
	if minWait >= 0 {
		mw = uint64(minWait.Nanoseconds())
	}
	// NSpid lists the ids from gonetscope's namespace (the host's) down.
	var level uint8
	if ns.InPIDNamespace() {
		level = uint8(len(ns.NSpid) - 1)
	}
	return netpoll.Target{
		PidnsLevel: level,
		StartTicks: p.StartTicks,
		MinWaitNs:  mw,
		G_goid:     bin.Offsets.GGoid,
		G_m:        bin.Offsets.GM,
		M_procid:   bin.Offsets.MProcid,
		PdFd:       bin.Offsets.PdFd,
		PdFdseq:    bin.Offsets.PdFdseq,
		PdTagShr:   bin.PollTag.Shr,
		PdTagShl:   bin.PollTag.Shl,
	}
}

// nsThreadIDsReadable reports whether the kernel's BTF has what the BPF side
// reads to find a thread's id in its own PID namespace
// (task_struct.thread_pid, pid.level and pid.numbers): without them, a
// target in a PID namespace of its own gets no goroutine ids.
func nsThreadIDsReadable() bool {
	spec, err := bpfobj.KernelSpec()
	if err != nil {
		return false
	}
	has := func(typ, member string) bool {
		var s *btf.Struct
		if err := spec.TypeByName(typ, &s); err != nil {
			return false
		}
		return slices.ContainsFunc(s.Members, func(m btf.Member) bool { return m.Name == member })
	}
	return has("task_struct", "thread_pid") && has("pid", "level") && has("pid", "numbers")
}
