package symtab

// FuncInfo is what unwinding a stack needs of the function holding a pc.
type FuncInfo struct {
	Name  string
	Entry uint64 // run-time address
	// SPDelta is the size of its frame at the pc: how far sp is below
	// the frame's top then (the pcsp table, as runtime.funcspdelta).
	SPDelta int32
	// Flag is the runtime's abi.FuncFlag (FlagTopFrame, FlagSPWrite).
	Flag uint8
}

// The abi.FuncFlag bits, the same since Go 1.16.
const (
	// FlagTopFrame marks a function at the top of a stack (runtime.goexit,
	// runtime.mstart): nothing called it.
	FlagTopFrame = 1 << 0
	// FlagSPWrite marks a function that writes sp in a way the pcsp table
	// does not describe (stack switches): it cannot be unwound through.
	FlagSPWrite = 1 << 1
)

// FuncAt returns the function holding the run-time pc, and its frame
// size at pc exactly (no return-address adjustment: the caller passes the
// pc its frame is at). ok is false for a pc outside Go code or a pc whose
// pcsp entry is missing.
func (t *Table) FuncAt(pc uint64) (fi FuncInfo, ok bool) {
	f, ok := t.findFunc(pc - t.bias)
	if !ok {
		return FuncInfo{}, false
	}
	fi = FuncInfo{Name: t.funcnames.cstring(f.u32(4)), Entry: f.entry + t.bias, Flag: f.raw.byteAt(41)}
	// _func.pcsp at 16; the table's value is the frame size at pc.
	fi.SPDelta = t.pcvalue(f, f.u32(16), pc-t.bias)
	if fi.SPDelta < 0 {
		return fi, false
	}
	return fi, true
}
