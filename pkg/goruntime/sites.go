package goruntime

import (
	"debug/elf"
	"errors"
	"fmt"
	"go/version"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// Site is an instruction of a Go binary where a uprobe goes. gonetscope
// probes only instructions the kernel emulates instead of single-stepping
// them out of line (about 10x cheaper, see kernel-facts): CALL and Jcc on
// amd64 (arch/x86/kernel/uprobes.c), BL and the conditional branches on
// arm64 (arch/arm64/kernel/probes/simulate-insn.c).
type Site struct {
	Addr       uint64 // link-time address of the instruction
	FileOffset uint64 // what the kernel's uprobe takes
	Inst       string // the instruction, for the record
}

// FuncLookup finds the link-time address range [entry, end) of a function
// by name: symtab.Table.Func, or ELFFuncs for a binary that kept its
// symbol table.
type FuncLookup func(name string) (entry, end uint64, ok bool)

// ELFFuncs looks functions up in f's ELF symbol table; nil when f is
// stripped. Unlike the pclntab (symtab), it needs no process memory and
// reads every Go version.
func ELFFuncs(f *elf.File) FuncLookup {
	syms, err := f.Symbols()
	if err != nil || len(syms) == 0 {
		return nil
	}
	funcs := map[string][2]uint64{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
			funcs[s.Name] = [2]uint64{s.Value, s.Value + s.Size}
		}
	}
	return func(name string) (uint64, uint64, bool) {
		r, ok := funcs[name]
		return r[0], r[1], ok
	}
}

// inst is one decoded instruction.
type inst struct {
	pc, next uint64
	call     bool   // CALL or BL
	target   uint64 // of a direct call or branch
	cond     bool   // a conditional branch
	ends     bool   // RET or an unconditional jump: the straight line ends
	text     string
}

// decode decodes the code of [start, end) in f.
func decode(f *elf.File, start, end uint64) ([]inst, *elf.Prog, error) {
	code, err := Code(f, start, end)
	if err != nil {
		return nil, nil, err
	}
	prog := ExecProg(f, start, end)
	var out []inst
	switch f.Machine {
	case elf.EM_AARCH64:
		for pc := start; pc+4 <= end; pc += 4 {
			d, err := arm64asm.Decode(code[pc-start : pc-start+4])
			in := inst{pc: pc, next: pc + 4}
			if err == nil {
				in.text = d.String()
				rel, isRel := d.Args[0].(arm64asm.PCRel)
				if len(d.Args) > 1 {
					for _, a := range d.Args[1:] {
						if r, ok := a.(arm64asm.PCRel); ok {
							rel, isRel = r, true
						}
					}
				}
				if isRel {
					in.target = uint64(int64(pc) + int64(rel))
				}
				switch d.Op {
				case arm64asm.BL:
					in.call = true
				case arm64asm.CBZ, arm64asm.CBNZ, arm64asm.TBZ, arm64asm.TBNZ:
					in.cond = true
				case arm64asm.B:
					// B.cond carries its condition as the first argument.
					_, in.cond = d.Args[0].(arm64asm.Cond)
					in.ends = !in.cond
				case arm64asm.RET, arm64asm.BR:
					in.ends = true
				}
			}
			out = append(out, in)
		}
	case elf.EM_X86_64:
		for pc := start; pc < end; {
			d, err := x86asm.Decode(code[pc-start:], 64)
			if err != nil {
				pc++ // padding: keep going
				continue
			}
			in := inst{pc: pc, next: pc + uint64(d.Len), text: x86asm.GoSyntax(d, pc, nil)}
			if rel, ok := d.Args[0].(x86asm.Rel); ok {
				in.target = uint64(int64(in.next) + int64(rel))
			}
			switch d.Op {
			case x86asm.CALL:
				in.call = true
			case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE,
				x86asm.JL, x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO,
				x86asm.JP, x86asm.JS:
				in.cond = true
			case x86asm.JMP, x86asm.RET:
				in.ends = true
			}
			out = append(out, in)
			pc = in.next
		}
	default:
		return nil, nil, fmt.Errorf("machine %v not supported", f.Machine)
	}
	return out, prog, nil
}

func (in inst) site(prog *elf.Prog) Site {
	return Site{Addr: in.pc, FileOffset: in.pc - prog.Vaddr + prog.Off, Inst: in.text}
}

// CallSite finds the one direct call of callee in caller: the uprobe there
// sees callee's arguments in registers (Go's ABIInternal), and the caller's
// g in R14 (amd64) or R28 (arm64).
func CallSite(f *elf.File, funcs FuncLookup, caller, callee string) (Site, error) {
	sites, err := callSites(f, funcs, caller, callee, 0)
	if err != nil {
		return Site{}, err
	}
	return sites[0].call, nil
}

// CallAndBranch finds the one direct call of callee in caller and the
// first conditional branch after it, within the next few instructions and
// with no other call or jump before it: the branch runs right after callee
// returns, on the same goroutine, with callee's first result in AX (R0)
// unless an instruction between changed it. Never a uretprobe: those
// corrupt Go's moving stacks.
func CallAndBranch(f *elf.File, funcs FuncLookup, caller, callee string) (call, branch Site, err error) {
	sites, err := callSites(f, funcs, caller, callee, 3)
	if err != nil {
		return Site{}, Site{}, err
	}
	if sites[0].branch == nil {
		return Site{}, Site{}, fmt.Errorf("%s: no conditional branch right after the call of %s: runtime layout not known", caller, callee)
	}
	return sites[0].call, *sites[0].branch, nil
}

type callSite struct {
	call   Site
	branch *Site
}

func callSites(f *elf.File, funcs FuncLookup, caller, callee string, within int) ([]callSite, error) {
	if funcs == nil {
		return nil, errors.New("no symbol table")
	}
	start, end, ok := funcs(caller)
	if !ok {
		return nil, fmt.Errorf("no function %s", caller)
	}
	target, _, ok := funcs(callee)
	if !ok {
		return nil, fmt.Errorf("no function %s", callee)
	}
	insts, prog, err := decode(f, start, end)
	if err != nil {
		return nil, err
	}
	var found []callSite
	for i, in := range insts {
		if !in.call || in.target != target {
			continue
		}
		cs := callSite{call: in.site(prog)}
		for j := i + 1; j < len(insts) && j <= i+within; j++ {
			if insts[j].call || insts[j].ends {
				break
			}
			if insts[j].cond {
				s := insts[j].site(prog)
				cs.branch = &s
				break
			}
		}
		found = append(found, cs)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%s: want one call of %s, found %d: runtime layout not known", caller, callee, len(found))
	}
	return found, nil
}

// NetpollSites are where the netpoll uprobes go in a Go binary: where a
// goroutine parks in the netpoller, and where it runs again.
type NetpollSites struct {
	// Park: CALL runtime.netpollblock(pd, mode, waitio) in
	// poll_runtime_pollWait, after a read, write, accept or connect said
	// EAGAIN. pd and mode ('r' or 'w') are the first two arguments.
	Park Site
	// Resume: the conditional branch right after netpollblock returns,
	// on the goroutine that parked, running again.
	Resume Site
}

// FindNetpollSites finds the netpoll probe sites of f. The runtime has
// called these functions the same since Go 1.17 (poll_runtime_pollWait is
// linknamed into internal/poll); an error means this runtime's layout is
// not known.
func FindNetpollSites(f *elf.File, funcs FuncLookup) (NetpollSites, error) {
	var s NetpollSites
	var err error
	for _, waiter := range []string{"internal/poll.runtime_pollWait", "runtime.poll_runtime_pollWait"} {
		if s.Park, s.Resume, err = CallAndBranch(f, funcs, waiter, "runtime.netpollblock"); err == nil {
			break
		}
	}
	return s, err
}

// RegisterArgs reports whether b's functions take their arguments in
// registers (Go's ABIInternal), as the probes at call sites read them:
// from Go 1.17 on amd64, 1.18 on arm64.
func (b *Binary) RegisterArgs() bool {
	first := "go1.17"
	if b.Arch == "arm64" {
		first = "go1.18"
	}
	lang := version.Lang(b.GoVersion)
	return version.IsValid(lang) && version.Compare(lang, first) >= 0
}
