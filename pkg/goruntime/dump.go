package goruntime

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// Goroutine is one goroutine of a dump: what the runtime records of it
// and its stack, read from the process's memory without stopping it.
type Goroutine struct {
	G
	// Waiting is how long it has been waiting (now - g.waitsince, in
	// ns), 0 when the runtime has not recorded it: the runtime sets
	// waitsince for a waiting goroutine only when a GC sees it blocked.
	Waiting int64
	// Stack is its stack, innermost frame first, inlined calls expanded
	// (as a panic shows them), runtime.goexit last when complete. PC of
	// each frame is its physical frame's pc.
	Stack []symtab.Frame
	// Phys are its physical frames, innermost first.
	Phys []PhysFrame
	// Incomplete says why Stack is missing or partial: "running" (a
	// running goroutine's registers are in its thread, not saved), a
	// status or saved registers that changed while it was read, or where
	// the unwinding stopped. "" for a complete stack.
	Incomplete string
	// CreatedBy is the go statement that started it: the creating
	// function and the statement's file and line; zero for goroutine 1
	// and when unknown.
	CreatedBy symtab.Frame
	// Func is what it was started to run: f of `go f(x)`, not the
	// compiler's wrapper (main.main.gowrap1) when the stack shows what
	// the wrapper called.
	Func string
	// System marks the runtime's own goroutines (GC workers, the
	// finalizer goroutine), which runtime.Stack and the runtime's
	// goroutine profile leave out.
	System bool
}

// Incomplete reasons a caller can test for.
const (
	IncompleteRunning = "running"
	IncompleteChanged = "changed while read"
)

// Dump reads every live goroutine of the process with its stack. A
// goroutine is read twice, before and after its stack: when its status or
// saved registers differ, or it runs, its Stack is left out and Incomplete
// says why, rather than show a stack that may be wrong.
func (p *Process) Dump() ([]Goroutine, error) {
	o := p.Bin.Offsets
	if o.GSchedPC == 0 || o.GSchedSP == 0 || o.GStackHi == 0 {
		return nil, fmt.Errorf("the offsets of runtime.g.sched of %s are not known: no stacks", p.Bin.GoVersion)
	}
	gs, err := p.Goroutines()
	if err != nil {
		return nil, err
	}
	mem, err := os.Open(proc.Path(p.PID, "mem"))
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return nil, err
	}
	now := ts.Nano() // the clock of the runtime's nanotime
	buf := make([]byte, p.gSpan())
	out := make([]Goroutine, 0, len(gs))
	for _, g := range gs {
		out = append(out, p.dumpOne(mem, now, g, buf))
	}
	return out, nil
}

// Dumped reads the stack of one goroutine g (as Goroutines or Goroutine
// returned it), as Dump does for each.
func (p *Process) Dumped(g G) (Goroutine, error) {
	o := p.Bin.Offsets
	if o.GSchedPC == 0 || o.GSchedSP == 0 || o.GStackHi == 0 {
		return Goroutine{}, fmt.Errorf("the offsets of runtime.g.sched of %s are not known: no stacks", p.Bin.GoVersion)
	}
	mem, err := os.Open(proc.Path(p.PID, "mem"))
	if err != nil {
		return Goroutine{}, err
	}
	defer mem.Close()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return Goroutine{}, err
	}
	return p.dumpOne(mem, ts.Nano(), g, make([]byte, p.gSpan())), nil
}

// dumpOne reads g's stack; buf is scratch of p.gSpan() bytes.
func (p *Process) dumpOne(mem *os.File, now int64, g G, buf []byte) Goroutine {
	d := Goroutine{G: g}
	if g.WaitSince != 0 && (g.Status == StatusWaiting || g.Status == StatusSyscall) && now > g.WaitSince {
		d.Waiting = now - g.WaitSince
	}
	if g.GoPC != 0 && g.Goid != 1 {
		if fr := p.Syms.Frames(g.GoPC, false); len(fr) > 0 {
			// The go statement: its innermost inlined call, named by
			// the outermost function, as the runtime prints it.
			d.CreatedBy = fr[0]
			d.CreatedBy.Func, d.CreatedBy.FuncID = fr[len(fr)-1].Func, fr[len(fr)-1].FuncID
		}
	}
	var start symtab.Frame
	if fr := p.Syms.Frames(g.StartPC, true); len(fr) > 0 {
		start = fr[len(fr)-1]
		d.Func = start.Func
		d.System = isSystem(d.Func)
	}
	regs, why := startRegs(g)
	if why != "" {
		d.Incomplete = why
		return d
	}
	d.Phys, d.Incomplete = unwind(p.Syms, mem, p.Bin.arch(), regs, g.StackHi)
	// Read it again: the stack is the one of the registers only if
	// it did not run meanwhile.
	if _, err := mem.ReadAt(buf, int64(g.Addr)); err != nil {
		d.Phys, d.Incomplete = nil, IncompleteChanged
	} else if again := p.decodeG(g.Addr, buf); !sameStack(g, again) {
		d.Phys, d.Incomplete = nil, IncompleteChanged
	}
	for _, f := range d.Phys {
		d.Stack = append(d.Stack, p.Syms.Frames(f.PC, f.Exact)...)
	}
	if p.wrapper(start) {
		d.Func = calledBy(d.Stack, d.Func)
	}
	return d
}

// IsSystem reports whether fn, the function a goroutine was started at,
// makes it one of the runtime's own goroutines, which
// runtime.NumGoroutine and the goroutine profile leave out.
func IsSystem(fn string) bool { return isSystem(fn) }

// CanReadGoroutines says why Goroutines cannot work for p, or nil.
func (p *Process) CanReadGoroutines() error {
	if p.allgs == 0 {
		return fmt.Errorf("%w: %v", ErrNoGoroutineTable, p.allgsErr)
	}
	if o := p.Bin.Offsets; o.GGoid == 0 || o.GAtomicstatus == 0 || o.GStartpc == 0 || o.GGopc == 0 {
		return fmt.Errorf("%w: the offsets of runtime.g of %s are not known", ErrNoGoroutineTable, p.Bin.GoVersion)
	}
	return nil
}

// StartFunc names the function at run-time address pc (a goroutine's
// startpc) and says whether it is a compiler-generated wrapper (the
// closure of `go f(x)`), whose goroutines are named by what it calls; ok
// is false where the symbols do not cover pc.
func (p *Process) StartFunc(pc uint64) (fn string, wrapper, ok bool) {
	fr := p.Syms.Frames(pc, true)
	if len(fr) == 0 {
		return "", false, false
	}
	f := fr[len(fr)-1]
	return f.Func, p.wrapper(f), true
}

// sameStack reports whether two reads of a g show it stopped at the same
// place: the same goroutine, status and saved registers, on the same
// stack. (A GC may set waitsince in between: that is no change.)
func sameStack(a, b G) bool {
	return a.Goid == b.Goid && a.Status == b.Status && a.Sched == b.Sched && a.Syscall == b.Syscall && a.StackHi == b.StackHi
}

// startRegs are the registers g's stack is unwound from: those saved on
// entering a system call for one in a syscall, else those saved when it
// last stopped running (g.sched). why says why there are none.
func startRegs(g G) (r Regs, why string) {
	switch g.Status {
	case StatusRunning:
		return r, IncompleteRunning
	case StatusCopystack:
		return r, "copystack: its stack is being moved"
	case StatusSyscall:
		if g.Syscall.SP == 0 {
			return r, "syscall without saved registers"
		}
		return g.Syscall, ""
	}
	return g.Sched, ""
}

// isSystem is the runtime's isSystemGoroutine for a goroutine started at
// fn: the runtime's own, but runtime.main (goroutine 1).
func isSystem(fn string) bool {
	return strings.HasPrefix(fn, "runtime.") && fn != "runtime.main" && fn != "runtime.corostart"
}

// gowrap matches the closures the compiler makes for `go f(x)` and
// `defer f(x)` (Go 1.22+: main.main.gowrap1).
var gowrap = regexp.MustCompile(`\.(gowrap|deferwrap)\d+$`)

// wrapper is true for compiler-generated wrappers, which the runtime's
// tracebacks leave out: method and method-value wrappers and the
// closures of go statements with arguments (main.main.gowrap1, before
// Go 1.22 main.main.func1). The funcID the compiler gave it says so, when
// the version's value of abi.FuncIDWrapper is known; else its name.
func (p *Process) wrapper(f symtab.Frame) bool {
	if id, ok := p.Bin.FuncIDWrapper(); ok {
		return f.FuncID == id
	}
	return f.File == "<autogenerated>" || gowrap.MatchString(f.Func) || strings.HasSuffix(f.Func, "-fm")
}

// calledBy returns the function the outermost frame fn called in stack
// (innermost first): what `go f(x)` runs under its wrapper. fn when the
// stack does not show it.
func calledBy(stack []symtab.Frame, fn string) string {
	for i := len(stack) - 1; i > 0; i-- {
		if stack[i].Func == fn {
			return stack[i-1].Func
		}
	}
	return fn
}

// ShownByRuntime reports whether runtime.Stack and a panic show frame f
// (runtime/traceback.go, showfuncinfo, at the default traceback level):
// not wrappers, unless they called a panic rather than what they wrap
// (callee is the frame f called, "" for the innermost), and not the
// runtime's unexported functions.
func (p *Process) ShownByRuntime(f symtab.Frame, callee string) bool {
	if p.wrapper(f) && callee != "runtime.gopanic" && callee != "runtime.sigpanic" && callee != "runtime.panicwrap" {
		return false
	}
	fn := f.Func
	if !strings.Contains(fn, ".") {
		return false
	}
	name, ok := strings.CutPrefix(fn, "runtime.")
	if !ok {
		return true
	}
	return len(name) > 0 && name[0] >= 'A' && name[0] <= 'Z'
}

// Header returns the text of a goroutine's header as runtime.Stack
// writes it: "goroutine 7 [chan receive, 3 minutes]:".
func (d Goroutine) Header() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "goroutine %d [%s", d.Goid, d.State())
	if d.Status == StatusLeaked {
		b.WriteString(" (leaked)")
	}
	if m := d.Waiting / 60e9; m >= 1 {
		fmt.Fprintf(&b, ", %d minutes", m)
	}
	b.WriteString("]:")
	return b.String()
}

// State is what runtime.Stack shows in brackets: the wait reason of a
// waiting goroutine, else its status.
func (d Goroutine) State() string {
	if (d.Status == StatusWaiting || d.Status == StatusLeaked) && d.WaitReason != "" {
		return d.WaitReason
	}
	return d.Status.String()
}
