package goruntime

import (
	"debug/elf"
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// gRPC (google.golang.org/grpc): where its requests start and end, and
// where its structs keep what gonetscope reads. grpc's layouts change
// with its version, which the binary does not name, so they are read
// from grpc's own code in the binary: small functions that return or
// test one field, whose loads say the field's offset. That works in
// stripped and PIE binaries alike; the tests check each against the
// DWARF of a build with it. amd64 only.
const (
	// GRPCHandleStream serves one stream on its own goroutine (or a
	// worker's): (s, t ServerTransport, stream, ...); stream in the
	// fourth argument register.
	GRPCHandleStream = "google.golang.org/grpc.(*Server).handleStream"
	// GRPCWriteStatus writes a server stream's status, the end of the
	// call: (t *http2Server, stream, st *status.Status); exported before
	// grpc 1.66.
	GRPCWriteStatus    = "google.golang.org/grpc/internal/transport.(*http2Server).writeStatus"
	grpcWriteStatusOld = "google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus"
	// GRPCInvoke makes one unary call: (ctx, method string, req, reply,
	// cc *ClientConn, opts...); the method in the third and fourth
	// argument registers, cc in the ninth.
	GRPCInvoke = "google.golang.org/grpc.invoke"
	// GRPCFinish ends a client stream once: (cs, err error).
	GRPCFinish = "google.golang.org/grpc.(*clientStream).finish"

	grpcServerStreamMethod = "google.golang.org/grpc/internal/transport.(*ServerStream).Method"
	grpcStreamMethod       = "google.golang.org/grpc/internal/transport.(*Stream).Method"
	grpcStatusCode         = "google.golang.org/grpc/internal/status.(*Status).Code"
	grpcStatusErr          = "google.golang.org/grpc/internal/status.(*Status).Err"
	grpcErrorStatus        = "google.golang.org/grpc/internal/status.(*Error).GRPCStatus"
	grpcConnTarget         = "google.golang.org/grpc.(*ClientConn).Target"
	grpcServerClose        = "google.golang.org/grpc/internal/transport.(*http2Server).Close"
)

// GRPCLayout is where a binary's grpc keeps what gonetscope reads.
type GRPCLayout struct {
	// StreamMethod: the method string ("/pkg.Service/Method") in the
	// server's stream (*transport.ServerStream).
	StreamMethod uint16
	// StatusProto: internal/status.Status's *spb.Status; ProtoCode: that
	// message's Code (int32).
	StatusProto, ProtoCode uint16
	// ErrorStatus: internal/status.Error's *Status.
	ErrorStatus uint16
	// ErrorItab is the link-time address of the itab of
	// (*internal/status.Error, error): an error with it is a status.
	ErrorItab uint64
	// EOF is the link-time address of io.EOF, with which a client
	// stream ends well.
	EOF uint64
	// ConnTarget: ClientConn.target, the dial target; 0 when the binary
	// has no (*ClientConn).Target to read it from.
	ConnTarget uint16
	// ServerConn: http2Server.conn, the connection (a net.Conn); 0 when
	// (*http2Server).Close does not say it as known.
	ServerConn uint16
}

// HasGRPC says whether the program links grpc's server or its client.
func HasGRPC(funcs FuncLookup) (server, client bool) {
	_, _, server = funcs(GRPCHandleStream)
	_, _, client = funcs(GRPCInvoke)
	return server, client
}

// GRPCProbes are the uprobe sites of a binary's grpc: each the
// conditional jump of a function's stack check (EntryBranch), where the
// arguments are still in their registers.
type GRPCProbes struct {
	ServerStart, ServerEnd Site
	ClientStart, ClientEnd Site
	// ServerWhyNot and ClientWhyNot say why a side has no sites.
	ServerWhyNot, ClientWhyNot error
}

// FindGRPC finds the probe sites and the layout of the grpc in f.
func FindGRPC(f *elf.File, funcs FuncLookup) (GRPCProbes, GRPCLayout, error) {
	var p GRPCProbes
	var l GRPCLayout
	if f.Machine != elf.EM_X86_64 {
		return p, l, errors.New("gRPC tracing is amd64 only")
	}
	var err error
	if l.StatusProto, l.ProtoCode, err = grpcStatusCodeOffsets(f, funcs); err != nil {
		return p, l, err
	}
	p.ServerWhyNot = func() error {
		if p.ServerStart, err = EntryBranch(f, funcs, GRPCHandleStream); err != nil {
			return err
		}
		ws := GRPCWriteStatus
		if _, _, ok := funcs(ws); !ok {
			ws = grpcWriteStatusOld
		}
		if p.ServerEnd, err = EntryBranch(f, funcs, ws); err != nil {
			return err
		}
		// The stream is a *ServerStream (grpc 1.66+), or a *Stream
		// before.
		fn := grpcServerStreamMethod
		if _, _, ok := funcs(fn); !ok {
			fn = grpcStreamMethod
		}
		if l.StreamMethod, err = stringField(f, funcs, fn); err != nil {
			return err
		}
		l.ServerConn, _ = closedConn(f, funcs, grpcServerClose)
		return nil
	}()
	p.ClientWhyNot = func() error {
		if p.ClientStart, err = EntryBranch(f, funcs, GRPCInvoke); err != nil {
			return err
		}
		if p.ClientEnd, err = EntryBranch(f, funcs, GRPCFinish); err != nil {
			return err
		}
		if l.ErrorStatus, err = pointerField(f, funcs, grpcErrorStatus); err != nil {
			return err
		}
		if l.ErrorItab, err = lastRIPLoad(f, funcs, grpcStatusErr, x86asm.LEA); err != nil {
			return err
		}
		if l.EOF, err = firstRIPLoad(f, funcs, GRPCFinish, x86asm.CMP); err != nil {
			return err
		}
		if _, _, ok := funcs(grpcConnTarget); ok {
			l.ConnTarget, err = stringField(f, funcs, grpcConnTarget)
		}
		return err
	}()
	return p, l, nil
}

type x86Inst struct {
	pc   uint64
	inst x86asm.Inst
}

// x86Func decodes fn.
func x86Func(f *elf.File, funcs FuncLookup, fn string) ([]x86Inst, error) {
	start, end, ok := funcs(fn)
	if !ok {
		return nil, fmt.Errorf("no function %s", fn)
	}
	code, err := Code(f, start, end)
	if err != nil {
		return nil, err
	}
	var out []x86Inst
	for pc := start; pc < end; {
		inst, err := x86asm.Decode(code[pc-start:], 64)
		if err != nil {
			return out, nil // the padding after the last RET
		}
		out = append(out, x86Inst{pc, inst})
		pc += uint64(inst.Len)
	}
	return out, nil
}

// load is the memory operand of a MOV (or MOVL/MOVQ) that loads from
// base+disp into a register; ok false otherwise.
func load(in x86asm.Inst) (dst x86asm.Reg, m x86asm.Mem, ok bool) {
	if in.Op != x86asm.MOV {
		return 0, m, false
	}
	dst, ok = in.Args[0].(x86asm.Reg)
	if !ok {
		return 0, m, false
	}
	m, ok = in.Args[1].(x86asm.Mem)
	return dst, m, ok && m.Index == 0 && m.Base != x86asm.RIP && m.Base != 0
}

// offset16 checks that an offset fits the BPF side's fields.
func offset16(fn string, d int64) (uint16, error) {
	if d < 0 || d > 0xffff {
		return 0, fmt.Errorf("%s: field offset %d out of range", fn, d)
	}
	return uint16(d), nil
}

// stringField reads the offset of the string field that accessor fn
// returns: its first two instructions load off(AX) and off+8(AX).
func stringField(f *elf.File, funcs FuncLookup, fn string) (uint16, error) {
	insts, err := x86Func(f, funcs, fn)
	if err != nil {
		return 0, err
	}
	if len(insts) >= 2 {
		_, a, ok1 := load(insts[0].inst)
		_, b, ok2 := load(insts[1].inst)
		if ok1 && ok2 && a.Base == x86asm.RAX && b.Base == x86asm.RAX && b.Disp == a.Disp+8 {
			return offset16(fn, a.Disp)
		}
	}
	return 0, fmt.Errorf("%s: not a string field's accessor: layout not known", fn)
}

// pointerField reads the offset of the pointer field that accessor fn
// returns: MOVQ off(AX), AX; RET.
func pointerField(f *elf.File, funcs FuncLookup, fn string) (uint16, error) {
	insts, err := x86Func(f, funcs, fn)
	if err != nil {
		return 0, err
	}
	if len(insts) >= 2 && insts[1].inst.Op == x86asm.RET {
		if dst, m, ok := load(insts[0].inst); ok && dst == x86asm.RAX && m.Base == x86asm.RAX {
			return offset16(fn, m.Disp)
		}
	}
	return 0, fmt.Errorf("%s: not a pointer field's accessor: layout not known", fn)
}

// grpcStatusCodeOffsets reads (*Status).Code (or Err, which inlines it):
// a nil check, MOVQ proto(AX), R; a nil check, MOVL code(R), _.
func grpcStatusCodeOffsets(f *elf.File, funcs FuncLookup) (proto, code uint16, err error) {
	fn := grpcStatusCode
	if _, _, ok := funcs(fn); !ok {
		fn = grpcStatusErr
	}
	insts, err := x86Func(f, funcs, fn)
	if err != nil {
		return 0, 0, err
	}
	for i, in := range insts {
		dst, m, ok := load(in.inst)
		if !ok || m.Base != x86asm.RAX || in.inst.DataSize != 64 {
			continue
		}
		for _, next := range insts[i+1 : min(i+4, len(insts))] {
			if _, m2, ok := load(next.inst); ok && m2.Base == dst && next.inst.DataSize == 32 {
				if proto, err = offset16(fn, m.Disp); err == nil {
					code, err = offset16(fn, m2.Disp)
				}
				return proto, code, err
			}
		}
		break
	}
	return 0, 0, fmt.Errorf("%s: no load of the status' code: layout not known", fn)
}

// ripLoads lists the link-time addresses that fn's instructions of op
// refer to RIP-relative, in the order of the code.
func ripLoads(f *elf.File, funcs FuncLookup, fn string, op x86asm.Op) ([]uint64, error) {
	insts, err := x86Func(f, funcs, fn)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, in := range insts {
		if in.inst.Op != op {
			continue
		}
		for _, a := range in.inst.Args {
			if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP && m.Index == 0 {
				out = append(out, uint64(int64(in.pc)+int64(in.inst.Len)+m.Disp))
			}
		}
	}
	return out, nil
}

// lastRIPLoad is the last address of ripLoads, which must lie in a data
// section; firstRIPLoad the first.
func lastRIPLoad(f *elf.File, funcs FuncLookup, fn string, op x86asm.Op) (uint64, error) {
	return ripLoad(f, funcs, fn, op, true)
}

func firstRIPLoad(f *elf.File, funcs FuncLookup, fn string, op x86asm.Op) (uint64, error) {
	return ripLoad(f, funcs, fn, op, false)
}

func ripLoad(f *elf.File, funcs FuncLookup, fn string, op x86asm.Op, last bool) (uint64, error) {
	addrs, err := ripLoads(f, funcs, fn, op)
	if err != nil {
		return 0, err
	}
	if len(addrs) == 0 {
		return 0, fmt.Errorf("%s: no RIP-relative %v: layout not known", fn, op)
	}
	a := addrs[0]
	if last {
		a = addrs[len(addrs)-1]
	}
	if !inData(f, a) {
		return 0, fmt.Errorf("%s: %v refers to %#x, outside the data: layout not known", fn, op, a)
	}
	return a, nil
}

// inData reports whether link-time address a is in an allocated section
// that is not code: data, read-only data (an itab) or bss.
func inData(f *elf.File, a uint64) bool {
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Flags&elf.SHF_EXECINSTR == 0 && a >= s.Addr && a < s.Addr+s.Size {
			return true
		}
	}
	return false
}

// closedConn reads the offset of the net.Conn field that method fn
// closes: the first call of an interface's first method (Close, in
// net.Conn's itab at 24) on a field of a struct, loaded as the pair
// MOVQ off(R), itab; MOVQ off+8(R), data, then MOVQ 24(itab), fn; CALL fn.
func closedConn(f *elf.File, funcs FuncLookup, fn string) (uint16, error) {
	insts, err := x86Func(f, funcs, fn)
	if err != nil {
		return 0, err
	}
	for i := 0; i+3 < len(insts); i++ {
		itab, a, ok1 := load(insts[i].inst)
		_, b, ok2 := load(insts[i+1].inst)
		dst, c, ok3 := load(insts[i+2].inst)
		if !ok1 || !ok2 || !ok3 || a.Base != b.Base || b.Disp != a.Disp+8 || c.Base != itab || c.Disp != 24 {
			continue
		}
		if call := insts[i+3].inst; call.Op == x86asm.CALL && call.Args[0] == dst {
			return offset16(fn, a.Disp)
		}
		break
	}
	return 0, fmt.Errorf("%s: no Close of a net.Conn field: layout not known", fn)
}
