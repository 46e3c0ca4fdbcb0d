package tracer

import (
	"slices"

	"github.com/cilium/ebpf/btf"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
)

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
