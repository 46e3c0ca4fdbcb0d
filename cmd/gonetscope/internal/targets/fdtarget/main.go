// Command fdtarget is a test target for fd pressure: it lowers its own
// soft RLIMIT_NOFILE to -limit, holds a TCP listener and one connection to
// it (both ends: one LISTEN and two ESTABLISHED sockets), prints a ready
// line and then obeys its stdin, a command per line:
//
//	open N    open /dev/null until N fds are open
//	close N   close them until N are open
//
// After each it prints its open fds (counted in /proc/self/fd), its limit
// and its TCP sockets by state, and then does nothing until the next.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
)

var out = json.NewEncoder(os.Stdout)

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fdtarget:", err)
	os.Exit(1)
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		fail(err)
	}
	return len(ents) - 1 // the directory's own fd
}

func main() {
	limit := flag.Uint64("limit", 64, "soft RLIMIT_NOFILE to set")
	flag.Parse()
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	lim.Cur = *limit
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fail(err)
	}
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
	defer c.Close()
	defer s.Close()
	tcp := map[string]int{"LISTEN": 1, "ESTABLISHED": 2}
	out.Encode(map[string]any{"op": "ready", "pid": os.Getpid()})
	var files []*os.File
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var n int
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		fmt.Sscan(arg, &n)
		switch cmd {
		case "open":
			for countFDs() < n {
				f, err := os.Open(os.DevNull)
				if err != nil {
					fail(err)
				}
				files = append(files, f)
			}
		case "close":
			for countFDs() > n && len(files) > 0 {
				files[len(files)-1].Close()
				files = files[:len(files)-1]
			}
		}
		out.Encode(map[string]any{"op": cmd, "open": countFDs(), "limit": lim.Cur, "tcp_states": tcp})
	}
}
