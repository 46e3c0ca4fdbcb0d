package goruntime

import (
	"debug/elf"
	"errors"
	"fmt"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
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
	if funcs == nil {
		return Site{}, errors.New("no symbol table")
	}
	start, end, ok := funcs(caller)
	if !ok {
		return Site{}, fmt.Errorf("no function %s", caller)
	}
	target, _, ok := funcs(callee)
	if !ok {
		return Site{}, fmt.Errorf("no function %s", callee)
	}
	code, err := Code(f, start, end)
	if err != nil {
		return Site{}, err
	}
	prog := ExecProg(f, start, end)
	site := func(pc uint64, text string) Site {
		return Site{Addr: pc, FileOffset: pc - prog.Vaddr + prog.Off, Inst: text}
	}
	var found []Site
	switch f.Machine {
	case elf.EM_AARCH64:
		// Fixed 4-byte instructions; BL's operand is relative to itself.
		for pc := start; pc+4 <= end; pc += 4 {
			inst, err := arm64asm.Decode(code[pc-start : pc-start+4])
			if err != nil || inst.Op != arm64asm.BL {
				continue
			}
			if rel, ok := inst.Args[0].(arm64asm.PCRel); ok && uint64(int64(pc)+int64(rel)) == target {
				found = append(found, site(pc, inst.String()))
			}
		}
	case elf.EM_X86_64:
		for pc := start; pc < end; {
			inst, err := x86asm.Decode(code[pc-start:], 64)
			if err != nil {
				pc++ // padding: keep going
				continue
			}
			next := pc + uint64(inst.Len)
			if rel, ok := inst.Args[0].(x86asm.Rel); ok && inst.Op == x86asm.CALL && uint64(int64(next)+int64(rel)) == target {
				found = append(found, site(pc, x86asm.GoSyntax(inst, pc, nil)))
			}
			pc = next
		}
	default:
		return Site{}, fmt.Errorf("machine %v not supported", f.Machine)
	}
	if len(found) != 1 {
		return Site{}, fmt.Errorf("%s: want one call of %s, found %d: runtime layout not known", caller, callee, len(found))
	}
	return found[0], nil
}
