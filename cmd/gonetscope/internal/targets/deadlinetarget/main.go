// Command deadlinetarget is a test target for missing deadlines: it
// accepts two connections from itself whose clients never send. One
// server goroutine reads its connection with no deadline (it waits
// forever), the other with a read deadline an hour away; a third waits in
// Accept on the listener. Once both are
// parked it prints, for each, its goroutine id, its fd, the ports and the
// file:line of the go statement that started it, then waits until stdin
// closes.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

var out = json.NewEncoder(os.Stdout)

func fail(err error) {
	fmt.Fprintln(os.Stderr, "deadlinetarget:", err)
	os.Exit(1)
}

func goid() uint64 {
	var b [64]byte
	f := strings.Fields(string(b[:runtime.Stack(b[:], false)]))
	n, _ := strconv.ParseUint(f[1], 10, 64)
	return n
}

// nextLine is "file:line" of the line after its call.
func nextLine() string {
	_, file, line, _ := runtime.Caller(1)
	return fmt.Sprintf("%s:%d", file, line+1)
}

func fdOf(c net.Conn) int {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		fail(err)
	}
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

type reader struct {
	Goid        uint64 `json:"goid"`
	FD          int    `json:"fd"`
	Lport       int    `json:"lport"`
	Rport       int    `json:"rport"`
	CreatedAt   string `json:"created_at"`
	HasDeadline bool   `json:"has_deadline"`
}

//go:noinline
func readNoDeadline(c net.Conn, said chan<- reader, r reader) {
	r.Goid = goid()
	said <- r
	var b [1]byte
	c.Read(b[:]) // forever: the peer never sends
}

//go:noinline
func readWithDeadline(c net.Conn, said chan<- reader, r reader) {
	r.Goid = goid()
	c.SetReadDeadline(time.Now().Add(time.Hour))
	said <- r
	var b [1]byte
	c.Read(b[:])
}

func main() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	out.Encode(map[string]any{"op": "ready", "pid": os.Getpid()})
	in := bufio.NewReader(os.Stdin)
	in.ReadString('\n')
	said := make(chan reader)
	var clients []net.Conn
	for i, deadline := range []bool{false, true} {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			fail(err)
		}
		clients = append(clients, c)
		s, err := ln.Accept()
		if err != nil {
			fail(err)
		}
		r := reader{FD: fdOf(s), Lport: s.LocalAddr().(*net.TCPAddr).Port, Rport: s.RemoteAddr().(*net.TCPAddr).Port, HasDeadline: deadline}
		if i == 0 {
			r.CreatedAt = nextLine()
			go readNoDeadline(s, said, r)
		} else {
			r.CreatedAt = nextLine()
			go readWithDeadline(s, said, r)
		}
		r = <-said
		// Parked: its g is in the pollDesc (the runtime's own goroutine
		// list says so; here, wait until it is no longer runnable).
		for !parked(r.Goid) {
			time.Sleep(time.Millisecond)
		}
		out.Encode(map[string]any{"op": "reader", "reader": r})
	}
	// And an accept loop, which waits on its listener with no deadline
	// by design: not a missing deadline.
	acceptor := make(chan uint64)
	go func() {
		acceptor <- goid()
		ln.Accept()
	}()
	for id := <-acceptor; !parked(id); {
		time.Sleep(time.Millisecond)
	}
	out.Encode(map[string]any{"op": "parked"})
	in.ReadString('\n')
	for _, c := range clients {
		c.Close()
	}
}

// parked reports whether goroutine id waits in the netpoller, as the
// runtime's own dump says it ("[IO wait").
func parked(id uint64) bool {
	buf := make([]byte, 1<<20)
	dump := string(buf[:runtime.Stack(buf, true)])
	return strings.Contains(dump, fmt.Sprintf("goroutine %d [IO wait", id))
}
