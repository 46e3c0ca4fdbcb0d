package goroutines

import (
	"debug/elf"
	"fmt"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
)

// Probe is where a uprobe goes and which register holds the *g there.
type Probe struct {
	Addr       uint64 // link-time address of the instruction
	FileOffset uint64 // what the kernel's uprobe takes
	Inst       string // the instruction, for the record
	GReg       string // "bx" or "ax" (amd64); "r1" or "r0" (arm64): Go's second or first argument
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
//
// On arm64 the same calls are BL instructions, which the arm64 kernel
// simulates too (arch/arm64/kernel/probes/simulate-insn.c), with the
// arguments in R0, R1, R2.
func Probes(f *elf.File, tab *symtab.Table) (create, exit Probe, err error) {
	second, first := "bx", "ax"
	if f.Machine == elf.EM_AARCH64 {
		second, first = "r1", "r0"
	}
	create, err = callIn(f, tab, "runtime.newproc.func1", "runtime.runqput", second)
	if err != nil {
		return create, exit, err
	}
	exit, err = callIn(f, tab, "runtime.goexit0", "runtime.gdestroy", first)
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
	if f.Machine == elf.EM_AARCH64 {
		// Fixed 4-byte instructions; BL's operand is relative to itself.
		for pc := start; pc+4 <= end; pc += 4 {
			inst, err := arm64asm.Decode(code[pc-start : pc-start+4])
			if err != nil || inst.Op != arm64asm.BL {
				continue
			}
			if rel, ok := inst.Args[0].(arm64asm.PCRel); ok && uint64(int64(pc)+int64(rel)) == target {
				found = append(found, Probe{Addr: pc, FileOffset: pc - prog.Vaddr + prog.Off, Inst: inst.String(), GReg: reg})
			}
		}
	}
	for pc := start; pc < end && f.Machine == elf.EM_X86_64; {
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
		return Probe{}, fmt.Errorf("%s: want one call of %s, found %d: runtime layout not known", caller, callee, len(found))
	}
	return found[0], nil
}
