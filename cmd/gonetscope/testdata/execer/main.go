// Command execer waits on the network in a known goroutine, then replaces
// itself by exec (same PID) with another binary, which does the same: a
// target for tracing across an exec, such as a graceful restart into a
// binary built by another Go version.
//
// It prints JSON lines: ready (pid, go_version), then, after each "go" on
// stdin, read (the goid of the goroutine that waited -delay to read);
// after "exec" it execs -exec (with no arguments). It exits when stdin
// closes.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

var out = json.NewEncoder(os.Stdout)

func report(op string, kv ...any) {
	m := map[string]any{"op": op, "pid": os.Getpid(), "go_version": runtime.Version()}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	out.Encode(m)
}

func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

// waitRead reads from a peer that answers after delay: one netpoll wait.
func waitRead(delay time.Duration) (uint64, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		time.Sleep(delay)
		c.Write([]byte{1})
		c.Close()
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var b [1]byte
	_, err = c.Read(b[:])
	return goid(), err
}

func main() {
	next := flag.String("exec", "", "binary to exec on the line exec")
	delay := flag.Duration("delay", 50*time.Millisecond, "how long the peer takes to answer")
	flag.Parse()
	report("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "go":
			id, err := waitRead(*delay)
			if err != nil {
				report("error", "error", err.Error())
				continue
			}
			report("read", "goid", id)
		case "exec":
			if err := syscall.Exec(*next, []string{*next}, os.Environ()); err != nil {
				report("error", "error", err.Error())
			}
		}
	}
}
