package goruntime

import (
	"debug/elf"
	"fmt"
	"strings"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// CallSites finds every direct call of callee in caller (CallSite wants
// exactly one); an error when there is none.
func CallSites(f *elf.File, funcs FuncLookup, caller, callee string) ([]Site, error) {
	found, err := callsOf(f, funcs, caller, callee)
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("%s: no call of %s: layout not known", caller, callee)
	}
	return found, nil
}

// callsOf lists the direct calls of callee in caller, maybe none.
func callsOf(f *elf.File, funcs FuncLookup, caller, callee string) ([]Site, error) {
	insts, err := decodeFunc(f, funcs, caller)
	if err != nil {
		return nil, err
	}
	target, _, ok := funcs(callee)
	if !ok {
		return nil, fmt.Errorf("no function %s", callee)
	}
	var found []Site
	for _, in := range insts {
		if in.call == target {
			found = append(found, in.site)
		}
	}
	return found, nil
}

// AfterCalls finds, for each call in calls (in caller), where a uprobe
// sees what it returned, on an instruction the kernel emulates: the first
// NOP or conditional jump after it (NOP, B.cond, CBZ or CBNZ on arm64),
// with only compares, tests and stores, which change no general register,
// in between. None of the instructions from the return address to the
// probe may be a jump target in caller: the probe must fire only after
// this call. caller is decoded once for all of them.
func AfterCalls(f *elf.File, funcs FuncLookup, caller string, calls []Site) ([]Site, error) {
	return sitesAfter(f, funcs, caller, calls, false)
}

// CallsAndReturns finds, in caller, the direct calls of the first of
// callees it calls (CallSites; a callee renamed across versions is
// listed once per name) and after each the site that sees what it
// returned (AfterCalls).
func CallsAndReturns(f *elf.File, funcs FuncLookup, caller string, callees ...string) (calls, returns []Site, err error) {
	for _, callee := range callees {
		if calls, err = CallSites(f, funcs, caller, callee); err == nil {
			break
		}
	}
	if err != nil {
		if len(callees) > 1 {
			err = fmt.Errorf("%s calls none of %v (%w)", caller, callees, err)
		}
		return nil, nil, err
	}
	if returns, err = AfterCalls(f, funcs, caller, calls); err != nil {
		return nil, nil, err
	}
	return calls, returns, nil
}

// CallsAndExits is CallsAndReturns for a callee that caller alone calls,
// with one more way out on arm64: where no instruction after a call sees
// that call's return alone (the one right after it is where another
// branch joins: Go 1.26's (*Transport).roundTrip calls
// (*persistConn).roundTrip in one arm of an if, and the other arm's call
// jumps to the instruction after it), the returns are the callee's own
// RETs. The arm64 kernel simulates RET (simulate_br_blr_ret), and the
// result registers hold what the callee returns there as after the call;
// a probe there fires for every caller, hence the one-caller condition.
// amd64 single-steps RET: no such way out there.
func CallsAndExits(f *elf.File, funcs FuncLookup, caller string, callees ...string) (calls, returns []Site, err error) {
	calls, returns, err = CallsAndReturns(f, funcs, caller, callees...)
	if err == nil || f.Machine != elf.EM_AARCH64 {
		return calls, returns, err
	}
	for _, callee := range callees {
		c, cerr := CallSites(f, funcs, caller, callee)
		if cerr != nil {
			continue
		}
		rets, rerr := ReturnSites(f, funcs, callee)
		if rerr != nil {
			return nil, nil, fmt.Errorf("%w; %w", err, rerr)
		}
		return c, rets, nil
	}
	return nil, nil, err
}

// ReturnSites lists fn's RET instructions (arm64 code only; see
// CallsAndExits).
func ReturnSites(f *elf.File, funcs FuncLookup, fn string) ([]Site, error) {
	if f.Machine != elf.EM_AARCH64 {
		return nil, fmt.Errorf("%s: a probe on RET is single-stepped on %v", fn, f.Machine)
	}
	insts, err := decodeFunc(f, funcs, fn)
	if err != nil {
		return nil, err
	}
	var rets []Site
	for _, in := range insts {
		if strings.HasPrefix(in.site.Inst, "RET") {
			rets = append(rets, in.site)
		}
	}
	if len(rets) == 0 {
		return nil, fmt.Errorf("%s: no RET", fn)
	}
	return rets, nil
}

// ResumeSites finds, for each call in calls (in caller), where a uprobe
// fires once the goroutine runs again after the call returned: the first
// instruction after it that the kernel emulates (a NOP, a conditional or
// direct jump, a direct call; NOP, B, B.cond, CBZ, CBNZ, BL on arm64),
// with no other branch in between, and none of the instructions from the
// return address to it a jump target in caller. Unlike AfterCalls, the
// instructions in between may change registers: only g (R14, R28 on
// arm64), which Go code never changes, is read there.
func ResumeSites(f *elf.File, funcs FuncLookup, caller string, calls []Site) ([]Site, error) {
	return sitesAfter(f, funcs, caller, calls, true)
}

// sitesAfter is AfterCalls, or ResumeSites where resume is set.
func sitesAfter(f *elf.File, funcs FuncLookup, caller string, calls []Site, resume bool) ([]Site, error) {
	insts, err := decodeFunc(f, funcs, caller)
	if err != nil {
		return nil, err
	}
	targets := map[uint64]bool{}
	for _, in := range insts {
		if in.jump != 0 {
			targets[in.jump] = true
		}
	}
	var out []Site
	for _, call := range calls {
		s, err := siteAfter(insts, targets, caller, call, resume)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func siteAfter(insts []decoded, targets map[uint64]bool, caller string, call Site, resume bool) (Site, error) {
	for i, in := range insts {
		if in.site.Addr != call.Addr {
			continue
		}
		for _, next := range insts[i+1:] {
			if targets[next.site.Addr] {
				return Site{}, fmt.Errorf("%s: the instruction at %#x after the call at %#x is a jump target", caller, next.site.Addr, call.Addr)
			}
			switch {
			case next.class == classEmulated, resume && (next.call != 0 || next.jump != 0):
				return next.site, nil
			case resume && !next.branch, !resume && next.class == classNeutral:
				continue
			case resume:
				return Site{}, fmt.Errorf("%s: no emulated instruction after the call at %#x before a branch", caller, call.Addr)
			}
			return Site{}, fmt.Errorf("%s: no emulated instruction right after the call at %#x (found %s)", caller, call.Addr, next.site.Inst)
		}
	}
	return Site{}, fmt.Errorf("%s: no call at %#x", caller, call.Addr)
}

type instClass int

const (
	classOther    instClass = iota
	classEmulated           // a NOP or conditional jump: the kernel emulates it
	classNeutral            // a compare or test: writes flags only
)

type decoded struct {
	site  Site
	call  uint64 // target of a direct call, or 0
	jump  uint64 // target of a direct jump, or 0
	class instClass
	// branch: any jump, call or return, direct or not (and traps).
	branch bool
}

// decodeFunc disassembles fn.
func decodeFunc(f *elf.File, funcs FuncLookup, fn string) ([]decoded, error) {
	if funcs == nil {
		return nil, fmt.Errorf("no symbol table")
	}
	start, end, ok := funcs(fn)
	if !ok {
		return nil, fmt.Errorf("no function %s", fn)
	}
	code, err := Code(f, start, end)
	if err != nil {
		return nil, err
	}
	prog := ExecProg(f, start, end)
	site := func(pc uint64, text string) Site {
		return Site{Addr: pc, FileOffset: pc - prog.Vaddr + prog.Off, Inst: text}
	}
	var out []decoded
	switch f.Machine {
	case elf.EM_X86_64:
		for pc := start; pc < end; {
			inst, err := x86asm.Decode(code[pc-start:], 64)
			if err != nil {
				pc++
				continue
			}
			next := pc + uint64(inst.Len)
			d := decoded{site: site(pc, x86asm.GoSyntax(inst, pc, nil))}
			rel, isRel := inst.Args[0].(x86asm.Rel)
			switch op := inst.Op; {
			case op == x86asm.CALL && isRel:
				d.call = uint64(int64(next) + int64(rel))
			case op == x86asm.NOP:
				d.class = classEmulated
			case op == x86asm.TEST || op == x86asm.CMP:
				d.class = classNeutral
			case op == x86asm.MOV:
				// A store writes memory, no register.
				if _, ok := inst.Args[0].(x86asm.Mem); ok {
					d.class = classNeutral
				}
			case op >= x86asm.JA && op <= x86asm.JS && op != x86asm.JMP && op != x86asm.JCXZ && op != x86asm.JECXZ && op != x86asm.JRCXZ:
				d.class = classEmulated
			}
			if isRel && inst.Op != x86asm.CALL {
				d.jump = uint64(int64(next) + int64(rel))
			}
			switch inst.Op {
			case x86asm.CALL, x86asm.JMP, x86asm.RET, x86asm.LCALL, x86asm.LJMP, x86asm.LRET, x86asm.INT, x86asm.UD1, x86asm.UD2,
				x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE, x86asm.SYSCALL:
				d.branch = true
			}
			if d.class == classEmulated && inst.Op != x86asm.NOP {
				d.branch = true
			}
			out = append(out, d)
			pc = next
		}
	case elf.EM_AARCH64:
		for pc := start; pc+4 <= end; pc += 4 {
			inst, err := arm64asm.Decode(code[pc-start : pc-start+4])
			if err != nil {
				out = append(out, decoded{site: site(pc, "?")})
				continue
			}
			d := decoded{site: site(pc, inst.String())}
			for _, a := range inst.Args {
				if rel, ok := a.(arm64asm.PCRel); ok {
					if inst.Op == arm64asm.BL {
						d.call = uint64(int64(pc) + int64(rel))
					} else {
						d.jump = uint64(int64(pc) + int64(rel))
					}
				}
			}
			switch inst.Op {
			case arm64asm.B, arm64asm.BL, arm64asm.BR, arm64asm.BLR, arm64asm.RET, arm64asm.CBZ, arm64asm.CBNZ,
				arm64asm.TBZ, arm64asm.TBNZ, arm64asm.BRK, arm64asm.SVC:
				d.branch = true
			}
			switch inst.Op {
			case arm64asm.NOP, arm64asm.CBZ, arm64asm.CBNZ:
				d.class = classEmulated
			case arm64asm.B:
				if _, cond := inst.Args[0].(arm64asm.Cond); cond {
					d.class = classEmulated
				}
			case arm64asm.CMP, arm64asm.CMN, arm64asm.TST:
				d.class = classNeutral
			case arm64asm.STR, arm64asm.STRB, arm64asm.STRH, arm64asm.STP, arm64asm.STUR, arm64asm.STURB, arm64asm.STURH:
				// A store with plain offset addressing writes memory
				// only (as amd64's MOVs to memory); a pre- or
				// post-indexed one also writes its base register.
				for _, a := range inst.Args {
					if m, ok := a.(arm64asm.MemImmediate); ok && m.Mode == arm64asm.AddrOffset {
						d.class = classNeutral
					}
				}
			}
			out = append(out, d)
		}
	default:
		return nil, fmt.Errorf("machine %v not supported", f.Machine)
	}
	return out, nil
}

// EntryBranch finds the conditional jump of fn's stack check (JLS/JBE
// after CMPQ SP, 16(R14), or after an LEAQ of the frame's bottom for a big
// frame; on arm64 the B.LS after CMP): an instruction the kernel
// emulates where the arguments are still in their registers. It runs
// again after a stack growth, so a probe there can fire twice for one call.
func EntryBranch(f *elf.File, funcs FuncLookup, fn string) (Site, error) {
	insts, err := decodeFunc(f, funcs, fn)
	if err != nil {
		return Site{}, err
	}
	for i, in := range insts {
		if i >= 4 {
			break
		}
		if in.class == classEmulated && in.jump != 0 {
			return in.site, nil
		}
		if in.class == classNeutral || strings.HasPrefix(in.site.Inst, "LEAQ ") || strings.HasPrefix(in.site.Inst, "LDR ") || strings.HasPrefix(in.site.Inst, "SUB ") {
			continue
		}
		break
	}
	return Site{}, fmt.Errorf("%s: no stack-check branch at its entry", fn)
}
