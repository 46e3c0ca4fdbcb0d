// Command demo is `make demo`: it starts the bundled demo service
// (cmd/demo/demoserver, which has four problems on purpose), traces it with
// gonetscope, prints the JSON event stream as it comes, and ends with a short
// summary that names each problem the way the events do; then it runs the
// service again under `gonetscope diagnose` and prints the checklist. It
// ends by itself.
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
	"strings"
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
	server := flag.String("server", "bin/demoserver", "demo service binary")
	extra := flag.String("trace-flags", "", "extra flags for gonetscope trace")
	flag.Parse()

	target := exec.Command(*server, "-wait-stdin")
	stdin, _ := target.StdinPipe()
	stdout, _ := target.StdoutPipe()
	target.Stderr = os.Stderr
	if err := target.Start(); err != nil {
		return fmt.Errorf("starting the demo service: %w", err)
	}
	defer target.Process.Kill()
	phases := bufio.NewScanner(stdout)
	if !phases.Scan() {
		return errors.New("the demo service did not start")
	}
	pid := strconv.Itoa(target.Process.Pid)

	dir, err := os.MkdirTemp("", "gonetscope-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ready := filepath.Join(dir, "ready")
	// --goroutines (opt-in: two uprobes per goroutine) for the leak; a
	// short interval so the demo's leak is named within its two seconds.
	args := []string{"trace", "--pid", pid, "--min-wait", "5ms", "--goroutines", "--goroutine-interval", "250ms", "--ready-file", ready}
	if *extra != "" {
		args = append(args, strings.Fields(*extra)...)
	}
	fmt.Printf("# demo service started: PID %s\n# $ %s %s\n", pid, *gonetscope, strings.Join(args, " "))
	tracer := exec.Command(*gonetscope, args...)
	events, _ := tracer.StdoutPipe()
	tracer.Stderr = os.Stderr
	if err := tracer.Start(); err != nil {
		return fmt.Errorf("starting gonetscope: %w", err)
	}
	defer tracer.Process.Kill()
	if err := waitReady(ready, "gonetscope"); err != nil {
		return err
	}
	io.WriteString(stdin, "go\n")
	go func() { // the service's own account of its phases, to stderr
		for phases.Scan() {
			fmt.Fprintln(os.Stderr, "# demo service:", phases.Text())
		}
	}()

	var s summary
	lines := bufio.NewScanner(events)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() {
		fmt.Println(lines.Text())
		s.add(lines.Bytes())
	}
	if err := tracer.Wait(); err != nil {
		return fmt.Errorf("gonetscope: %w", err)
	}
	target.Wait()
	s.print(os.Stdout)
	return diagnose(*gonetscope, *server)
}

// diagnose runs the demo service again under `gonetscope diagnose` and
// prints its checklist. diagnose exits 1 when it finds problems, as it
// does here.
func diagnose(gonetscope, server string) error {
	target := exec.Command(server, "-wait-stdin")
	stdin, _ := target.StdinPipe()
	stdout, _ := target.StdoutPipe()
	target.Stderr = os.Stderr
	if err := target.Start(); err != nil {
		return fmt.Errorf("starting the demo service: %w", err)
	}
	defer target.Process.Kill()
	phases := bufio.NewScanner(stdout)
	if !phases.Scan() {
		return errors.New("the demo service did not start")
	}
	go io.Copy(io.Discard, stdout)
	dir, err := os.MkdirTemp("", "gonetscope-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ready := filepath.Join(dir, "ready")
	// It ends when the service does, after its four phases.
	args := []string{"diagnose", "--pid", strconv.Itoa(target.Process.Pid), "--duration", "30s", "--quiet",
		"--goroutines", "--goroutine-interval", "250ms"}
	fmt.Printf("\n# The same service, diagnosed: the checklist\n# $ %s %s\n", gonetscope, strings.Join(args, " "))
	diag := exec.Command(gonetscope, append(args, "--ready-file", ready)...)
	diag.Stdout, diag.Stderr = os.Stdout, os.Stderr
	if err := diag.Start(); err != nil {
		return fmt.Errorf("starting gonetscope diagnose: %w", err)
	}
	defer diag.Process.Kill()
	if err := waitReady(ready, "gonetscope diagnose"); err != nil {
		return err
	}
	io.WriteString(stdin, "go\n")
	err = diag.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		return nil // problems found: the demo's point
	}
	if err != nil {
		return fmt.Errorf("gonetscope diagnose: %w", err)
	}
	return errors.New("gonetscope diagnose found no problem in the demo service")
}

// summary keeps, per problem, the events that show it.
type summary struct {
	slowPeer, starved, queued []map[string]any
	overflows, leaks, lost    []map[string]any
}

func num(e map[string]any, k string) float64 { f, _ := e[k].(float64); return f }

func (s *summary) add(line []byte) {
	var e map[string]any
	if json.Unmarshal(line, &e) != nil {
		return
	}
	switch e["event"] {
	case "netpoll_wait":
		if num(e, "sched_delay_ns") >= 5e6 && num(e, "sched_delay_ns") > num(e, "io_wait_ns")/4 {
			s.starved = append(s.starved, e)
		} else if e["mode"] == "read" && num(e, "io_wait_ns") >= 100e6 {
			s.slowPeer = append(s.slowPeer, e)
		}
	case "tcp_accept":
		if num(e, "queue_wait_ns") >= 50e6 {
			s.queued = append(s.queued, e)
		}
	case "listen_overflow":
		s.overflows = append(s.overflows, e)
	case "goroutine_leak":
		s.leaks = append(s.leaks, e)
	case "lost":
		s.lost = append(s.lost, e)
	}
}

// worst returns the event with the largest value of key.
func worst(es []map[string]any, key string) map[string]any {
	var w map[string]any
	for _, e := range es {
		if w == nil || num(e, key) > num(w, key) {
			w = e
		}
	}
	return w
}

func ms(e map[string]any, k string) string { return fmt.Sprintf("%.1fms", num(e, k)/1e6) }

func (s *summary) print(w io.Writer) {
	fmt.Fprintln(w, "\n# What the events say")
	found := 0
	if len(s.slowPeer) > 0 {
		e := s.slowPeer[0] // the first: the downstream call, before the accept burst's clients
		found++
		fmt.Fprintf(w, "1. Slow peer (netpoll_wait): goroutine %v waited %s to read fd %v from %v:%v; %s of it waiting for the peer (io_wait_ns), %s for the scheduler. %d such waits.\n",
			e["goid"], ms(e, "wait_ns"), e["fd"], e["raddr"], e["rport"], ms(e, "io_wait_ns"), ms(e, "sched_delay_ns"), len(s.slowPeer))
	}
	if e := worst(s.starved, "sched_delay_ns"); e != nil {
		found++
		fmt.Fprintf(w, "2. Starved goroutine (netpoll_wait): goroutine %v's data on fd %v had arrived, but it waited %s more for the Go scheduler (sched_delay_ns), after %s for the peer. %d waits had a scheduling delay over 5ms: CPU-bound goroutines hold the Ps.\n",
			e["goid"], e["fd"], ms(e, "sched_delay_ns"), ms(e, "io_wait_ns"), len(s.starved))
	}
	if e := worst(s.queued, "queue_wait_ns"); e != nil {
		found++
		fmt.Fprintf(w, "3. Stalled accept loop (tcp_accept): connections waited up to %s in the accept queue of port %v before goroutine %v accepted them; the queue held %v of at most %v. %d accepts waited over 50ms.\n",
			ms(e, "queue_wait_ns"), e["lport"], e["goid"], e["backlog"], e["backlog_max"], len(s.queued))
		for _, o := range s.overflows {
			fmt.Fprintf(w, "   listen_overflow on port %v: %v connections dropped, verdict %v\n", o["lport"], o["drops"], o["verdict"])
		}
	}
	if len(s.leaks) > 0 {
		found++
		e := s.leaks[len(s.leaks)-1]
		fmt.Fprintf(w, "4. Goroutine leak (goroutine_leak): %v live goroutines of %v, started by the go statement at %v, growing %v per interval; the oldest is parked on %v.\n",
			e["live"], e["site"], e["created_at"], e["growth"], first(e["parked_on"]))
	}
	for _, e := range s.lost {
		fmt.Fprintf(w, "LOST: %v %v events (%v)\n", e["count"], e["lost_event"], e["stream"])
	}
	fmt.Fprintf(w, "%d of the demo service's problems named by the events.\n", found)
}

func first(v any) any {
	if l, ok := v.([]any); ok && len(l) > 0 {
		return l[0]
	}
	return "?"
}

// waitReady waits up to 30 s for what started with --ready-file ready to
// have attached.
func waitReady(ready, what string) error {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not attach within 30s", what)
		}
	}
}
