// Command ackoverflow makes accept-queue overflows on the handshake's final
// ACK, not on the SYN: its listener (plain TCP, never accepted from) sets
// TCP_DEFER_ACCEPT, so a client's bare ACK leaves the connection a request
// socket and only its first data segment completes the handshake. All the
// clients connect while the accept queue is not full (so no SYN is
// dropped, every connect succeeds), then each writes a byte: the request
// sockets beyond the queue's limit overflow there, in
// tcp_v4_syn_recv_sock, and again at each retransmit of the byte.
//
// It prints JSON lines: ready (pid, listen_fd, port), then, after "go" on
// stdin, burst (ok: connects that succeeded, failed) and done; it exits
// when stdin closes.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

var out = json.NewEncoder(os.Stdout)

func report(op string, kv ...any) {
	m := map[string]any{"op": op, "time_ns": time.Now().UnixNano()}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	out.Encode(m)
}

func fail(err error) {
	report("error", "error", err.Error())
	os.Exit(1)
}

func main() {
	n := flag.Int("clients", 9, "how many clients connect, one after another, then write: 2*somaxconn+1")
	hold := flag.Duration("hold", 1500*time.Millisecond, "how long the clients stay connected after writing")
	flag.Parse()

	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 30)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		fail(err)
	}
	var fd int
	raw.Control(func(f uintptr) { fd = int(f) })
	addr := ln.Addr().String()
	report("ready", "pid", os.Getpid(), "listen_fd", fd, "port", ln.Addr().(*net.TCPAddr).Port)

	var line [16]byte
	os.Stdin.Read(line[:])

	// One after another: the first somaxconn+1 are kept as request sockets
	// (deferred), the rest get SYN cookies and complete at their final
	// ACK, into the accept queue. With 2*somaxconn+1 clients the queue is
	// not yet full at any SYN.
	var conns []net.Conn
	failed := 0
	for range *n {
		c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
		if err != nil {
			failed++
			continue
		}
		conns = append(conns, c)
	}
	// Every connect is done before the first byte is written: the accept
	// queue was empty for all the SYNs.
	for _, c := range conns {
		c.Write([]byte{1})
	}
	report("burst", "ok", len(conns), "failed", failed)
	time.Sleep(*hold)
	for _, c := range conns {
		c.(*net.TCPConn).SetLinger(0) // RST: no more retransmits into the full queue
		c.Close()
	}
	time.Sleep(500 * time.Millisecond)
	report("done")
	io.Copy(io.Discard, os.Stdin) // the test reads our namespace's counters until it closes stdin
	ln.Close()
}
