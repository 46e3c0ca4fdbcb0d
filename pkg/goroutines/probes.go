package goroutines

import (
	"debug/elf"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
)

// Probe is where a uprobe goes and which register holds the *g there.
type Probe struct {
	goruntime.Site
	GReg string // "bx" or "ax" (amd64); "r1" or "r0" (arm64): Go's second or first argument
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
	s, err := goruntime.CallSite(f, tab.Func, caller, callee)
	if err != nil {
		return Probe{}, err
	}
	return Probe{Site: s, GReg: reg}, nil
}
