// Command listentarget is a Go server whose accept loop misbehaves on
// purpose, for gonetscope's listen_overflow tests. It prints what it does as
// JSON lines: its listener's fd and port, the goroutine that accepts, when
// the accept loop stalls, and how a burst of its own client dials went.
//
// The listener's backlog is net.core.somaxconn of the network namespace it
// runs in (Go's net.Listen reads it). After "ready", it waits for a line on
// stdin, then: the client dials once (the trigger) and, 50ms later, -burst
// clients dial at once with -dial-timeout. What the acceptor does after the
// trigger depends on -mode:
//
//	stall:  sleeps -stall, then accepts promptly again
//	exit:   returns: nothing accepts on the listener any more
//	prompt: keeps accepting promptly
//	emfile: lowers RLIMIT_NOFILE so that every accept fails with EMFILE,
//	        and retries every 20ms; then it waits for a second line on
//	        stdin (the burst comes from another process, which still has
//	        fds), and restores the limit
//	starve: keeps accepting promptly, but main then spins for -stall
//	        without a function call: run with GOMAXPROCS=1 and
//	        GODEBUG=asyncpreemptoff=1, the parked acceptor is made runnable
//	        by the netpoller and the scheduler does not run it (the burst
//	        comes from another process)
//
// After the burst it waits -settle, prints "done", and exits when stdin
// closes.
//
// With -dial ADDR it is only a load generator: -burst concurrent dials to
// ADDR, -rounds times, -every apart; it prints one "burst" line per round.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	mode        = flag.String("mode", "stall", "what the accept loop does after the trigger: stall, exit or prompt")
	network     = flag.String("net", "tcp4", "tcp4 or tcp6")
	burst       = flag.Int("burst", 20, "how many clients dial at once")
	stall       = flag.Duration("stall", 2500*time.Millisecond, "how long the accept loop sleeps in -mode stall")
	dialTimeout = flag.Duration("dial-timeout", 1500*time.Millisecond, "each burst dial gives up after this")
	settle      = flag.Duration("settle", 1500*time.Millisecond, "wait this long after the stall or burst before printing done")
	dial        = flag.String("dial", "", "only dial ADDR in bursts (a load generator)")
	rounds      = flag.Int("rounds", 1, "with -dial: how many bursts")
	every       = flag.Duration("every", 200*time.Millisecond, "with -dial: time between bursts")
)

var (
	out      = json.NewEncoder(os.Stdout)
	oldLimit syscall.Rlimit // emfile: the limit to restore
)

func report(op string, kv ...any) {
	m := map[string]any{"op": op, "time_ns": time.Now().UnixNano()}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	if err := out.Encode(m); err != nil {
		panic(err)
	}
}

func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, err := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	if err != nil {
		panic(err)
	}
	return id
}

func fail(err error) {
	report("error", "error", err.Error())
	os.Exit(1)
}

// dialBurst dials addr n times at once and counts what happened.
func dialBurst(addr string, n int) (ok, failed int) {
	var wg sync.WaitGroup
	var okN, failN atomic.Int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout(*network, addr, *dialTimeout)
			if err != nil {
				failN.Add(1)
				return
			}
			okN.Add(1)
			c.Close()
		}()
	}
	wg.Wait()
	return int(okN.Load()), int(failN.Load())
}

func main() {
	flag.Parse()
	if *dial != "" {
		for i := 0; i < *rounds; i++ {
			ok, failed := dialBurst(*dial, *burst)
			report("burst", "ok", ok, "failed", failed)
			time.Sleep(*every)
		}
		return
	}
	host := "127.0.0.1"
	if *network == "tcp6" {
		host = "::1"
	}
	ln, err := net.Listen(*network, net.JoinHostPort(host, "0"))
	if err != nil {
		fail(err)
	}
	var lfd int
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		fail(err)
	}
	var proto int // IPPROTO_MPTCP (262) where Go listened with MPTCP
	raw.Control(func(fd uintptr) {
		lfd = int(fd)
		proto, _ = syscall.GetsockoptInt(lfd, syscall.SOL_SOCKET, syscall.SO_PROTOCOL)
	})
	addr := ln.Addr().String()

	acceptor := make(chan uint64)
	stalled := make(chan struct{})
	triggerClosed := make(chan struct{})
	var emfiles atomic.Int64
	go func() {
		acceptor <- goid()
		first := true
		for {
			c, err := ln.Accept()
			if errors.Is(err, syscall.EMFILE) {
				emfiles.Add(1)
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if err != nil {
				return
			}
			c.Close()
			if !first {
				continue
			}
			first = false
			switch *mode {
			case "stall":
				report("stall_start", "goid", goid())
				time.Sleep(*stall)
				report("stall_end", "goid", goid())
				close(stalled)
			case "emfile":
				// Once the client's end of the trigger is closed too, the
				// lowest free fd number becomes the limit: no new fd fits.
				<-triggerClosed
				free, err := syscall.Dup(0)
				if err != nil {
					fail(err)
				}
				syscall.Close(free)
				var old syscall.Rlimit
				syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old)
				oldLimit = old
				low := syscall.Rlimit{Cur: uint64(free), Max: old.Max}
				if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
					fail(err)
				}
				report("emfile_on", "goid", goid(), "fd_limit", free, "port", ln.Addr().(*net.TCPAddr).Port)
				close(stalled)
			case "exit":
				report("acceptor_exit", "goid", goid())
				close(stalled)
				return
			default:
				close(stalled)
			}
		}
	}()
	goidOfAcceptor = <-acceptor
	report("ready", "pid", os.Getpid(), "listen_fd", lfd, "port", ln.Addr().(*net.TCPAddr).Port,
		"acceptor_goid", goidOfAcceptor, "protocol", proto)
	in := bufio.NewReader(os.Stdin)
	in.ReadString('\n')

	trigger, err := net.Dial(*network, addr)
	if err != nil {
		fail(err)
	}
	trigger.Close()
	close(triggerClosed)
	time.Sleep(50 * time.Millisecond)
	if *burst > 0 {
		ok, failed := dialBurst(addr, *burst)
		report("burst", "ok", ok, "failed", failed)
	}
	<-stalled
	if *mode == "starve" {
		n := spinIterations(*stall)
		report("starve_on", "port", ln.Addr().(*net.TCPAddr).Port, "acceptor_goid", goidOfAcceptor)
		spinSink = spin(n)
		report("starve_off")
	}
	if *mode == "emfile" {
		in.ReadString('\n')
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &oldLimit)
		report("emfile_off", "accept_errors", emfiles.Load())
	}
	time.Sleep(*settle)
	report("done")
	io.Copy(io.Discard, in) // until stdin closes
}

var (
	goidOfAcceptor uint64
	spinSink       uint64
)

// spin adds n numbers without calling a function: with asynchronous
// preemption off, nothing else runs on this P meanwhile.
func spin(n uint64) uint64 {
	var x uint64
	for i := uint64(0); i < n; i++ {
		x += i ^ (x >> 3)
	}
	return x
}

// spinIterations calibrates spin to last about d.
func spinIterations(d time.Duration) uint64 {
	const probe = 20_000_000
	start := time.Now()
	spinSink += spin(probe)
	el := time.Since(start)
	if el <= 0 {
		el = time.Nanosecond
	}
	return uint64(float64(probe) * float64(d) / float64(el))
}
