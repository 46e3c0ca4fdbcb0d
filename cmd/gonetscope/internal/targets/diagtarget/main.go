// Command diagtarget is the test target of `gonetscope diagnose`: a small
// Go network service that is healthy, or has exactly one problem of the
// checklist (-problem), and says what it did as JSON lines: its own
// goroutine ids, fds and ports, so the tests can hold the report's
// evidence against them.
//
// After a ready line it waits for a line on stdin, then runs a healthy
// keep-alive request/response loop with the problem on top, prints done
// after -run, and goes on until stdin closes.
//
// Problems:
//
//	slowpeer     a downstream (in this process) answers each request after -delay
//	overflow     a listener with backlog 1 that never accepts; an untraced
//	             child process dials it 20 times at once
//	starve       GOMAXPROCS 1 and three CPU-bound goroutines; a child process
//	             sends a heartbeat byte every 15ms to a reader goroutine
//	refused      dials a closed port every 50ms
//	slowconnect  dials a child process whose full accept queue drops the SYN,
//	             so the handshake completes at the SYN's retransmission (~1s)
//	fds          lowers its soft RLIMIT_NOFILE to 64 and opens fds up to 60
//	closewait    accepts 12 connections whose client (this process) closes
//	             them, and never closes its side
//	gomaxprocs   sets GOMAXPROCS to -procs (the test gives it a CPU quota)
//	gcpause      a goroutine spins in call-free loops of ~20ms (run it with
//	             GODEBUG=asyncpreemptoff=1: the GC's stop-the-world waits
//	             for each loop to end) while another forces a GC every 50ms;
//	             at done it reports its own pauses of the run
//	nodeadline   reads a connection whose peer never sends, with no deadline
//	heapgrow     keeps a 256 KiB buffer every 10ms (never freed) and forces a
//	             GC every 250ms; at done it reports what its own heap profile
//	             (runtime/pprof) says the keeping site holds
//	contention   records its mutex profile from the start
//	             (SetMutexProfileFraction(1)); four goroutines take turns on one lock, each holding it
//	             for 2ms; at done it reports what its own mutex profile says
//	             of the holder
//	cpubound     GOMAXPROCS 1 from the start and a goroutine that spins in
//	             one function (spin); at done it reports the function its own CPU
//	             profile (runtime/pprof) has the most samples in
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/google/pprof/profile"
)

var (
	problem = flag.String("problem", "", "the one problem to have (empty: healthy)")
	run     = flag.Duration("run", 2*time.Second, "how long to run the healthy loop (and the problem) after the start line")
	delay   = flag.Duration("delay", 150*time.Millisecond, "slowpeer: how long the downstream takes")
	procs   = flag.Int("procs", 2, "gomaxprocs: the GOMAXPROCS to set")
	child   = flag.String("child", "", "internal: run as the helper process: dial ADDR, heartbeat ADDR, or listen")
)

var (
	outMu sync.Mutex
	out   = json.NewEncoder(os.Stdout)
)

// report prints one fact as a JSON line.
func report(op string, kv ...any) {
	m := map[string]any{"op": op}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	outMu.Lock()
	defer outMu.Unlock()
	if err := out.Encode(m); err != nil {
		panic(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "diagtarget:", err)
	os.Exit(1)
}

// goid is the calling goroutine's id, from its stack header.
func goid() uint64 {
	var buf [64]byte
	b := bytes.TrimPrefix(buf[:runtime.Stack(buf[:], false)], []byte("goroutine "))
	id, err := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	if err != nil {
		panic(err)
	}
	return id
}

func fdOf(c syscall.Conn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		panic(err)
	}
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func port(a net.Addr) int { return a.(*net.TCPAddr).Port }

func main() {
	flag.Parse()
	if *child != "" {
		runChild(*child, flag.Args())
		return
	}
	if *problem == "cpubound" {
		runtime.GOMAXPROCS(1)
	}
	if *problem == "contention" {
		// From the start, as a program that records it does: diagnose's
		// first read at its attach finds it on.
		runtime.SetMutexProfileFraction(1)
	}
	report("ready", "pid", os.Getpid())
	stdin := bufio.NewReader(os.Stdin)
	if _, err := stdin.ReadString('\n'); err != nil {
		return
	}
	stop, up := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	if *problem != "starve" { // starve's own waits are the whole signal
		wg.Add(1)
		go func() { defer wg.Done(); healthy(stop, up) }()
		<-up // its fds are open before the problem's are counted
	}
	problems := map[string]func(){
		"": func() {}, "slowpeer": slowPeer, "overflow": overflow, "starve": starve, "refused": refused,
		"slowconnect": slowConnect, "fds": fds, "closewait": closeWait, "gomaxprocs": gomaxprocs,
		"gcpause": gcPause, "nodeadline": noDeadline, "heapgrow": heapGrow, "contention": contention, "cpubound": cpuBound,
	}
	f, ok := problems[*problem]
	if !ok {
		fail(fmt.Errorf("unknown -problem %q", *problem))
	}
	end := time.Now().Add(*run)
	f()
	time.Sleep(time.Until(end))
	if atDone != nil {
		atDone()
	}
	report("done")
	io.Copy(io.Discard, stdin) // until stdin closes, the healthy loop on
	close(stop)
	wg.Wait()
}

// healthy is a keep-alive request/response loop on loopback: short
// requests answered at once, 200 a second.
func healthy(stop, up chan struct{}) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		fail(err)
	}
	defer c.Close()
	buf := make([]byte, 4)
	for first := true; ; first = false {
		if !first {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			fail(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			fail(err)
		}
		if first {
			close(up)
		}
	}
}

// slowPeer: five requests on one connection to a downstream that takes
// -delay to answer each.
func slowPeer() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 1)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			time.Sleep(*delay)
			c.Write(buf)
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		fail(err)
	}
	report("slowpeer", "goid", goid(), "fd", fdOf(c.(*net.TCPConn)), "rport", port(ln.Addr()))
	buf := make([]byte, 1)
	for range 5 {
		c.Write([]byte{'?'})
		if _, err := c.Read(buf); err != nil {
			fail(err)
		}
	}
}

// listenBacklog listens on loopback with an explicit backlog.
func listenBacklog(backlog int) (net.Listener, int) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		fail(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		fail(err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		fail(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		fail(err)
	}
	return ln, fdOf(ln.(*net.TCPListener))
}

// helper starts this program as the helper process.
func helper(args ...string) *exec.Cmd {
	self, _ := os.Executable()
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	return cmd
}

// overflow: nobody accepts on a backlog-1 listener that an untraced
// process dials 20 times at once.
func overflow() {
	ln, fd := listenBacklog(1)
	report("overflow", "lport", port(ln.Addr()), "listen_fd", fd)
	if err := helper("-child", "dial", ln.Addr().String()).Run(); err != nil {
		fail(err)
	}
	runtime.KeepAlive(ln)
}

// starve: a heartbeat every 20ms from another process, read by one
// goroutine while three CPU-bound ones hold the only P.
func starve() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	p := helper("-child", "heartbeat", ln.Addr().String())
	if err := p.Start(); err != nil {
		fail(err)
	}
	c, err := ln.Accept()
	if err != nil {
		fail(err)
	}
	runtime.GOMAXPROCS(1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := 1.0
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := range 1_000_000 {
					x = math.Sqrt(x + float64(i))
				}
			}
		}()
	}
	report("starve", "goid", goid(), "fd", fdOf(c.(*net.TCPConn)))
	r := bufio.NewReader(c)
	for range 100 {
		if _, err := r.ReadByte(); err != nil {
			break
		}
	}
	close(stop)
	wg.Wait()
	runtime.GOMAXPROCS(2)
	c.Close()
	p.Wait()
}

// refused: dials to a port nobody listens on.
func refused() {
	tmp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	addr := tmp.Addr().String()
	tmp.Close()
	report("refused", "goid", goid(), "rport", port(tmp.Addr()))
	for range 10 {
		if _, err := net.Dial("tcp4", addr); err == nil {
			fail(fmt.Errorf("dial %s succeeded", addr))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// slowConnect: the helper's listener has a full accept queue; it starts
// accepting half a second after this dial, which completes when the SYN
// is retransmitted.
func slowConnect() {
	p := helper("-child", "listen")
	stdout, _ := p.StdoutPipe()
	stdin, _ := p.StdinPipe()
	if err := p.Start(); err != nil {
		fail(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		fail(err)
	}
	addr := string(bytes.TrimSpace([]byte(line)))
	go func() {
		time.Sleep(500 * time.Millisecond)
		io.WriteString(stdin, "accept\n")
	}()
	start := time.Now()
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		fail(err)
	}
	report("slowconnect", "goid", goid(), "fd", fdOf(c.(*net.TCPConn)), "rport", port(c.RemoteAddr()),
		"dial_ns", time.Since(start).Nanoseconds())
	c.Close()
	stdin.Close()
	p.Wait()
}

// fds: a soft limit of 64 fds, 60 of them open.
func fds() {
	lim := syscall.Rlimit{Cur: 64, Max: 64}
	var cur syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur)
	lim.Max = cur.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fail(err)
	}
	var files []*os.File
	for open := countFDs(); open < 60; open++ {
		f, err := os.Open(os.DevNull)
		if err != nil {
			fail(err)
		}
		files = append(files, f)
	}
	report("fds", "open", countFDs(), "limit", lim.Cur)
	runtime.KeepAlive(files)
	go func() { time.Sleep(time.Hour); runtime.KeepAlive(files) }()
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		fail(err)
	}
	return len(ents) - 1 // the directory's own fd
}

var kept []net.Conn

// closeWait: 12 accepted connections that the client closed and this
// side never does.
func closeWait() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	var fdList []int
	for range 12 {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			fail(err)
		}
		s, err := ln.Accept()
		if err != nil {
			fail(err)
		}
		c.Close()
		kept = append(kept, s)
		fdList = append(fdList, fdOf(s.(*net.TCPConn)))
	}
	report("closewait", "fds", fdList, "lport", port(ln.Addr()))
}

func gomaxprocs() {
	runtime.GOMAXPROCS(*procs)
	report("gomaxprocs", "gomaxprocs", runtime.GOMAXPROCS(0))
}

// runChild is the helper process: "dial ADDR" (20 dials at once, 1s
// timeout), "heartbeat ADDR" (a byte every 15ms, 100 times), "listen" (a
// backlog-1 listener filled by two dials of its own; it prints its
// address, and accepts everything once told "accept" on stdin).
func runChild(mode string, args []string) {
	switch mode {
	case "dial":
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if c, err := net.DialTimeout("tcp4", args[0], time.Second); err == nil {
					c.Close()
				}
			}()
		}
		wg.Wait()
	case "heartbeat":
		c, err := net.Dial("tcp4", args[0])
		if err != nil {
			os.Exit(1)
		}
		for range 100 {
			time.Sleep(15 * time.Millisecond)
			if _, err := c.Write([]byte{'.'}); err != nil {
				return
			}
		}
	case "listen":
		ln, _ := listenBacklog(1)
		conns := make(chan net.Conn, 100)
		for range 3 { // two fill the queue (backlog+1), the third waits on its SYN
			go func() {
				if c, err := net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second); err == nil {
					conns <- c
				}
			}()
		}
		time.Sleep(200 * time.Millisecond)
		fmt.Println(ln.Addr())
		bufio.NewReader(os.Stdin).ReadString('\n')
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns <- c
			}
		}()
		io.Copy(io.Discard, os.Stdin)
	}
}

// atDone ends a problem that runs in the background (gcpause, heapgrow,
// contention, cpubound) and reports what it did.
var atDone func()

// loops runs each of fs over and over on a goroutine of its own until
// stop, which waits for them.
func loops(fs ...func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, f := range fs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
					f()
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

var spinSink uint64

//go:noinline
func spin(n int) {
	x := spinSink
	for i := 0; i < n; i++ {
		x = x*31 + uint64(i)
	}
	spinSink = x
}

// gcPause: forced GCs whose stop-the-world waits for a call-free loop.
func gcPause() {
	// About 20ms of spinning per call.
	start := time.Now()
	spin(1 << 22)
	n := int(float64(1<<22) * float64(20*time.Millisecond) / float64(time.Since(start)))
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := loops(func() { spin(n) }, func() { time.Sleep(50 * time.Millisecond); runtime.GC() })
	atDone = func() {
		stop()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		var pauses []uint64
		for c := before.NumGC + 1; c <= ms.NumGC; c++ {
			pauses = append(pauses, ms.PauseNs[(c-1)%256])
		}
		slices.Sort(pauses)
		report("gcpause", "cycles", ms.NumGC-before.NumGC, "max_pause_ns", pauses[len(pauses)-1],
			"p99_pause_ns", pauses[max(int(math.Ceil(0.99*float64(len(pauses))))-1, 0)])
	}
}

// noDeadline: a connection to itself whose client never sends; its server
// side is read with no deadline.
func noDeadline() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		fail(err)
	}
	s, err := ln.Accept()
	if err != nil {
		fail(err)
	}
	kept = append(kept, c, s)
	go func() {
		report("nodeadline", "goid", goid(), "fd", fdOf(s.(*net.TCPConn)), "lport", port(s.LocalAddr()), "rport", port(s.RemoteAddr()))
		var b [1]byte
		s.Read(b[:])
	}()
}

// heapKept is what heapgrow keeps: never freed.
var heapKept [][]byte

// keep is heapgrow's one allocation site.
//
//go:noinline
func keep() {
	heapKept = append(heapKept, make([]byte, 256<<10))
}

// heapGrow: the heap in use grows by ~25 MiB a second at one site.
func heapGrow() {
	stop := loops(func() { time.Sleep(10 * time.Millisecond); keep() }, func() { time.Sleep(250 * time.Millisecond); runtime.GC() })
	atDone = func() {
		stop()
		// A last cycle publishes every allocation of keep's to the heap
		// profile; keep allocates no more, so what it holds stays so.
		runtime.GC()
		var buf bytes.Buffer
		if err := pprof.Lookup("heap").WriteTo(&buf, 0); err != nil {
			fail(err)
		}
		p, err := profile.Parse(&buf)
		if err != nil {
			fail(err)
		}
		inuse := slices.IndexFunc(p.SampleType, func(t *profile.ValueType) bool { return t.Type == "inuse_space" })
		var fn, file string
		var line, held int64
		for _, s := range p.Sample {
			if len(s.Location) == 0 || len(s.Location[0].Line) == 0 {
				continue
			}
			if l := s.Location[0].Line[0]; l.Function != nil && l.Function.Name == "main.keep" {
				fn, file, line = l.Function.Name, l.Function.Filename, l.Line
				held += s.Value[inuse]
			}
		}
		report("heapgrow", "kept", len(heapKept), "func", fn, "file", file, "line", line, "inuse_bytes", held)
	}
}

// contended is contention's lock.
var contended sync.Mutex

// hold takes the lock and holds it 2ms; its Unlock is where the mutex
// profile puts the others' waiting.
//
//go:noinline
func hold() {
	contended.Lock()
	time.Sleep(2 * time.Millisecond)
	contended.Unlock()
}

// contention: four goroutines that want one lock all the time.
func contention() {
	stop := loops(hold, hold, hold, hold)
	atDone = func() {
		stop()
		var buf bytes.Buffer
		if err := pprof.Lookup("mutex").WriteTo(&buf, 0); err != nil {
			fail(err)
		}
		p, err := profile.Parse(&buf)
		if err != nil {
			fail(err)
		}
		var fn, file string
		var line, count, delay int64
		// main.hold's frame, below sync.(*Mutex).Unlock (inlined into it,
		// so maybe on the same location).
	samples:
		for _, s := range p.Sample {
			for _, loc := range s.Location {
				for _, l := range loc.Line {
					if l.Function != nil && l.Function.Name == "main.hold" {
						fn, file, line = l.Function.Name, l.Function.Filename, l.Line
						count += s.Value[0]
						delay += s.Value[1]
						continue samples
					}
				}
			}
		}
		report("contention", "func", fn, "file", file, "line", line, "contentions", count, "delay_ns", delay)
	}
}

// cpuBound: one goroutine always on the one P, in spin.
func cpuBound() {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		fail(err)
	}
	stop := loops(func() { spin(1 << 20) })
	atDone = func() {
		stop()
		pprof.StopCPUProfile()
		p, err := profile.Parse(&buf)
		if err != nil {
			fail(err)
		}
		flat := map[string]int64{}
		for _, s := range p.Sample {
			if len(s.Location) > 0 && len(s.Location[0].Line) > 0 && s.Location[0].Line[0].Function != nil {
				flat[s.Location[0].Line[0].Function.Name] += s.Value[0]
			}
		}
		top := ""
		for fn, n := range flat {
			if top == "" || n > flat[top] {
				top = fn
			}
		}
		report("cpubound", "top_func", top, "top_samples", flat[top])
	}
}
