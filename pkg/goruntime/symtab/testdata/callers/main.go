// Command callers prints the return addresses of a stack that has inlined
// calls, found by walking frame pointers as the kernel does, then the
// frames the runtime itself makes of the same stack (runtime.Callers and
// CallersFrames), then waits for stdin: the ground truth symtab's test
// compares with.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"unsafe"
)

func callerFP() uintptr

// returnAddrs walks the frame pointer chain from leaf's frame.
//
//go:nocheckptr
func returnAddrs(fp uintptr) []uintptr {
	var pcs []uintptr
	for fp != 0 && len(pcs) < 64 {
		pcs = append(pcs, *(*uintptr)(unsafe.Pointer(fp + 8)))
		fp = *(*uintptr)(unsafe.Pointer(fp))
	}
	return pcs
}

var logical []uintptr

//go:noinline
func leaf() []uintptr {
	pcs := make([]uintptr, 64)
	logical = pcs[:runtime.Callers(1, pcs)]
	return returnAddrs(callerFP())
}

func inlinedInner() []uintptr { return leaf() }

func inlinedOuter() []uintptr { return inlinedInner() }

//go:noinline
func outer() []uintptr {
	return inlinedOuter()
}

func main() {
	pcs := outer()
	for _, pc := range pcs {
		fmt.Printf("pc %d\n", pc)
	}
	frames := runtime.CallersFrames(logical[1:]) // from leaf's caller on
	for {
		f, more := frames.Next()
		fmt.Printf("frame %s %s %d\n", f.Function, f.File, f.Line)
		if !more {
			break
		}
	}
	fmt.Println("end")
	bufio.NewReader(os.Stdin).ReadString('\n')
}
