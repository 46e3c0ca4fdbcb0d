// Command proftarget is a Go program whose time goes to known functions,
// for gonetscope's profile tests: with -burn it spins in main.burnCPU; with
// -waits it makes a loopback peer answer after -delay and waits for the
// answer in main.waitForPeer, its only long network wait. It prints a
// ready line with its PID, waits for a line on stdin, works, and prints
// what it did.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

var (
	burn     = flag.Duration("burn", 0, "spin in main.burnCPU this long")
	waits    = flag.Int("waits", 0, "wait this many times for a slow peer in main.waitForPeer")
	delay    = flag.Duration("delay", 20*time.Millisecond, "how long the peer takes to answer")
	overflow = flag.Int("overflow", 0, "listen with backlog 1, never accept, dial this many times at once (1s timeout), print an overflow line, and keep the listener until the next stdin line")
	sleep    = flag.Duration("sleep", 0, "block this long off CPU in the nanosleep system call, in main.sleepInKernel")
	spawn    = flag.Int("goroutines", 0, "start this many goroutines in main.spawnBlocked (and 5 more that end), print a spawned line, and keep them until the next stdin line")
)

var sink uint64

// sleepInKernel keeps its thread off CPU for d in one system call (not in
// the Go scheduler, which would park the goroutine and run another).
//
//go:noinline
func sleepInKernel(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}

// keep holds listeners open until exit.
var keep []net.Listener

//go:noinline
func burnCPU(d time.Duration) uint64 {
	var x uint64 = 1
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for i := 0; i < 100000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	return x
}

//go:noinline
func waitForPeer(c net.Conn, buf []byte) error {
	_, err := c.Read(buf)
	return err
}

func main() {
	flag.Parse()
	out := json.NewEncoder(os.Stdout)
	out.Encode(map[string]any{"op": "ready", "pid": os.Getpid()})
	in := bufio.NewReader(os.Stdin)
	in.ReadString('\n')
	if *burn > 0 {
		sink = burnCPU(*burn)
		out.Encode(map[string]any{"op": "burned", "ns": burn.Nanoseconds()})
	}
	if *waits > 0 {
		if err := slowPeer(*waits); err != nil {
			fmt.Fprintln(os.Stderr, "proftarget:", err)
			os.Exit(1)
		}
		out.Encode(map[string]any{"op": "waited", "waits": *waits, "delay_ns": delay.Nanoseconds()})
	}
	if *sleep > 0 {
		sleepInKernel(*sleep)
		out.Encode(map[string]any{"op": "slept", "ns": sleep.Nanoseconds()})
	}
	if *overflow > 0 {
		if err := overflowListener(out, *overflow); err != nil {
			fmt.Fprintln(os.Stderr, "proftarget:", err)
			os.Exit(1)
		}
		in.ReadString('\n')
	}
	if *spawn > 0 {
		release := make(chan struct{})
		spawnBlocked(*spawn, release)
		// Five more from the same site that end at once: dead
		// goroutines, which must not count.
		ended := make(chan struct{})
		close(ended)
		spawnBlocked(5, ended)
		time.Sleep(50 * time.Millisecond)
		out.Encode(map[string]any{"op": "spawned", "goroutines": *spawn})
		in.ReadString('\n')
		close(release)
	}
	out.Encode(map[string]any{"op": "done"})
}

// spawnBlocked starts n goroutines that block until release is closed,
// and returns once they all run: their creation site is main.spawnBlocked.
//
//go:noinline
func spawnBlocked(n int, release chan struct{}) {
	started := make(chan struct{})
	for i := 0; i < n; i++ {
		go func() {
			started <- struct{}{}
			<-release
		}()
	}
	for i := 0; i < n; i++ {
		<-started
	}
}

// slowPeer: the peer writes one byte per request, -delay after it.
func slowPeer(n int) error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
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
		b := make([]byte, 1)
		for {
			if _, err := c.Read(b); err != nil {
				return
			}
			time.Sleep(*delay)
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 1)
	for i := 0; i < n; i++ {
		if _, err := c.Write(buf); err != nil {
			return err
		}
		if err := waitForPeer(c, buf); err != nil {
			return err
		}
	}
	return nil
}

// overflowListener makes a plain TCP listener with an accept queue of 1
// that never accepts, and dials it n times at once: the queue fills and
// the listener drops the rest of the SYNs.
func overflowListener(out *json.Encoder, n int) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		return err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	if err := syscall.Listen(fd, 1); err != nil {
		return err
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return err
	}
	port := sa.(*syscall.SockaddrInet4).Port
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, failed := 0, 0
	var conns []net.Conn
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				return
			}
			ok++
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	// Beside it, a listener made the usual way (MPTCP since Go 1.24).
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	keep = append(keep, ln)
	out.Encode(map[string]any{"op": "overflow", "fd": fd, "port": port, "ok": ok, "failed": failed,
		"net_listen_port": ln.Addr().(*net.TCPAddr).Port})
	return nil
}
