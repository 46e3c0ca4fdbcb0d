// Command demoserver is the bundled demo service of `make demo`: a small Go
// network service with four problems on purpose, run one after another so
// that each shows on its own:
//
//  1. slow peer: a handler reads from a downstream service that answers
//     after 150ms;
//  2. starved goroutine: with GOMAXPROCS=1, CPU-bound goroutines keep a
//     heartbeat reader from running when its data has arrived;
//  3. stalled accept loop: a listener with backlog 4 whose accept loop does
//     100ms of work per connection, under a burst of 30 dials;
//  4. goroutine leak: every request starts a goroutine that never ends.
//
// It prints what it does as JSON lines and exits when done.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

var (
	waitStdin = flag.Bool("wait-stdin", false, "wait for a line on stdin before starting")
	peer      = flag.String("peer", "", "internal: run as the heartbeat peer, writing to this address")
)

var out = json.NewEncoder(os.Stdout)

func report(phase, msg string) {
	out.Encode(map[string]string{"phase": phase, "msg": msg})
}

func main() {
	flag.Parse()
	if *peer != "" {
		heartbeatPeer(*peer)
		return
	}
	report("ready", fmt.Sprint(os.Getpid()))
	if *waitStdin {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	for _, p := range []struct {
		name string
		run  func() error
	}{
		{"slow_peer", slowPeer},
		{"starved", starved},
		{"accept_stall", acceptStall},
		{"leak", leak},
	} {
		report(p.name, "start")
		start := time.Now()
		if err := p.run(); err != nil {
			fmt.Fprintf(os.Stderr, "demoserver: %s: %v\n", p.name, err)
			os.Exit(1)
		}
		report(p.name, "done in "+time.Since(start).Round(time.Millisecond).String())
	}
}

// slowPeer: three requests to a downstream service that takes 150ms.
func slowPeer() error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() { // the slow downstream
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				time.Sleep(150 * time.Millisecond)
				c.Write([]byte("inventory: 3\n"))
			}()
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		_, err = bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// starved: a heartbeat arrives every 20ms from another process, but with
// GOMAXPROCS=1 three CPU-bound goroutines hold the only P.
func starved() error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	self, _ := os.Executable()
	p := exec.Command(self, "-peer", ln.Addr().String())
	if err := p.Start(); err != nil {
		return err
	}
	defer p.Wait()
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()

	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { // CPU-bound work that never blocks
			defer wg.Done()
			x := 1.0
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := range 1_000_000 {
					x = math.Sqrt(x + float64(i))
				}
			}
		}()
	}
	r := bufio.NewReader(c)
	for range 25 {
		if _, err := r.ReadByte(); err != nil {
			break
		}
	}
	close(stop)
	wg.Wait()
	return nil
}

func heartbeatPeer(addr string) {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		os.Exit(1)
	}
	defer c.Close()
	for range 25 {
		time.Sleep(20 * time.Millisecond)
		if _, err := c.Write([]byte{'.'}); err != nil {
			return
		}
	}
}

// acceptStall: backlog 4, 100ms of work after each accept, 30 dials at once.
func acceptStall() error {
	ln, err := listenBacklog(4)
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() { // the accept loop, which does its work inline
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	var wg sync.WaitGroup
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp4", ln.Addr().String(), 2*time.Second)
			if err == nil {
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				c.Read(make([]byte, 1)) // until the server closes it
				c.Close()
			}
		}()
	}
	wg.Wait()
	return nil
}

// listenBacklog listens on loopback with an explicit backlog, which
// net.Listen does not let one choose (it reads net.core.somaxconn).
func listenBacklog(backlog int) (net.Listener, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	sa := &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	return net.FileListener(f)
}

// leak: each "subscribe" request starts a watcher that waits for a channel
// nobody ever closes.
func leak() error {
	var never chan struct{}
	for range 300 {
		go func() { <-never }() // leaks: nothing sends or closes
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the service runs on, its leak with it
	if runtime.NumGoroutine() < 300 {
		return errors.New("the leak did not happen")
	}
	return nil
}
