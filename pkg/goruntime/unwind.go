package goruntime

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
)

// PhysFrame is one frame of a stack as the machine sees it (inlined calls
// are expanded when it is symbolized).
type PhysFrame struct {
	// PC is where the frame is: a return address, or, when Exact, the
	// instruction it stopped at (a goroutine that has not run yet, or the
	// frame a signal interrupted).
	PC    uint64
	Exact bool
	SP    uint64
}

// SymPC is the pc to symbolize the frame by with symtab's leaf flag set:
// the call instruction for a return address, as the runtime's symPC.
func (f PhysFrame) SymPC() uint64 {
	if f.Exact {
		return f.PC
	}
	return f.PC - 1
}

// ProfilePC is the frame's pc as the runtime's own profiles record it
// (runtime.tracebackPCs): always one past the instruction, so that
// pprof's "return address minus one" lands on it.
func (f PhysFrame) ProfilePC() uint64 { return f.SymPC() + 1 }

// maxStackRead bounds how much of one goroutine's stack is read (from
// its saved sp to the top); maxFrames how many frames are walked.
const (
	maxStackRead = 16 << 20
	maxFrames    = 4096
)

// stackStops are runtime functions where a goroutine stack hands over to
// another stack (g0's, a signal stack): unwinding through them from a
// goroutine's saved registers would read another stack's words.
var stackStops = map[string]bool{
	"runtime.systemstack": true, "runtime.mcall": true, "runtime.morestack": true,
	"runtime.morestack_noctxt": true, "runtime.mstart": true, "runtime.rt0_go": true,
	"runtime.asmcgocall": true, "runtime.cgocallback": true,
}

// injected are the functions the runtime enters by faking a call from a
// signal handler: the frame below them stopped at an arbitrary
// instruction, not at a call.
var injected = map[string]bool{"runtime.sigpanic": true, "runtime.asyncPreempt": true, "runtime.debugCallV2": true}

// unwind walks a goroutine stack from the registers regs, whose words
// mem holds from regs.SP up to top (the stack's hi end), with the pcsp
// tables of syms, as the runtime's unwinder does (runtime/traceback.go):
// the frame's top is sp + its frame size (plus the return address pushed
// by CALL on amd64), the caller's pc is the word below that top (amd64)
// or, on arm64, the saved link register at the frame's sp (lr itself for
// a frameless innermost frame). It ends at runtime.goexit (or another
// top frame): a complete stack. Anything else ends it early, and
// incomplete says why.
func unwind(syms *symtab.Table, mem io.ReaderAt, arch string, regs Regs, top uint64) (frames []PhysFrame, incomplete string) {
	if regs.PC == 0 || regs.SP == 0 {
		return nil, "no saved registers"
	}
	if top <= regs.SP || top-regs.SP > 1<<30 {
		return nil, fmt.Sprintf("saved sp %#x is outside its stack (top %#x)", regs.SP, top)
	}
	n := min(top-regs.SP, maxStackRead)
	buf := make([]byte, n)
	if _, err := mem.ReadAt(buf, int64(regs.SP)); err != nil {
		return nil, fmt.Sprintf("reading the stack: %v", err)
	}
	word := func(addr uint64) (uint64, bool) {
		if addr < regs.SP || addr+8 > regs.SP+n {
			return 0, false
		}
		return binary.LittleEndian.Uint64(buf[addr-regs.SP:]), true
	}
	usesLR := arch == "arm64"
	pc, sp, lr := regs.PC, regs.SP, regs.LR
	exact := false
	for innermost := true; len(frames) < maxFrames; innermost = false {
		fi, ok := syms.FuncAt(pc)
		if !ok {
			return frames, fmt.Sprintf("pc %#x is not in Go code", pc)
		}
		// A frame at a function's first instruction has run nothing of
		// it: its pc is exact (the runtime's symPC).
		frames = append(frames, PhysFrame{PC: pc, Exact: exact || pc == fi.Entry, SP: sp})
		if fi.Flag&symtab.FlagTopFrame != 0 {
			if fi.Name == "runtime.goexit" {
				return frames, ""
			}
			return frames, "stack ends at " + fi.Name
		}
		if !innermost && (fi.Flag&symtab.FlagSPWrite != 0 || stackStops[fi.Name]) {
			return frames, "stack switch at " + fi.Name
		}
		fp := sp + uint64(fi.SPDelta)
		if !usesLR {
			fp += 8 // the return address CALL pushed
		}
		if usesLR {
			if innermost && sp < fp || lr == 0 {
				if lr, ok = word(sp); !ok {
					return frames, fmt.Sprintf("frame of %s beyond the stack read", fi.Name)
				}
			}
		} else if lr, ok = word(fp - 8); !ok {
			return frames, fmt.Sprintf("frame of %s beyond the stack read", fi.Name)
		}
		if lr == 0 {
			return frames, "no return address below " + fi.Name
		}
		pc, sp, exact = lr, fp, false
		lr = 0
		if injected[fi.Name] {
			exact = true
			if usesLR {
				// The signal handler saved LR on the stack before faking
				// the call (runtime/traceback.go, unwinder.next).
				x, ok := word(sp)
				if !ok {
					return frames, fmt.Sprintf("frame of %s beyond the stack read", fi.Name)
				}
				sp += 16
				if f, ok := syms.FuncAt(pc); !ok {
					pc = x
				} else if f.SPDelta == 0 {
					lr = x
				}
			}
		}
		if sp > regs.SP+n {
			return frames, "stack deeper than read"
		}
	}
	return frames, fmt.Sprintf("more than %d frames", maxFrames)
}
