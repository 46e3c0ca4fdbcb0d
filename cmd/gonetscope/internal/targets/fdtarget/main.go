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
	"io"
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

// fdDir is /proc/self/fd, opened once and kept: counting through a
// directory opened for each count would hold one more fd while it counts,
// and gonetscope reading the fds then would see it.
var fdDir *os.File

func countFDs() int {
	if fdDir == nil {
		var err error
		if fdDir, err = os.Open("/proc/self/fd"); err != nil {
			fail(err)
		}
	}
	if _, err := fdDir.Seek(0, io.SeekStart); err != nil {
		fail(err)
	}
	names, err := fdDir.Readdirnames(-1)
	if err != nil {
		fail(err)
	}
	return len(names)
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
		// Counted once, then opened or closed in one quick run: a reading
		// of gonetscope's in between sees a count the target never reports.
		case "open":
			for range n - countFDs() {
				f, err := os.Open(os.DevNull)
				if err != nil {
					fail(err)
				}
				files = append(files, f)
			}
		case "close":
			for range min(countFDs()-n, len(files)) {
				files[len(files)-1].Close()
				files = files[:len(files)-1]
			}
		}
		out.Encode(map[string]any{"op": cmd, "open": countFDs(), "limit": lim.Cur, "tcp_states": tcp})
	}
}
