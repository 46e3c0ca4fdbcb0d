package netpoll

import (
	"math"
	"time"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// TargetOf is the Target for p, a Go program built as bin: what AddTarget
// puts in the kernel filter, for the tracer and for `gonetscope profile`
// alike. A negative minWait sends no events at all. ns says whether p lives
// in a PID namespace of its own, where the Go runtime's thread ids
// (m.procid) are that namespace's.
func TargetOf(p proc.Process, ns proc.Namespaces, bin *goruntime.Binary, minWait time.Duration) Target {
	mw := uint64(math.MaxUint64)
	if minWait >= 0 {
		mw = uint64(minWait.Nanoseconds())
	}
	// NSpid lists the ids from gonetscope's namespace (the host's) down.
	var level uint8
	if ns.InPIDNamespace() {
		level = uint8(len(ns.NSpid) - 1)
	}
	return Target{
		PidnsLevel: level,
		StartTicks: p.StartTicks,
		MinWaitNs:  mw,
		G_goid:     bin.Offsets.GGoid,
		G_m:        bin.Offsets.GM,
		M_procid:   bin.Offsets.MProcid,
		G_stackLo:  bin.Offsets.GStackLo,
		G_stackHi:  bin.Offsets.GStackHi,
		PdFd:       bin.Offsets.PdFd,
		PdFdseq:    bin.Offsets.PdFdseq,
		PdTagShr:   bin.PollTag.Shr,
		PdTagShl:   bin.PollTag.Shl,
		PdRd:       bin.Offsets.PdRd,
		PdWd:       bin.Offsets.PdWd,
	}
}
