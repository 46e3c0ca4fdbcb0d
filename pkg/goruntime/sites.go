package goruntime

import (
	"debug/elf"
	"fmt"
)

// Site is an instruction of a Go binary where a uprobe goes. gonetscope
// probes only instructions the kernel emulates instead of single-stepping
// them out of line (about 10x cheaper, see kernel-facts): CALL on amd64
// (arch/x86/kernel/uprobes.c), BL on arm64
// (arch/arm64/kernel/probes/simulate-insn.c).
type Site struct {
	Addr       uint64 // link-time address of the instruction
	FileOffset uint64 // what the kernel's uprobe takes
	Inst       string // the instruction, for the record
}

// FuncLookup finds the link-time address range [entry, end) of a function
// by name, such as symtab.Table.Func.
type FuncLookup func(name string) (entry, end uint64, ok bool)

// CallSite finds the one direct call of callee in caller: a uprobe there
// sees callee's arguments in registers (Go's ABIInternal: AX, BX, CX on
// amd64; R0, R1, R2 on arm64), and the caller's g in R14 (amd64) or R28
// (arm64).
func CallSite(f *elf.File, funcs FuncLookup, caller, callee string) (Site, error) {
	found, err := callsOf(f, funcs, caller, callee)
	if err != nil {
		return Site{}, err
	}
	if len(found) != 1 {
		return Site{}, fmt.Errorf("%s: want one call of %s, found %d: runtime layout not known", caller, callee, len(found))
	}
	return found[0], nil
}
