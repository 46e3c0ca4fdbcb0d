// Command goroutinetarget is a test target for the goroutine dump: it
// starts 1,000 goroutines that park in known ways at known go statements
// (chan receive, select, sync.Mutex, time.Sleep, a socket read,
// sync.WaitGroup), runs two GCs so that the runtime records since when they
// wait, and prints, as JSON lines, its PID and the file:line of each go
// statement. With -spin N, N more run and sleep in turns. Each line "dump FILE" on stdin writes its own
// runtime.Stack(all) to FILE and prints the goroutine count by wait
// reason, which is what gonetscope's dump is checked against.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

var out = json.NewEncoder(os.Stdout)

// goLine is "file:line" of the go statement two lines below its call,
// in the loop that follows it.
func goLine() string {
	_, file, line, _ := runtime.Caller(1)
	return fmt.Sprintf("%s:%d", file, line+2)
}

//go:noinline
func chanRecv(ch chan int) { <-ch }

// waitEither is inlined into selectWait: its frame is an inlined one.
func waitEither(a, b chan int) int {
	select {
	case v := <-a:
		return v
	case v := <-b:
		return v
	}
}

//go:noinline
func selectWait(a, b chan int) { waitEither(a, b) }

//go:noinline
func mutexWait(mu *sync.Mutex) { mu.Lock() }

//go:noinline
func sleeper() { time.Sleep(time.Hour) }

//go:noinline
func netRead(c net.Conn) {
	var b [1]byte
	c.Read(b[:])
}

// spin runs, and sleeps, in turns: a goroutine whose state and stack
// change all the time, which a dump from outside must not show with a
// wrong stack.
//
//go:noinline
func spin() {
	for {
		for deadline := time.Now().Add(50 * time.Microsecond); time.Now().Before(deadline); {
		}
		time.Sleep(100 * time.Microsecond)
	}
}

var spinners = flag.Int("spin", 0, "goroutines that run and sleep in turns")

var (
	ch, a, b = make(chan int), make(chan int), make(chan int)
	mu       sync.Mutex
	wg       sync.WaitGroup
	conns    []net.Conn
)

// start runs the goroutines and returns the file:line of each go statement,
// by the function the goroutine runs.
func start() (map[string]string, error) {
	sites := map[string]string{}
	mu.Lock()
	wg.Add(1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	for i := 0; i < 100; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		s, err := ln.Accept()
		if err != nil {
			return nil, err
		}
		conns = append(conns, c, s)
	}
	sites["main.chanRecv"] = goLine()
	for i := 0; i < 300; i++ {
		go chanRecv(ch)
	}
	sites["main.selectWait"] = goLine()
	for i := 0; i < 200; i++ {
		go selectWait(a, b)
	}
	sites["main.mutexWait"] = goLine()
	for i := 0; i < 150; i++ {
		go mutexWait(&mu)
	}
	sites["main.sleeper"] = goLine()
	for i := 0; i < 150; i++ {
		go sleeper()
	}
	sites["main.netRead"] = goLine()
	for i := 0; i < 100; i++ {
		go netRead(conns[2*i])
	}
	sites["main.start.func1"] = goLine()
	for i := 0; i < 100; i++ {
		go func() { wg.Wait() }()
	}
	sites["main.spin"] = goLine()
	for i := 0; i < *spinners; i++ {
		go spin()
	}
	return sites, nil
}

// stateOf is the state in a runtime.Stack header: "chan receive" of
// "goroutine 7 [chan receive, 2 minutes]:".
func stateOf(header string) string {
	_, s, _ := strings.Cut(header, "[")
	s, _, _ = strings.Cut(s, "]")
	s, _, _ = strings.Cut(s, ",")
	return s
}

func dump(path string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		out.Encode(map[string]any{"op": "error", "error": err.Error()})
		return
	}
	states := map[string]int{}
	n := 0
	for _, block := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(block, "\n")
		states[stateOf(header)]++
		n++
	}
	out.Encode(map[string]any{"op": "dumped", "path": path, "goroutines": n, "states": states, "num_goroutine": runtime.NumGoroutine()})
}

func main() {
	flag.Parse()
	sites, err := start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "goroutinetarget:", err)
		os.Exit(1)
	}
	time.Sleep(200 * time.Millisecond) // let them park
	// A GC records when it first saw a goroutine blocked (g.waitsince),
	// as the end of the previous cycle's marking: the second GC records it.
	runtime.GC()
	runtime.GC()
	out.Encode(map[string]any{"op": "ready", "pid": os.Getpid(), "sites": sites, "started": time.Now().UnixNano()})
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if path, ok := strings.CutPrefix(in.Text(), "dump "); ok {
			dump(path)
		}
	}
}
