package main

import (
	"flag"
	"fmt"
	"net"
	"time"
)

var reuse = flag.Duration("reuse", 0, "after the rounds: one goroutine parks on a read for this long until another closes its connection (no syscall wakes it), then dials again, which usually reuses the fd number, and reads data that is already there (no park)")

// reuseFD leaves a park with no resume behind on an fd, then has the same
// goroutine read on a new connection under the same fd number. Reported:
// the goroutine, both fds, and how long its one real wait lasted.
func reuseFD(host string, parked time.Duration) error {
	ln, err := net.Listen(*network, net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	first, err := net.Dial(*network, ln.Addr().String())
	if err != nil {
		return err
	}
	server1 := <-accepted
	defer server1.Close()
	type outcome struct {
		goid         uint64
		fd1, fd2     int
		waited       time.Duration
		err, readErr error
	}
	done := make(chan outcome)
	// The parked read returns as soon as Close has evicted it, but the
	// fd number is freed when Close drops its own reference, which may
	// come later: the reader dials only after Close has returned.
	closed := make(chan struct{})
	go func() {
		o := outcome{goid: goid(), fd1: fdOf(first.(*net.TCPConn))}
		t0 := time.Now()
		_, o.readErr = first.Read(make([]byte, 1)) // parks until closed
		o.waited = time.Since(t0)
		<-closed
		second, err := net.Dial(*network, ln.Addr().String())
		if err != nil {
			o.err = err
			done <- o
			return
		}
		defer second.Close()
		o.fd2 = fdOf(second.(*net.TCPConn))
		server2 := <-accepted
		defer server2.Close()
		server2.Write([]byte("x"))
		time.Sleep(100 * time.Millisecond) // the byte is there before the read
		_, o.err = second.Read(make([]byte, 1))
		done <- o
	}()
	time.Sleep(parked)
	first.Close() // wakes the reader with no syscall on its fd
	close(closed)
	o := <-done
	if o.err != nil {
		return o.err
	}
	if o.readErr == nil {
		return fmt.Errorf("the parked read returned no error")
	}
	report("reuse", "goid", o.goid, "fd", o.fd1, "fd2", o.fd2, "waited_ns", o.waited.Nanoseconds())
	return nil
}
