package goruntime

import (
	"debug/elf"
	"fmt"
)

// gRPC (google.golang.org/grpc): where its requests start and end, and
// where its structs keep what gonetscope reads. grpc's layouts change
// with its version, which the binary does not name, so they are read
// from grpc's own code in the binary: small functions that return or
// test one field, whose loads say the field's offset. That works in
// stripped and PIE binaries alike, on amd64 and arm64 (grpccode.go
// decodes both into the few forms read here); the tests check each
// against the DWARF of a build with it.
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
	// GRPCInvoke makes one unary call (through GRPCNewClientStream):
	// its presence says the program is a gRPC client.
	GRPCInvoke = "google.golang.org/grpc.invoke"
	// GRPCNewClientStream begins every client call, unary or a stream,
	// on the calling goroutine: (ctx, desc, cc *ClientConn, method
	// string, opts...); cc in the fourth argument register, the method
	// in the fifth and sixth.
	GRPCNewClientStream = "google.golang.org/grpc.newClientStream"
	// GRPCNewAttempt makes an attempt of a call's clientStream (cs,
	// isTransparent): its first is on the goroutine that began the call,
	// before GRPCNewClientStream returns.
	GRPCNewAttempt = "google.golang.org/grpc.(*clientStream).newAttemptLocked"
	// GRPCFinish ends a client call: (cs, err error); grpc calls it again
	// for a stream, after its end, and it returns at once.
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
	ServerStart, ServerEnd             Site
	ClientStart, ClientBind, ClientEnd Site
	// ServerWhyNot and ClientWhyNot say why a side has no sites.
	ServerWhyNot, ClientWhyNot error
}

// FindGRPC finds the probe sites and the layout of the grpc in f.
func FindGRPC(f *elf.File, funcs FuncLookup) (GRPCProbes, GRPCLayout, error) {
	var p GRPCProbes
	var l GRPCLayout
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
		if p.ClientStart, err = EntryBranch(f, funcs, GRPCNewClientStream); err != nil {
			return err
		}
		if p.ClientBind, err = EntryBranch(f, funcs, GRPCNewAttempt); err != nil {
			return err
		}
		if p.ClientEnd, err = EntryBranch(f, funcs, GRPCFinish); err != nil {
			return err
		}
		if l.ErrorStatus, err = pointerField(f, funcs, grpcErrorStatus); err != nil {
			return err
		}
		// Err returns a new *Error as an error: the itab is the last
		// address it takes. finish compares err with io.EOF first.
		if l.ErrorItab, err = dataAddr(f, funcs, grpcStatusErr, formAddr, true); err != nil {
			return err
		}
		if l.EOF, err = dataAddr(f, funcs, GRPCFinish, formCompare, false); err != nil {
			return err
		}
		if _, _, ok := funcs(grpcConnTarget); ok {
			l.ConnTarget, err = stringField(f, funcs, grpcConnTarget)
		}
		return err
	}()
	return p, l, nil
}

// offset16 checks that an offset fits the BPF side's fields.
func offset16(fn string, d int64) (uint16, error) {
	if d < 0 || d > 0xffff {
		return 0, fmt.Errorf("%s: field offset %d out of range", fn, d)
	}
	return uint16(d), nil
}

// stringField reads the offset of the string field that accessor fn
// returns: it starts with the load of the pair at off(arg0).
func stringField(f *elf.File, funcs FuncLookup, fn string) (uint16, error) {
	c, err := readCode(f, funcs, fn)
	if err != nil {
		return 0, err
	}
	if len(c.insts) >= 1 {
		if in := c.insts[0]; in.form == formLoadPair && in.base == c.arg0 {
			return offset16(fn, in.off)
		}
	}
	return 0, fmt.Errorf("%s: not a string field's accessor: layout not known", fn)
}

// pointerField reads the offset of the pointer field that accessor fn
// returns: arg0 = off(arg0); RET.
func pointerField(f *elf.File, funcs FuncLookup, fn string) (uint16, error) {
	c, err := readCode(f, funcs, fn)
	if err != nil {
		return 0, err
	}
	if len(c.insts) >= 2 && c.insts[1].form == formReturn {
		if in := c.insts[0]; in.form == formLoad && in.size == 8 && in.dst == c.arg0 && in.base == c.arg0 {
			return offset16(fn, in.off)
		}
	}
	return 0, fmt.Errorf("%s: not a pointer field's accessor: layout not known", fn)
}

// grpcStatusCodeOffsets reads (*Status).Code (or Err, which inlines it):
// a nil check, R = proto(arg0) (8 bytes); a nil check, a 4-byte load of
// code(R).
func grpcStatusCodeOffsets(f *elf.File, funcs FuncLookup) (proto, code uint16, err error) {
	fn := grpcStatusCode
	if _, _, ok := funcs(fn); !ok {
		fn = grpcStatusErr
	}
	c, err := readCode(f, funcs, fn)
	if err != nil {
		return 0, 0, err
	}
	for i, in := range c.insts {
		if in.form != formLoad || in.base != c.arg0 || in.size != 8 {
			continue
		}
		for _, next := range c.insts[i+1 : min(i+4, len(c.insts))] {
			if next.form == formLoad && next.base == in.dst && next.size == 4 {
				if proto, err = offset16(fn, in.off); err == nil {
					code, err = offset16(fn, next.off)
				}
				return proto, code, err
			}
		}
		break
	}
	return 0, 0, fmt.Errorf("%s: no load of the status' code: layout not known", fn)
}

// dataAddr is the link-time address of the first (or last) instruction
// of fn in form (formAddr or formCompare), which must lie in a data
// section.
func dataAddr(f *elf.File, funcs FuncLookup, fn string, form instForm, last bool) (uint64, error) {
	c, err := readCode(f, funcs, fn)
	if err != nil {
		return 0, err
	}
	var addrs []uint64
	for _, in := range c.insts {
		if in.form == form {
			addrs = append(addrs, in.addr)
		}
	}
	if len(addrs) == 0 {
		return 0, fmt.Errorf("%s: no %v: layout not known", fn, form)
	}
	a := addrs[0]
	if last {
		a = addrs[len(addrs)-1]
	}
	if !inData(f, a) {
		return 0, fmt.Errorf("%s: %v of %#x, outside the data: layout not known", fn, form, a)
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
// net.Conn's itab at 24) on a field of a struct: the pair (itab, data) =
// off(R), then fn = 24(itab) and a call through fn.
func closedConn(f *elf.File, funcs FuncLookup, fn string) (uint16, error) {
	c, err := readCode(f, funcs, fn)
	if err != nil {
		return 0, err
	}
	insts := c.insts
	for i := 0; i+2 < len(insts); i++ {
		pair, method, call := insts[i], insts[i+1], insts[i+2]
		if pair.form != formLoadPair || method.form != formLoad || method.base != pair.dst || method.off != 24 {
			continue
		}
		if call.form == formCallReg && call.dst == method.dst {
			return offset16(fn, pair.off)
		}
		break
	}
	return 0, fmt.Errorf("%s: no Close of a net.Conn field: layout not known", fn)
}
