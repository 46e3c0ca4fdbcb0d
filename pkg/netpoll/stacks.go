package netpoll

import (
	"fmt"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
)

// StackSample is one user stack at which a process's goroutines resumed
// from netpoll waits, with the waits' total time and its two parts.
type StackSample struct {
	Mode         string
	Stack        []uint64 // leaf first
	Count        uint64
	WaitNs       uint64
	IoWaitNs     uint64
	SchedDelayNs uint64
}

// EnableStacks starts recording the stacks of pid's netpoll waits (every
// wait, whatever the target's min_wait). Load needs Options.StackTraces.
func (o *Objects) EnableStacks(pid int) error {
	var one uint32 = 1
	if err := o.coll.Maps[netpollMapStackPids].Put(uint32(pid), one); err != nil {
		return fmt.Errorf("enabling netpoll stacks of PID %d: %w", pid, err)
	}
	return nil
}

// Stacks reads the netpoll wait stacks recorded for pid, and how many
// waits could not keep their stack.
func (o *Objects) Stacks(pid int) ([]StackSample, uint64, error) {
	var (
		k   netpollNetpollStackKey
		v   netpollNetpollStackValue
		out []StackSample
	)
	traces := o.coll.Maps[netpollMapNetpollStackTraces]
	it := o.coll.Maps[netpollMapNetpollStacks].Iterate()
	for it.Next(&k, &v) {
		if k.Pid != uint32(pid) {
			continue
		}
		stack, err := bpfobj.ReadStack(traces, k.StackId)
		if err != nil {
			continue
		}
		out = append(out, StackSample{Mode: ModeName(uint8(k.Mode)), Stack: stack, Count: v.Count,
			WaitNs: v.WaitNs, IoWaitNs: v.IoWaitNs, SchedDelayNs: v.SchedDelayNs})
	}
	if err := it.Err(); err != nil {
		return nil, 0, fmt.Errorf("reading netpoll stacks: %w", err)
	}
	lost, err := bpfobj.SumPerCPU(o.coll.Maps[netpollMapNetpollStacksLost], 0)
	if err != nil {
		return nil, 0, fmt.Errorf("reading lost netpoll stacks: %w", err)
	}
	return out, lost, nil
}
