package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

var (
	serve  = flag.Duration("serve", 0, "after the rounds, accept and close connections on a new listener for this long, then report how many")
	stress = flag.Duration("stress", 0, "after the rounds, run the stress workload for this long: deep recursion, stack growth, goroutine churn and checked ping-pong over loopback")
)

// serveBurst accepts and closes connections for d and reports the count.
// The listener's port is reported first, for a client to burst at.
func serveBurst(d time.Duration) error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	report("serving", "port", ln.Addr().(*net.TCPAddr).Port, "listen_fd", fdOf(ln.(*net.TCPListener)))
	var n int64 // atomic
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			atomic.AddInt64(&n, 1)
			c.Close()
		}
	}()
	time.Sleep(d)
	ln.Close()
	<-done
	report("served", "accepts", atomic.LoadInt64(&n))
	return nil
}

// stressRun exercises what tracing could break in a Go program: goroutine
// stacks that grow and move (deep recursion), thousands of goroutines
// starting and ending, and network I/O whose every byte is checked.
func stressRun(d time.Duration) error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() { // echo server, a goroutine per connection
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()

	deadline := time.Now().Add(d)
	var ops, goroutines int64 // atomic
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			r := bufio.NewReader(c)
			for i := 0; time.Now().Before(deadline); i++ {
				// A deep call chain grows (and so moves) this goroutine's stack.
				sum := recurse(200+i%300, []byte(fmt.Sprintf("%d-%d", w, i)))
				want := []byte(hex.EncodeToString(sum[:]))
				if _, err := c.Write(append(want, '\n')); err != nil {
					errs <- err
					return
				}
				got, err := r.ReadBytes('\n')
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got[:len(got)-1], want) {
					errs <- errors.New("echo returned different bytes")
					return
				}
				// Goroutine churn: short-lived goroutines, each with its own stack.
				var inner sync.WaitGroup
				for i := 0; i < 8; i++ {
					inner.Add(1)
					atomic.AddInt64(&goroutines, 1)
					go func() { defer inner.Done(); recurse(50, nil) }()
				}
				inner.Wait()
				atomic.AddInt64(&ops, 1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	report("stress", "ok", true, "ops", atomic.LoadInt64(&ops), "goroutines", atomic.LoadInt64(&goroutines))
	return nil
}

// recurse calls itself depth times with a frame large enough to force
// stack growth, and returns a hash that depends on every level.
func recurse(depth int, seed []byte) [32]byte {
	var pad [256]byte
	copy(pad[:], seed)
	if depth == 0 {
		return sha256.Sum256(pad[:])
	}
	h := recurse(depth-1, pad[:len(seed)])
	pad[0] ^= h[0]
	return sha256.Sum256(append(pad[:8], h[:]...))
}

func runExtras() {
	if *serve > 0 {
		if err := serveBurst(*serve); err != nil {
			fmt.Fprintln(os.Stderr, "nettarget:", err)
			os.Exit(1)
		}
	}
	if *stress > 0 {
		if err := stressRun(*stress); err != nil {
			fmt.Fprintln(os.Stderr, "nettarget: stress:", err)
			os.Exit(1)
		}
	}
}
