package goruntime

import (
	"debug/elf"
	"errors"
	"fmt"
	"go/version"

	"golang.org/x/arch/x86/x86asm"

	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
)

// GlobalRule finds a runtime variable in a binary without a symbol table
// (built with -ldflags=-s): it is the Index-th distinct RIP-relative
// address that the code of function Func refers to, minus Addend (when
// the code refers to a field of the variable). cmd/gen-offsets finds the
// rules of each Go version in a program that has a symbol table, one per
// function that refers to the variable (up to two), checks that a PIE
// build agrees, and writes them to the table. At run time every rule of a
// variable must find the same address, so code compiled otherwise (other
// flags, another toolchain's runtime) is refused rather than read at the
// wrong place. amd64 only.
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

// RIPTargets lists the distinct link-time addresses that the amd64 code of
// function fn refers to RIP-relative, in the order of the code.
func RIPTargets(f *elf.File, tab *symtab.Table, fn string) ([]uint64, error) {
	seen := map[uint64]bool{}
	var out []uint64
	err := eachRIPRef(f, tab, fn, func(_ x86asm.Inst, _ int, t uint64) {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	})
	return out, err
}

// eachRIPRef decodes the amd64 code of function fn and calls ref for each
// RIP-relative memory operand: its instruction, its argument index and the
// link-time address it refers to.
func eachRIPRef(f *elf.File, tab *symtab.Table, fn string, ref func(inst x86asm.Inst, arg int, addr uint64)) error {
	if f.Machine != elf.EM_X86_64 {
		return errors.New("amd64 code only")
	}
	start, end, ok := tab.Func(fn)
	if !ok {
		return fmt.Errorf("no function %s", fn)
	}
	code, err := Code(f, start, end)
	if err != nil {
		return err
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
				ref(inst, i, uint64(int64(next)+m.Disp))
			}
		}
		pc = next
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
		ts, err := RIPTargets(f, tab, fn)
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
	ts, err := RIPTargets(f, tab, rule.Func)
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
