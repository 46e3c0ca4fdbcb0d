// Command scantarget is a test target for the goroutine scan: it parks
// -pre goroutines at one go statement before it says it is ready (before
// gonetscope attaches); after a line on stdin it leaks -leak goroutines per
// -tick at another, for -ticks ticks, then reports its own counts: from
// runtime.NumGoroutine and its goroutine profile (pprof), per site, taken
// at one moment, and stays idle (nothing starts or ends) until stdin
// closes. Both go statements pass an argument, so the compiler wraps them
// (main.main.gowrap1): the sites must still be named by the functions.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	pre   = flag.Int("pre", 20000, "goroutines parked before the ready line")
	leak  = flag.Int("leak", 10, "goroutines leaked per tick after the start line")
	tick  = flag.Duration("tick", 100*time.Millisecond, "how often to leak")
	ticks = flag.Int("ticks", 16, "how many ticks to leak for")
	_     = flag.Bool("wait-stdin", true, "wait for a line on stdin before starting (always)")
)

var out = json.NewEncoder(os.Stdout)

// nextLine is "file:line" of the line after its call.
func nextLine() string {
	_, file, line, _ := runtime.Caller(1)
	return fmt.Sprintf("%s:%d", file, line+1)
}

var (
	never = make(chan struct{})
	mu    sync.Mutex
	goids []uint64 // of the leaked goroutines
)

func goid() uint64 {
	var b [64]byte
	f := strings.Fields(string(b[:runtime.Stack(b[:], false)]))
	n, _ := strconv.ParseUint(f[1], 10, 64)
	return n
}

//go:noinline
func parkedPre(i int) {
	_ = i
	<-never
}

//go:noinline
func leaked(i int, started *sync.WaitGroup) {
	mu.Lock()
	goids = append(goids, goid())
	mu.Unlock()
	started.Done()
	<-never
}

var preAt, leakAt string

//go:noinline
func leakLoop() {
	var started sync.WaitGroup
	for t := 0; t < *ticks; t++ {
		for i := 0; i < *leak; i++ {
			started.Add(1)
			leakAt = nextLine()
			go leaked(i, &started)
		}
		time.Sleep(*tick)
	}
	started.Wait()
}

// profileCounts counts the goroutines of the goroutine profile whose
// stacks hold each of fns.
func profileCounts(fns ...string) map[string]int {
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 1)
	counts := map[string]int{}
	n := 0 // the count of the block being read: "N @ pcs", then "#\tpc\tfunc+off\tfile:line"
	for _, line := range strings.Split(buf.String(), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "@" {
			n, _ = strconv.Atoi(f[0])
			continue
		}
		for _, fn := range fns {
			if strings.Contains(line, "\t"+fn+"+") {
				counts[fn] += n
			}
		}
	}
	return counts
}

func main() {
	flag.Parse()
	for i := 0; i < *pre; i++ {
		preAt = nextLine()
		go parkedPre(i)
	}
	out.Encode(map[string]any{"op": "ready", "pid": os.Getpid(), "num_goroutine": runtime.NumGoroutine()})
	in := bufio.NewReader(os.Stdin)
	in.ReadString('\n')
	leakLoop()
	mu.Lock()
	first := goids[0]
	for _, g := range goids {
		first = min(first, g)
	}
	mu.Unlock()
	c := profileCounts("main.parkedPre", "main.leaked")
	out.Encode(map[string]any{"op": "counts", "num_goroutine": runtime.NumGoroutine(), "pre": c["main.parkedPre"], "leaked": c["main.leaked"],
		"pre_at": preAt, "leak_at": leakAt, "oldest_leaked_goid": first})
	in.ReadString('\n') // idle until stdin closes
}
