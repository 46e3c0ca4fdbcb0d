// Command demo is `make demo`: it starts the bundled target (cmd/nettarget),
// traces it with gonetscope, prints the JSON event stream as it comes, and
// ends with a short summary of what the events say. It ends by itself.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	gonetscope := flag.String("gonetscope", "bin/gonetscope", "gonetscope binary")
	targetBin := flag.String("target", "bin/nettarget", "demo target binary")
	flag.Parse()

	// The target: three rounds of dial, accept, and a read whose peer
	// answers only after 100ms.
	target := exec.Command(*targetBin, "-wait-stdin", "-rounds", "3", "-delay", "100ms")
	stdin, _ := target.StdinPipe()
	stdout, _ := target.StdoutPipe()
	target.Stderr = os.Stderr
	if err := target.Start(); err != nil {
		return fmt.Errorf("starting the demo target: %w", err)
	}
	defer target.Process.Kill()
	facts := bufio.NewScanner(stdout)
	if !facts.Scan() {
		return errors.New("the demo target did not start")
	}
	pid := strconv.Itoa(target.Process.Pid)
	fmt.Printf("# demo target started: PID %s\n# $ %s trace --pid %s\n", pid, *gonetscope, pid)

	dir, err := os.MkdirTemp("", "gonetscope-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ready := filepath.Join(dir, "ready")
	tracer := exec.Command(*gonetscope, "trace", "--pid", pid, "--ready-file", ready)
	events, _ := tracer.StdoutPipe()
	tracer.Stderr = os.Stderr
	if err := tracer.Start(); err != nil {
		return fmt.Errorf("starting gonetscope: %w", err)
	}
	defer tracer.Process.Kill()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("gonetscope did not attach within 30s")
		}
	}
	io.WriteString(stdin, "go\n")
	go io.Copy(io.Discard, stdout)

	var sum summary
	lines := bufio.NewScanner(events)
	for lines.Scan() {
		fmt.Println(lines.Text())
		sum.add(lines.Bytes())
	}
	if err := tracer.Wait(); err != nil {
		return fmt.Errorf("gonetscope: %w", err)
	}
	target.Wait()
	sum.print()
	return nil
}

type summary struct {
	lines []string
}

// add turns one event into a sentence, for the events the demo is about.
func (s *summary) add(line []byte) {
	var e map[string]any
	if json.Unmarshal(line, &e) != nil {
		return
	}
	ms := func(k string) string { f, _ := e[k].(float64); return fmt.Sprintf("%.2fms", f/1e6) }
	goid := "?"
	if g, ok := e["goid"]; ok {
		goid = fmt.Sprint(g)
	}
	var l string
	switch e["event"] {
	case "tcp_connect":
		l = fmt.Sprintf("goroutine %s connected fd %v to %v:%v: %v after %s", goid, e["fd"], e["raddr"], e["rport"], e["result"], ms("handshake_ns"))
	case "tcp_accept":
		l = fmt.Sprintf("goroutine %s accepted fd %v from %v:%v after %s in the accept queue", goid, e["fd"], e["raddr"], e["rport"], ms("queue_wait_ns"))
	case "netpoll_wait":
		why := "the peer was slow"
		if e["sched_delay_ns"].(float64) > e["io_wait_ns"].(float64) {
			why = "the Go scheduler was slow"
		}
		l = fmt.Sprintf("goroutine %s waited %s to %v fd %v: %s for the peer, %s for the scheduler: %s",
			goid, ms("wait_ns"), e["mode"], e["fd"], ms("io_wait_ns"), ms("sched_delay_ns"), why)
	case "lost":
		l = fmt.Sprintf("LOST %v events (%v)", e["count"], e["stream"])
	default:
		return
	}
	s.lines = append(s.lines, l)
}

func (s *summary) print() {
	fmt.Println("\n# What the events say:")
	for _, l := range s.lines {
		fmt.Println("  " + l)
	}
}
