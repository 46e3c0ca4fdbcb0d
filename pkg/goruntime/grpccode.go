package goruntime

import (
	"debug/elf"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// grpc's layout readers (grpc.go) look for a few kinds of instruction
// in grpc's small accessors, the same on every architecture the Go
// compiler targets: the decoders below turn amd64 and arm64 code into
// those forms, and every other instruction into formOther.

// instForm is what an instruction does, as far as the layout readers
// care.
type instForm uint8

const (
	formOther instForm = iota
	// formLoad: dst = size bytes at off(base).
	formLoad
	// formLoadPair: dst, dst2 = the 8-byte words at off(base) and
	// off+8(base) (arm64 LDP; on amd64 two MOVQs one after the other).
	formLoadPair
	// formReturn: RET.
	formReturn
	// formCallReg: a call through register dst.
	formCallReg
	// formAddr: a register set to the link-time address addr (amd64
	// LEAQ of a RIP-relative operand; arm64 ADRP and ADD).
	formAddr
	// formCompare: a comparison with the value at the link-time address
	// addr (amd64 CMPQ with a RIP-relative operand; arm64 ADRP, ADD and
	// LDP or LDR from it, then CMP of what was loaded).
	formCompare
)

func (f instForm) String() string {
	switch f {
	case formAddr:
		return "address taken"
	case formCompare:
		return "comparison with data"
	}
	return fmt.Sprintf("form %d", uint8(f))
}

// reg is a general-purpose register in one architecture's numbering
// (x86asm.Reg or arm64asm.Reg's X registers); 0 is none.
type reg uint16

// inst is one instruction of a function in the form the readers need.
type inst struct {
	pc   uint64
	form instForm
	dst  reg   // formLoad, formLoadPair, formCallReg
	dst2 reg   // formLoadPair
	base reg   // formLoad, formLoadPair
	off  int64 // formLoad, formLoadPair
	size int   // formLoad: bytes
	addr uint64
}

// code is one function, decoded.
type code struct {
	insts []inst
	arg0  reg // the first integer argument and result register
}

// readCode decodes fn for its architecture.
func readCode(f *elf.File, funcs FuncLookup, fn string) (code, error) {
	start, end, ok := funcs(fn)
	if !ok {
		return code{}, fmt.Errorf("no function %s", fn)
	}
	b, err := Code(f, start, end)
	if err != nil {
		return code{}, err
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return code{insts: x86Code(b, start), arg0: reg(x86asm.RAX)}, nil
	case elf.EM_AARCH64:
		return code{insts: arm64Code(b, start), arg0: reg(arm64asm.X0)}, nil
	}
	return code{}, fmt.Errorf("%s: machine %v not supported", fn, f.Machine)
}

// x86Code decodes amd64 code b at pc start, up to the padding after the
// last RET.
func x86Code(b []byte, start uint64) []inst {
	var out []inst
	for pc := start; pc < start+uint64(len(b)); {
		in, err := x86asm.Decode(b[pc-start:], 64)
		if err != nil {
			break
		}
		next := pc + uint64(in.Len)
		i := inst{pc: pc}
		mem, hasMem := in.Args[1].(x86asm.Mem)
		rip := hasMem && mem.Base == x86asm.RIP && mem.Index == 0
		switch dst, isReg := in.Args[0].(x86asm.Reg); {
		case in.Op == x86asm.MOV && isReg && hasMem && mem.Index == 0 && mem.Base != x86asm.RIP && mem.Base != 0:
			i.form, i.dst, i.base, i.off, i.size = formLoad, reg(dst), reg(mem.Base), mem.Disp, in.DataSize/8
		case in.Op == x86asm.RET:
			i.form = formReturn
		case in.Op == x86asm.CALL && isReg:
			i.form, i.dst = formCallReg, reg(dst)
		case in.Op == x86asm.LEA && rip:
			i.form, i.addr = formAddr, uint64(int64(next)+mem.Disp)
		case in.Op == x86asm.CMP:
			for _, a := range in.Args {
				if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP && m.Index == 0 {
					i.form, i.addr = formCompare, uint64(int64(next)+m.Disp)
				}
			}
		}
		// Two 8-byte loads of one pair, the base not overwritten by the
		// first, are one formLoadPair.
		if n := len(out); n > 0 && i.form == formLoad && i.size == 8 {
			if p := out[n-1]; p.form == formLoad && p.size == 8 && p.base == i.base && p.dst != p.base && i.off == p.off+8 {
				out[n-1] = inst{pc: p.pc, form: formLoadPair, dst: p.dst, dst2: i.dst, base: p.base, off: p.off}
				pc = next
				continue
			}
		}
		out = append(out, i)
		pc = next
	}
	return out
}

// arm64Code decodes arm64 code b at pc start.
func arm64Code(b []byte, start uint64) []inst {
	var raw []arm64asm.Inst
	for o := 0; o+4 <= len(b); o += 4 {
		in, err := arm64asm.Decode(b[o : o+4])
		if err != nil {
			in = arm64asm.Inst{} // padding, or data: formOther
		}
		raw = append(raw, in)
	}
	out := make([]inst, 0, len(raw))
	for k := 0; k < len(raw); k++ {
		in := raw[k]
		i := inst{pc: start + uint64(4*k)}
		switch in.Op {
		case arm64asm.LDR, arm64asm.LDRSW:
			if dst, size, ok := xReg(in.Args[0]); ok {
				if base, off, ok := memOffset(in.Args[1]); ok {
					if in.Op == arm64asm.LDRSW {
						size = 4
					}
					i.form, i.dst, i.base, i.off, i.size = formLoad, dst, base, off, size
				}
			}
		case arm64asm.LDP:
			d1, s1, ok1 := xReg(in.Args[0])
			d2, _, ok2 := xReg(in.Args[1])
			if base, off, ok := memOffset(in.Args[2]); ok && ok1 && ok2 && s1 == 8 {
				i.form, i.dst, i.dst2, i.base, i.off = formLoadPair, d1, d2, base, off
			}
		case arm64asm.RET:
			i.form = formReturn
		case arm64asm.BLR:
			if dst, _, ok := xReg(in.Args[0]); ok {
				i.form, i.dst = formCallReg, dst
			}
		case arm64asm.ADRP:
			// ADRP Rx, page; ADD Rx, Rx, #lo: an address, or, loaded
			// from and compared with, a comparison with data.
			if a, rx, n, ok := arm64Address(raw[k:], i.pc); ok {
				i.form, i.addr = formAddr, a
				if cmp, m := arm64Compare(raw[k+n:], a, rx); m > 0 {
					i.form, i.addr = formCompare, cmp
					n += m
				}
				out = append(out, i)
				for j := 1; j < n; j++ {
					out = append(out, inst{pc: i.pc + uint64(4*j)})
				}
				k += n - 1
				continue
			}
		}
		out = append(out, i)
	}
	return out
}

// arm64Address reads ADRP Rx, page; ADD Rx, Rx, #lo at the start of
// raw (the ADRP at pc): the address, Rx, and the instructions it took
// (2).
func arm64Address(raw []arm64asm.Inst, pc uint64) (uint64, reg, int, bool) {
	if len(raw) < 2 || raw[1].Op != arm64asm.ADD {
		return 0, 0, 0, false
	}
	rx, _, ok1 := xReg(raw[0].Args[0])
	rel, ok2 := raw[0].Args[1].(arm64asm.PCRel)
	d, _, ok3 := xReg(raw[1].Args[0])
	s, _, ok4 := xReg(raw[1].Args[1])
	lo, ok5 := immShift(raw[1].Args[2])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || d != rx || s != rx {
		return 0, 0, 0, false
	}
	return uint64(int64(pc&^0xfff)+int64(rel)) + lo, rx, 2, true
}

// arm64Compare reads, at the start of raw, a load (LDP or LDR) from
// address a in register rx and a CMP of what it loaded within the next
// two instructions: the address loaded from, and the instructions up to
// the CMP.
func arm64Compare(raw []arm64asm.Inst, a uint64, rx reg) (uint64, int) {
	if len(raw) == 0 {
		return 0, 0
	}
	var loaded []reg
	var off int64
	switch ld := raw[0]; ld.Op {
	case arm64asm.LDP:
		d1, _, ok1 := xReg(ld.Args[0])
		d2, _, ok2 := xReg(ld.Args[1])
		base, o, ok3 := memOffset(ld.Args[2])
		if !ok1 || !ok2 || !ok3 || base != rx {
			return 0, 0
		}
		loaded, off = []reg{d1, d2}, o
	case arm64asm.LDR:
		d, _, ok1 := xReg(ld.Args[0])
		base, o, ok2 := memOffset(ld.Args[1])
		if !ok1 || !ok2 || base != rx {
			return 0, 0
		}
		loaded, off = []reg{d}, o
	default:
		return 0, 0
	}
	for j := 1; j < min(len(raw), 3); j++ {
		if raw[j].Op != arm64asm.CMP {
			continue
		}
		for _, arg := range raw[j].Args {
			if r, ok := operandReg(arg); ok {
				for _, l := range loaded {
					if r == l {
						return uint64(int64(a) + off), j + 1
					}
				}
			}
		}
	}
	return 0, 0
}

// xReg is an arm64 general-purpose register operand in X numbering, and
// its width in bytes (W registers: 4).
func xReg(a arm64asm.Arg) (reg, int, bool) {
	switch r := a.(type) {
	case arm64asm.Reg:
		switch {
		case r >= arm64asm.X0 && r <= arm64asm.X30:
			return reg(r), 8, true
		case r >= arm64asm.W0 && r <= arm64asm.W30:
			return reg(arm64asm.X0 + (r - arm64asm.W0)), 4, true
		}
	case arm64asm.RegSP:
		if arm64asm.Reg(r) >= arm64asm.X0 && arm64asm.Reg(r) <= arm64asm.X30 {
			return reg(r), 8, true
		}
	}
	return 0, 0, false
}

// operandReg is the register of a register operand, shifted or
// extended or not (CMP X1, X3 has RegExtshiftAmount X3, whose register
// x/arch keeps unexported: it is read from the operand's text, "X3" or
// "X3, LSL #2").
func operandReg(a arm64asm.Arg) (reg, bool) {
	if r, _, ok := xReg(a); ok {
		return r, true
	}
	if a == nil {
		return 0, false
	}
	if _, ok := a.(arm64asm.RegExtshiftAmount); !ok {
		return 0, false
	}
	name, _, _ := strings.Cut(a.String(), ",")
	for r := arm64asm.X0; r <= arm64asm.X30; r++ {
		if name == r.String() {
			return reg(r), true
		}
	}
	for r := arm64asm.W0; r <= arm64asm.W30; r++ {
		if name == r.String() {
			return reg(arm64asm.X0 + (r - arm64asm.W0)), true
		}
	}
	return 0, false
}

// memOffset reads an arm64 memory operand [Xn,#off] (plain offset
// addressing, no write-back). x/arch keeps the offset unexported: it is
// read from the operand's text, "[X0]" or "[X0,#16]".
func memOffset(a arm64asm.Arg) (reg, int64, bool) {
	m, ok := a.(arm64asm.MemImmediate)
	if !ok || m.Mode != arm64asm.AddrOffset {
		return 0, 0, false
	}
	base, _, ok := xReg(m.Base)
	if !ok {
		return 0, 0, false
	}
	s := m.String()
	i := strings.Index(s, ",#")
	if i < 0 {
		return base, 0, s == "["+m.Base.String()+"]"
	}
	off, err := strconv.ParseInt(strings.TrimSuffix(s[i+2:], "]"), 10, 64)
	return base, off, err == nil
}

// immShift reads an arm64 ADD's immediate, "#0x820" or "#0x1, LSL #12"
// (x/arch keeps it unexported too).
func immShift(a arm64asm.Arg) (uint64, bool) {
	is, ok := a.(arm64asm.ImmShift)
	if !ok {
		return 0, false
	}
	s, shift := is.String(), uint64(0)
	if i := strings.Index(s, ", LSL #"); i >= 0 {
		n, err := strconv.ParseUint(s[i+len(", LSL #"):], 10, 8)
		if err != nil {
			return 0, false
		}
		s, shift = s[:i], n
	} else if strings.Contains(s, ",") {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "#"), 0, 64)
	return v << shift, err == nil
}
