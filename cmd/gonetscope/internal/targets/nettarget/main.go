// Command nettarget is a small Go network program that does known things and
// says what it did: it prints, as JSON lines, its own goroutine ids, fds and
// ports for each dial, accept and delayed read. gonetscope's integration
// tests trace it and compare the tracer's events with what it printed.
//
// It builds with every Go toolchain gonetscope supports, back to go1.17
// (TestTraceBuilds): no any, no atomic types, no range over ints.
//
// Each round: a server goroutine accepts a connection and writes to it after
// -delay; a client goroutine dials, then reads (waiting -delay for the peer);
// then the client dials a closed port and is refused.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

var (
	rounds       = flag.Int("rounds", 1, "how many rounds to run")
	delay        = flag.Duration("delay", 50*time.Millisecond, "how long the server waits before it writes")
	waitStdin    = flag.Bool("wait-stdin", false, "print a ready line, then wait for a line on stdin before starting")
	linger       = flag.Duration("linger", 0, "stay alive this long after the last round")
	network      = flag.String("net", "tcp4", "tcp4 or tcp6")
	flood        = flag.Int("flood", 0, "after the rounds, make this many raw EAGAIN reads on one socket: each read after the first is a park and a resume")
	emfile       = flag.Bool("emfile", false, "after the rounds, make accept fail with EMFILE once")
	onStdin      = flag.Bool("stdin-rounds", false, "after the rounds, run one more round per line read from stdin, until EOF")
	churn        = flag.Int("churn", 0, "after the rounds, this many connections dialed, accepted and closed one after another: report the process's CPU time (user and system) and the wall time per connection")
	pingpong     = flag.Int("pingpong", 0, "after the rounds, this many 1-byte request/response exchanges between two goroutines over one loopback connection: each side parks in the netpoller for each message; report the time per exchange")
	readDeadline = flag.Duration("read-deadline", 0, "set this read deadline on the client's connection right before its delayed read (0: none)")
	keepalive    = flag.Int("keepalive", 0, "after the rounds, this many request/response exchanges on one connection, -delay apart: each request arrives in two halves -delay apart, each response -delay after the request")
)

var out = json.NewEncoder(os.Stdout)

// report prints one fact as a JSON line.
func report(op string, kv ...interface{}) {
	m := map[string]interface{}{"op": op}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	if err := out.Encode(m); err != nil {
		panic(err)
	}
}

// goid returns the calling goroutine's id, from its stack header
// ("goroutine 7 [running]:").
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

// nextLine returns "file:line" of the line after its call: where the
// stack of the call on that line must point (--stacks).
func nextLine() string {
	_, file, line, _ := runtime.Caller(1)
	return fmt.Sprintf("%s:%d", file, line+1)
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

func main() {
	flag.Parse()
	host := "127.0.0.1"
	if *network == "tcp6" {
		host = "::1"
	}
	report("ready", "pid", os.Getpid())
	if *waitStdin {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	for i := 0; i < *rounds; i++ {
		if err := round(host); err != nil {
			fmt.Fprintln(os.Stderr, "nettarget:", err)
			os.Exit(1)
		}
	}
	if *onStdin {
		lines := bufio.NewScanner(os.Stdin)
		for lines.Scan() {
			if err := round(host); err != nil {
				fmt.Fprintln(os.Stderr, "nettarget:", err)
				os.Exit(1)
			}
			report("round_done")
		}
	}
	if *flood > 0 {
		if err := floodReads(*flood); err != nil {
			fmt.Fprintln(os.Stderr, "nettarget:", err)
			os.Exit(1)
		}
	}
	if *churn > 0 {
		if err := connChurn(host, *churn); err != nil {
			fmt.Fprintln(os.Stderr, "nettarget:", err)
			os.Exit(1)
		}
	}
	if *pingpong > 0 {
		if err := pingPong(host, *pingpong); err != nil {
			fmt.Fprintln(os.Stderr, "nettarget:", err)
			os.Exit(1)
		}
	}
	if *keepalive > 0 {
		if err := keepaliveExchanges(host, *keepalive); err != nil {
			fmt.Fprintln(os.Stderr, "nettarget:", err)
			os.Exit(1)
		}
	}
	if *reuse > 0 {
		if err := reuseFD(host, *reuse); err != nil {
			fmt.Fprintln(os.Stderr, "nettarget: reuse:", err)
			os.Exit(1)
		}
	}
	if *emfile {
		if err := acceptEMFILE(); err != nil {
			fmt.Fprintln(os.Stderr, "nettarget:", err)
			os.Exit(1)
		}
	}
	runExtras()
	report("threads", "tids", threads())
	report("done")
	time.Sleep(*linger)
}

func round(host string) error {
	ln, err := net.Listen(*network, net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	lfd := fdOf(ln.(*net.TCPListener))
	report("listen", "fd", lfd, "port", port)

	served := make(chan error, 1)
	go func() {
		acceptAt := nextLine()
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		report("accept", "goid", goid(), "fd", fdOf(c.(*net.TCPConn)), "listen_fd", lfd,
			"lport", port, "rport", c.RemoteAddr().(*net.TCPAddr).Port, "at", acceptAt)
		time.Sleep(*delay)
		_, err = c.Write([]byte("hello"))
		served <- err
	}()

	dialAt := nextLine()
	c, err := net.Dial(*network, ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	fd := fdOf(c.(*net.TCPConn))
	report("dial", "goid", goid(), "fd", fd, "lport", c.LocalAddr().(*net.TCPAddr).Port, "rport", port, "at", dialAt)
	if *readDeadline > 0 {
		if err := c.SetReadDeadline(time.Now().Add(*readDeadline)); err != nil {
			return err
		}
	}
	start := time.Now()
	buf := make([]byte, 5)
	readAt := nextLine()
	if _, err := c.Read(buf); err != nil {
		return err
	}
	report("read", "goid", goid(), "fd", fd, "wait_ns", time.Since(start).Nanoseconds(), "delay_ns", delay.Nanoseconds(),
		"lport", c.LocalAddr().(*net.TCPAddr).Port, "rport", port, "at", readAt)
	if err := <-served; err != nil {
		return err
	}

	// A port that was just closed refuses.
	tmp, err := net.Listen(*network, net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	closed := tmp.Addr().String()
	tmp.Close()
	_, err = net.Dial(*network, closed)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("dial %s: want ECONNREFUSED, got %v", closed, err)
	}
	report("refused", "goid", goid(), "rport", tmp.Addr().(*net.TCPAddr).Port)
	return nil
}

// floodReads reads n times from an empty non-blocking socket, bypassing the
// netpoller: every read returns EAGAIN, so every read after the first ends
// one wait and starts the next, n-1 netpoll_wait events with --min-wait 0.
func floodReads(n int) error {
	runtime.LockOSThread() // one goroutine, one thread: nothing else in between
	defer runtime.UnlockOSThread()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	buf := make([]byte, 1)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := syscall.Read(fds[0], buf); err != syscall.EAGAIN {
			return fmt.Errorf("flood read %d: want EAGAIN, got %v", i, err)
		}
	}
	perRead := time.Since(start).Nanoseconds() / int64(n)
	report("flood", "goid", goid(), "fd", fds[0], "reads", n, "ns_per_read", perRead)
	return nil
}

// pingPong makes n exchanges of one byte each way between a client and a
// server goroutine on one connection, the smallest real netpoll traffic:
// each message wakes a parked goroutine. It reports the time per exchange.
func pingPong(host string, n int) error {
	ln, err := net.Listen(*network, net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial(*network, ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 1)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := c.Write(buf); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
	}
	report("pingpong", "exchanges", n, "ns_per_exchange", time.Since(start).Nanoseconds()/int64(n))
	return nil
}

// connChurn dials n connections to its own listener one after another,
// as a client without keep-alive would, each accepted and both ends
// closed: what a connection costs the process (accept4, connect, its
// getsockopt, the parks). It reports CPU and wall time per connection.
func connChurn(host string, n int) error {
	ln, err := net.Listen(*network, net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	cpu := func() int64 {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	cpu0, start := cpu(), time.Now()
	for i := 0; i < n; i++ {
		c, err := net.Dial(*network, ln.Addr().String())
		if err != nil {
			return err
		}
		c.Close()
	}
	report("churn", "connections", n, "cpu_ns_per_conn", (cpu()-cpu0)/int64(n), "ns_per_conn", time.Since(start).Nanoseconds()/int64(n))
	return nil
}

// keepaliveExchanges runs n request/response exchanges on one connection,
// like a keep-alive client and server: the server's read waits between
// requests are idle, its wait for a request's second half, and the
// client's waits for responses, are in the middle of work.
func keepaliveExchanges(host string, n int) error {
	ln, err := net.Listen(*network, net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	served := make(chan error, 1)
	serverFD := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		serverFD <- fdOf(c.(*net.TCPConn))
		req := make([]byte, 10)
		for i := 0; i < n; i++ {
			if _, err := io.ReadFull(c, req); err != nil {
				served <- err
				return
			}
			time.Sleep(*delay)
			if _, err := c.Write([]byte("resp!")); err != nil {
				served <- err
				return
			}
		}
		served <- nil
	}()
	c, err := net.Dial(*network, ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	sfd := <-serverFD
	resp := make([]byte, 5)
	for i := 0; i < n; i++ {
		time.Sleep(*delay) // the server idles
		if _, err := c.Write([]byte("part1")); err != nil {
			return err
		}
		time.Sleep(*delay) // the server waits for the rest of the request
		if _, err := c.Write([]byte("part2")); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, resp); err != nil { // the client waits for the response
			return err
		}
	}
	if err := <-served; err != nil {
		return err
	}
	report("keepalive", "fd", fdOf(c.(*net.TCPConn)), "listen_fd", sfd, "ops", n)
	return nil
}

// acceptEMFILE lowers RLIMIT_NOFILE so that the next fd cannot be
// allocated, lets a connection arrive, and accepts: EMFILE.
func acceptEMFILE() error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		return err
	}
	// The lowest free fd number becomes the limit: no new fd fits.
	free, err := syscall.Dup(0)
	if err != nil {
		return err
	}
	syscall.Close(free)
	low := syscall.Rlimit{Cur: uint64(free), Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		return err
	}
	_, err = ln.Accept()
	id := goid()
	// Hold the limit a moment: the tracer reads it after the event.
	time.Sleep(300 * time.Millisecond)
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	if !errors.Is(err, syscall.EMFILE) {
		return fmt.Errorf("accept with RLIMIT_NOFILE %d: want EMFILE, got %v", free, err)
	}
	report("accept_error", "goid", id, "listen_fd", fdOf(ln.(*net.TCPListener)), "lport", ln.Addr().(*net.TCPAddr).Port,
		"errno", "EMFILE", "fd_limit", free)
	return nil
}

// threads lists the process's thread ids as it sees them itself (in its own
// PID namespace, inside a container), from /proc/self/task.
func threads() []int {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		panic(err)
	}
	var tids []int
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids
}
