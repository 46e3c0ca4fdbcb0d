// Command heaptarget is a test target for the heap profile and the GC
// reader: it allocates known sizes from known functions (allocA: 1 MiB
// blocks, kept; allocB: 64-byte objects, dropped at once; allocC: 256 KiB
// blocks, on request), sets GOGC and a memory limit to known values, and
// runs runtime.GC() so that the runtime publishes its heap profile. It
// prints JSON lines; each line on stdin is a command, after which it
// waits for the next one (so the test reads it in a known state):
//
//	heap FILE   write its own pprof.WriteHeapProfile to FILE
//	more        allocC 16 times, then runtime.GC()
//	gc N        run N runtime.GC() and print runtime.ReadMemStats
//
// With -rate0 it sets runtime.MemProfileRate to 0 first thing.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
)

var (
	kept []*block
	sink *[64]byte
	out  = json.NewEncoder(os.Stdout)
)

type block [1 << 20]byte

// newBlock is inlined into allocA: its own line in allocA's frame.
func newBlock() *block { return new(block) }

//go:noinline
func allocA(n int) {
	for i := 0; i < n; i++ {
		kept = append(kept, newBlock())
	}
}

//go:noinline
func allocB(n int) {
	for i := 0; i < n; i++ {
		sink = new([64]byte)
	}
}

var keptC [][]byte

//go:noinline
func allocC(n int) {
	for i := 0; i < n; i++ {
		keptC = append(keptC, make([]byte, 256<<10))
	}
}

const (
	gogc        = 137
	memoryLimit = 3 << 30
)

func main() {
	rate0 := flag.Bool("rate0", false, "set runtime.MemProfileRate to 0")
	flag.Parse()
	if *rate0 {
		runtime.MemProfileRate = 0
	}
	debug.SetGCPercent(gogc)
	debug.SetMemoryLimit(memoryLimit)
	allocA(32)
	allocB(100000)
	runtime.GC()
	out.Encode(map[string]any{"op": "ready", "pid": os.Getpid(), "rate": runtime.MemProfileRate})
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "heap":
			f, err := os.Create(arg)
			if err == nil {
				err = pprof.WriteHeapProfile(f)
				f.Close()
			}
			out.Encode(map[string]any{"op": "heap", "err": fmt.Sprint(err)})
		case "more":
			allocC(16)
			runtime.GC()
			out.Encode(map[string]any{"op": "more"})
		case "gc":
			var n int
			fmt.Sscan(arg, &n)
			for i := 0; i < n; i++ {
				runtime.GC()
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			out.Encode(map[string]any{"op": "gc", "num_gc": ms.NumGC, "num_forced_gc": ms.NumForcedGC,
				"pause_total_ns": ms.PauseTotalNs, "pause_ns": ms.PauseNs, "pause_end": ms.PauseEnd,
				"next_gc": ms.NextGC, "heap_alloc": ms.HeapAlloc, "last_gc": ms.LastGC,
				"gogc": debug.SetGCPercent(gogc), "memory_limit": debug.SetMemoryLimit(-1)})
		}
	}
}
