package goruntime

import (
	"debug/elf"
	"fmt"
	"go/version"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"

	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
)

// GlobalRule finds a runtime variable in a binary without a symbol table
// (built with -ldflags=-s): it is the Index-th distinct address that the
// code of function Func forms PC-relative (CodeAddrs), minus Addend (when
// the code refers to a field of the variable). cmd/gen-offsets finds the
// rules of each Go version in a program that has a symbol table, one per
// function that refers to the variable (up to two), checks that a PIE
// build agrees, and writes them to the table. At run time every rule of a
// variable must find the same address, so code compiled otherwise (other
// flags, another toolchain's runtime) is refused rather than read at the
// wrong place. Each GOARCH has its own rules, read from its own code.
type GlobalRule struct {
	Func   string
	Index  uint8
	Addend uint16
}

// RuntimeGlobals are the runtime variables gonetscope reads, each with the
// functions whose code refers to it, in the order cmd/gen-offsets tries
// them: functions every Go program links (the allocator's profiling path,
// the GC's start and end).
var RuntimeGlobals = []struct {
	Name  string
	Funcs []string
}{
	{"runtime.mbuckets", []string{"runtime.stkbucket", "runtime.mProf_Flush", "runtime.mProf_FlushLocked"}},
	{"runtime.MemProfileRate", []string{"runtime.nextSample", "runtime.profilealloc", "runtime.schedinit"}},
	{"runtime.mProfCycle", []string{"runtime.mProf_Malloc", "runtime.mProf_Free", "runtime.mProf_NextCycle", "runtime.mProf_Flush"}},
	{"runtime.memstats", []string{"runtime.gcMarkTermination", "runtime.gcStart", "runtime.gcTrigger.test", "runtime.(*mheap).init"}},
	{"runtime.gcController", []string{"runtime.gcStart", "runtime.gcinit", "runtime.gcMarkTermination"}},
	{"runtime.work", []string{"runtime.gcStart", "runtime.gcMarkTermination", "runtime.gcMarkDone"}},
	{"runtime.bbuckets", []string{"runtime.stkbucket", "runtime.blockProfileInternal"}},
	{"runtime.xbuckets", []string{"runtime.stkbucket", "runtime.mutexProfileInternal"}},
	{"runtime.blockprofilerate", []string{"runtime.blockevent", "runtime.blocksampled", "runtime.SetBlockProfileRate"}},
	{"runtime.mutexprofilerate", []string{"runtime.semacquire1", "runtime.unlock2", "runtime.mutexevent"}},
	{"runtime.ticks", []string{"runtime.ticksPerSecond", "runtime.tickspersecond", "runtime.(*ticksType).init", "runtime.schedinit"}},
}

// OptionalGlobals are RuntimeGlobals that cmd/gen-offsets may find no
// rule for in some Go version (no function every program links refers to
// them there): a stripped binary of that version goes without what reads
// them, and says so.
var OptionalGlobals = map[string]bool{
	"runtime.bbuckets": true, "runtime.xbuckets": true, "runtime.blockprofilerate": true,
	"runtime.mutexprofilerate": true, "runtime.ticks": true,
}

// CodeAddrs lists the distinct link-time addresses that the code of
// function fn forms PC-relative, in the order of the code: on amd64 its
// RIP-relative memory operands, on arm64 its ADRP pairs and the offsets
// loaded or stored through them (see eachAddrRef).
// They are mostly data (variables, read-only data), sometimes a function.
func CodeAddrs(f *elf.File, tab *symtab.Table, fn string) ([]uint64, error) {
	seen := map[uint64]bool{}
	var out []uint64
	err := eachAddrRef(f, tab, fn, func(r addrRef) {
		if !seen[r.addr] {
			seen[r.addr] = true
			out = append(out, r.addr)
		}
	})
	return out, err
}

// addrRef is an address that code forms PC-relative (eachAddrRef).
type addrRef struct {
	addr uint64
	// words are the addresses of the 64-bit words loaded into general
	// registers through the reference: amd64 MOV r64, [rip+d]; arm64
	// LDR Xt or LDP Xt1, Xt2 from the address formed (when the ADRP pair
	// is an ADD, through its register until that is set: arm64Uses).
	words []uint64
}

// eachAddrRef decodes the code of function fn and calls ref for each
// address it forms PC-relative, in code order:
//   - amd64: each RIP-relative memory operand (LEA, MOV, CMP...);
//   - arm64: each ADRP Rx, page followed by ADD Rx, Rx, #lo or by a load
//     or store with base Rx and offset #lo: page+lo. The linker writes an
//     address into such a pair (R_ADDRARM64), the low 12 bits folded into
//     the second instruction, which always follows the ADRP. After an ADD,
//     the addresses that loads and stores through Rx reach at an offset
//     follow (arm64Uses).
func eachAddrRef(f *elf.File, tab *symtab.Table, fn string, ref func(addrRef)) error {
	if f.Machine != elf.EM_X86_64 && f.Machine != elf.EM_AARCH64 {
		return fmt.Errorf("%v code is not read", f.Machine)
	}
	start, end, ok := tab.Func(fn)
	if !ok {
		return fmt.Errorf("no function %s", fn)
	}
	code, err := Code(f, start, end)
	if err != nil {
		return err
	}
	if f.Machine == elf.EM_AARCH64 {
		arm64AddrRefs(code, start, ref)
		return nil
	}
	for pc := start; pc < end; {
		inst, err := x86asm.Decode(code[pc-start:], 64)
		if err != nil {
			pc++
			continue
		}
		next := pc + uint64(inst.Len)
		for i, a := range inst.Args {
			if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP && m.Index == 0 {
				r := addrRef{addr: uint64(int64(next) + m.Disp)}
				if inst.Op == x86asm.MOV && i == 1 && inst.MemBytes == 8 {
					if _, ok := inst.Args[0].(x86asm.Reg); ok {
						r.words = []uint64{r.addr}
					}
				}
				ref(r)
			}
		}
		pc = next
	}
	return nil
}

// arm64AddrRefs is eachAddrRef of the arm64 code b at pc start.
func arm64AddrRefs(b []byte, start uint64, ref func(addrRef)) {
	var raw []arm64asm.Inst
	for o := 0; o+4 <= len(b); o += 4 {
		in, err := arm64asm.Decode(b[o : o+4])
		if err != nil {
			in = arm64asm.Inst{} // padding, or data
		}
		raw = append(raw, in)
	}
	for k := 0; k+1 < len(raw); k++ {
		if raw[k].Op != arm64asm.ADRP {
			continue
		}
		pc := start + uint64(4*k)
		if a, rx, n, ok := arm64Address(raw[k:], pc); ok {
			words, more := arm64Uses(raw[k+n:], rx, a)
			ref(addrRef{addr: a, words: words})
			for _, m := range more {
				ref(addrRef{addr: m})
			}
			k += n - 1
			continue
		}
		rx, _, ok1 := xReg(raw[k].Args[0])
		rel, ok2 := raw[k].Args[1].(arm64asm.PCRel)
		if !ok1 || !ok2 {
			continue
		}
		page := uint64(int64(pc&^0xfff) + int64(rel))
		if base, lo, ok := arm64MemOperand(raw[k+1]); ok && base == rx && lo >= 0 && lo < 1<<12 {
			ref(addrRef{addr: page + uint64(lo), words: arm64Words(raw[k+1], rx, page)})
			k++
		}
	}
}

// arm64MemOperand is the base register and offset of in's memory operand
// when in is a load or store with plain offset addressing.
func arm64MemOperand(in arm64asm.Inst) (reg, int64, bool) {
	for _, a := range in.Args {
		if a == nil {
			break
		}
		if base, off, ok := memOffset(a); ok {
			return base, off, true
		}
	}
	return 0, 0, false
}

// arm64Uses reads how the instructions at the start of raw use register
// rx, which holds address a (an ADRP and ADD), up to a branch or an
// instruction that sets rx, or for 16 instructions: the 64-bit words
// loaded through it (arm64Words), and the other addresses a load or store
// through it reaches (a+off, off != 0), in code order. A -buildmode=pie
// build forms such an address where a plain one folds a and a+8 into two
// loads' ADRP pairs: both list a and a+8.
func arm64Uses(raw []arm64asm.Inst, rx reg, a uint64) (words, more []uint64) {
	for _, in := range raw[:min(len(raw), 16)] {
		words = append(words, arm64Words(in, rx, a)...)
		if base, off, ok := arm64MemOperand(in); ok && base == rx && off != 0 {
			more = append(more, uint64(int64(a)+off))
		}
		switch in.Op {
		case arm64asm.STR, arm64asm.STRB, arm64asm.STRH, arm64asm.STP, arm64asm.STUR, arm64asm.CMP, arm64asm.CMN, arm64asm.TST:
			continue // reads its registers
		case arm64asm.B, arm64asm.BL, arm64asm.BLR, arm64asm.BR, arm64asm.RET, arm64asm.CBZ, arm64asm.CBNZ, arm64asm.TBZ, arm64asm.TBNZ:
			return words, more
		}
		for _, arg := range in.Args[:2] {
			if r, _, ok := xReg(arg); ok && r == rx {
				return words, more // rx is set (or, conservatively, read)
			}
		}
	}
	return words, more
}

// arm64Words are the 64-bit words that in, an LDR Xt or LDP Xt1, Xt2
// from [rx, #off], loads: at a+off (and a+off+8). Nil for anything else.
func arm64Words(in arm64asm.Inst, rx reg, a uint64) []uint64 {
	switch in.Op {
	case arm64asm.LDR:
		if _, size, ok := xReg(in.Args[0]); ok && size == 8 {
			if base, off, ok := memOffset(in.Args[1]); ok && base == rx {
				return []uint64{uint64(int64(a) + off)}
			}
		}
	case arm64asm.LDP:
		_, s1, ok1 := xReg(in.Args[0])
		_, _, ok2 := xReg(in.Args[1])
		if base, off, ok := memOffset(in.Args[2]); ok && ok1 && ok2 && s1 == 8 && base == rx {
			w := uint64(int64(a) + off)
			return []uint64{w, w + 8}
		}
	}
	return nil
}

// globalAddrs finds the link-time address of each of RuntimeGlobals in f:
// from its symbol table, else by the table's rules for its Go version.
// A variable not found has an error instead, which says why.
func globalAddrs(f *elf.File, tab *symtab.Table, b *Binary) (map[string]uint64, map[string]error) {
	addrs, errs := map[string]uint64{}, map[string]error{}
	var names []string
	for _, g := range RuntimeGlobals {
		names = append(names, g.Name)
	}
	if syms, err := symbolValues(f, names...); err == nil {
		for name, s := range syms {
			addrs[name] = s.Value
		}
	}
	e, inTable := offsetsTables[b.arch()][version.Lang(b.GoVersion)]
	for _, g := range RuntimeGlobals {
		if _, ok := addrs[g.Name]; ok {
			continue
		}
		rules := e.Globals[g.Name]
		if !inTable || len(rules) == 0 {
			errs[g.Name] = fmt.Errorf("%s has no symbol table and gonetscope's table has no way to find %s in %s code: rebuild without -ldflags=-s", b.Path, g.Name, b.GoVersion)
			continue
		}
		var found uint64
		for _, rule := range rules {
			a, err := ApplyGlobalRule(f, tab, rule)
			if err == nil && found != 0 && a != found {
				err = fmt.Errorf("%s finds %#x, %s %#x", rules[0].Func, found, rule.Func, a)
			}
			if err != nil {
				errs[g.Name] = fmt.Errorf("finding %s without a symbol table: %w: the code is not the one of %s's runtime as gonetscope knows it (other compiler flags?): rebuild without -ldflags=-s", g.Name, err, b.GoVersion)
				break
			}
			found = a
		}
		if errs[g.Name] == nil {
			addrs[g.Name] = found
		}
	}
	return addrs, errs
}

// inDataSection reports whether link-time address a is in a writable,
// allocated section that is not code (.data, .bss, .noptrdata, .noptrbss).
func inDataSection(f *elf.File, a uint64) bool {
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Flags&elf.SHF_WRITE != 0 && s.Flags&elf.SHF_EXECINSTR == 0 &&
			a >= s.Addr && a < s.Addr+s.Size {
			return true
		}
	}
	return false
}

// FindGlobalRules returns the rules that find the variable at link-time
// address sym (of size bytes) through the code of the first two of funcs
// that refer to it (cmd/gen-offsets).
func FindGlobalRules(f *elf.File, tab *symtab.Table, sym, size uint64, funcs []string) ([]GlobalRule, error) {
	var rules []GlobalRule
	for _, fn := range funcs {
		ts, err := CodeAddrs(f, tab, fn)
		if err != nil {
			continue
		}
		for i, t := range ts {
			if t >= sym && t < sym+max(size, 1) && t-sym < 1<<16 && i < 256 {
				rules = append(rules, GlobalRule{Func: fn, Index: uint8(i), Addend: uint16(t - sym)})
				break
			}
		}
		if len(rules) == 2 {
			break
		}
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("none of %v refers to the variable at %#x", funcs, sym)
	}
	return rules, nil
}

// OpenTable reads the symbol table (pclntab) of the executable f from the
// file alone, as linked (cmd/gen-offsets).
func OpenTable(f *elf.File, b *Binary) (*symtab.Table, error) {
	return symtab.Open(f, nil, symtab.FileMemory(f), 0, symtab.Layout{MdText: b.Offsets.MdText, MdGofunc: b.Offsets.MdGofunc})
}

// ApplyGlobalRule returns the link-time address rule finds in f.
func ApplyGlobalRule(f *elf.File, tab *symtab.Table, rule GlobalRule) (uint64, error) {
	ts, err := CodeAddrs(f, tab, rule.Func)
	if err != nil {
		return 0, err
	}
	if int(rule.Index) >= len(ts) {
		return 0, fmt.Errorf("%s refers to %d addresses, not %d", rule.Func, len(ts), rule.Index+1)
	}
	a := ts[rule.Index] - uint64(rule.Addend)
	if !inDataSection(f, a) {
		return 0, fmt.Errorf("%s: %#x is not in a data section", rule.Func, a)
	}
	return a, nil
}
