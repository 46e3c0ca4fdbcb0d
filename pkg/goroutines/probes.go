package goroutines

import (
	"debug/elf"
	"fmt"

	"golang.org/x/arch/x86/x86asm"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
)

// Probe is where a uprobe goes and which register holds the *g there.
type Probe struct {
	Addr       uint64 // link-time address of the instruction
	FileOffset uint64 // what the kernel's uprobe takes
	Inst       string // the instruction, for the record
	GReg       string // "bx" or "ax"
}

// Probes finds the two places gonetscope hooks in the runtime of f. Both
// are CALL instructions, which the kernel emulates instead of
// single-stepping (about 10x cheaper than other instructions, see
// kernel-facts): after runtime.newproc1 has made the new g, in
// runtime.newproc.func1:
//
//	CALL runtime.runqput(pp in AX, newg in BX, next in CX)
//
// and as a goroutine ends, in runtime.goexit0:
//
//	CALL runtime.gdestroy(gp in AX)
func Probes(f *elf.File, tab *symtab.Table) (create, exit Probe, err error) {
	create, err = callIn(f, tab, "runtime.newproc.func1", "runtime.runqput", "bx")
	if err != nil {
		return create, exit, err
	}
	exit, err = callIn(f, tab, "runtime.goexit0", "runtime.gdestroy", "ax")
	return create, exit, err
}

func callIn(f *elf.File, tab *symtab.Table, caller, callee, reg string) (Probe, error) {
	start, end, ok := tab.Func(caller)
	if !ok {
		return Probe{}, fmt.Errorf("no function %s", caller)
	}
	target, _, ok := tab.Func(callee)
	if !ok {
		return Probe{}, fmt.Errorf("no function %s", callee)
	}
	code, err := goruntime.Code(f, start, end)
	if err != nil {
		return Probe{}, err
	}
	prog := goruntime.ExecProg(f, start, end)
	var found []Probe
	for pc := start; pc < end; {
		inst, err := x86asm.Decode(code[pc-start:], 64)
		if err != nil {
			pc++ // padding: keep going
			continue
		}
		next := pc + uint64(inst.Len)
		if inst.Op == x86asm.CALL {
			if rel, ok := inst.Args[0].(x86asm.Rel); ok && uint64(int64(next)+int64(rel)) == target {
				found = append(found, Probe{
					Addr:       pc,
					FileOffset: pc - prog.Vaddr + prog.Off,
					Inst:       x86asm.GoSyntax(inst, pc, nil),
					GReg:       reg,
				})
			}
		}
		pc = next
	}
	if len(found) != 1 {
		return Probe{}, fmt.Errorf("%s: want one CALL %s, found %d: runtime layout not known", caller, callee, len(found))
	}
	return found[0], nil
}
