// Package execwatch loads bpf/execwatch.bpf.c: it notices a traced process
// that replaces its image by exec(2). The kernel side takes the process
// out of the targets map at sched:sched_process_exec (nothing reads the new
// image's goroutines at the old image's offsets) and counts the exec;
// the tracer polls Execs and re-inspects the process.
package execwatch

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
)

// Objects is the loaded program and its map.
type Objects struct {
	prog  *ebpf.Program
	execs *ebpf.Map
	link  link.Link
}

// Load loads and attaches the exec tracepoint; targets is the shared map of
// traced processes (netpoll.Objects.Targets).
func Load(targets *ebpf.Map) (*Objects, error) {
	spec, err := loadExecwatch()
	if err != nil {
		return nil, err
	}
	var objs struct {
		Prog  *ebpf.Program `ebpf:"execwatch_exec"`
		Execs *ebpf.Map     `ebpf:"execs"`
	}
	if err := bpfobj.LoadAndAssign(spec, &objs, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{execwatchMapTargets: targets},
	}); err != nil {
		return nil, bpfobj.LoadError("execwatch BPF object", err)
	}
	l, err := link.Tracepoint("sched", "sched_process_exec", objs.Prog, nil)
	if err != nil {
		objs.Prog.Close()
		objs.Execs.Close()
		return nil, fmt.Errorf("attaching sched:sched_process_exec: %w", err)
	}
	return &Objects{prog: objs.Prog, execs: objs.Execs, link: l}, nil
}

// Execs counts pid's execs since Reset.
func (o *Objects) Execs(pid int) uint64 {
	var n uint64
	if err := o.execs.Lookup(uint32(pid), &n); err != nil {
		return 0
	}
	return n
}

// Reset forgets pid's execs (it was attached or detached).
func (o *Objects) Reset(pid int) {
	if err := o.execs.Delete(uint32(pid)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return
	}
}

// Close detaches and unloads.
func (o *Objects) Close() error {
	o.link.Close()
	o.prog.Close()
	return o.execs.Close()
}
