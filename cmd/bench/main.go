// Command bench is `make bench`: it measures what tracing costs a Go HTTP
// server, and the rest of the host, and writes BENCHMARKS.md.
//
// Method: cmd/bench/benchserver serves on loopback; an open-loop load generator
// in this process sends a fixed rate of keep-alive requests (a fixed rate
// is steadier than saturating a 2-core machine). Each mode runs once per
// round, the modes interleaved, and each round starts a fresh server:
// untraced; gonetscope with its defaults and with every wait sent
// (--min-wait 0); the same two with the gonetscope built from -before (the
// code before the overhead work), side by side; the classic way (bpftrace
// with uprobes on the Go runtime's netpoll functions); and the cost table,
// gonetscope with one more part of its hot path switched on per row
// (--bench-cost-stage and friends). Reported per mode: median over rounds
// of achieved throughput, p50 and p99 latency, the server's CPU time per
// request (on-CPU time of all its threads from /proc/PID/task/*/schedstat),
// the tracer's own CPU and context switches, and what a getppid and a
// read of /dev/zero cost this untraced process meanwhile, each also as a
// ratio to untraced.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

var (
	rate       = flag.Int("rate", 5000, "requests per second")
	duration   = flag.Duration("duration", 4*time.Second, "load per measurement")
	rounds     = flag.Int("rounds", 5, "rounds; modes are interleaved within each")
	gonetscope = flag.String("gonetscope", "bin/gonetscope", "gonetscope binary")
	server     = flag.String("server", "bin/benchserver", "benchmark server binary")
	thirdParty = flag.String("caddy", "", "a third-party Go server, caddy (built from the module proxy), measured the same way (optional)")
	outFile    = flag.String("o", "BENCHMARKS.md", "write the report here")
	extra      = flag.String("extra", "", "file whose contents (e.g. go test -bench output) are appended to the report")
	before     = flag.String("before", "", "gonetscope binary built from before the overhead work, measured side by side (optional)")
	beforeRev  = flag.String("before-rev", "", "the revision -before was built from, for the report")
	only       = flag.String("only", "", "measure only the modes whose names match this regexp, beside the untraced ones, and skip the start-up and attach runs (a quick look; make bench runs all)")
)

type mode struct {
	name string
	// table: "overhead" (the headline table), "cost" (the cost table),
	// "both", or "caddy" (the third-party server's table).
	table string
	// start begins tracing pid and returns the tracer's PID (0: none).
	start func(pid int) (tracer int, stop func() error, err error)
}

// lineCounter counts the lines gonetscope writes, by their "event" field.
type lineCounter struct {
	mu      sync.Mutex
	partial []byte           // the start of a line whose end is yet to come
	n       map[string]int64 // lines by event
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	rest := p
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			c.partial = append(c.partial, rest...)
			return len(p), nil
		}
		line := rest[:i]
		if len(c.partial) > 0 {
			line = append(c.partial, line...)
			c.partial = c.partial[:0]
		}
		c.n[eventOf(line)]++
		rest = rest[i+1:]
	}
}

// eventOf is a line's "event" field, found without decoding the line: the
// bench shares the cores it measures, and json.Unmarshal of a netpoll_wait
// line took 2.5 µs (65 ns this way), about 21 ms of CPU a second at the
// 8,600 lines a second of every wait sent.
func eventOf(line []byte) string {
	const key = `"event":"`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return ""
	}
	name, _, _ := bytes.Cut(line[i+len(key):], []byte(`"`))
	return string(name)
}

// snapshot is the lines written so far, by event.
func (c *lineCounter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// lines counts what the current mode's gonetscope writes; load reads it.
var lines lineCounter

type result struct {
	rps, p50, p99, cpuPerReq float64 // req/s, ms, ms, µs
	tracerCPU                float64 // ms of CPU per second of load
	tracerCS                 float64 // context switches per second
	getppid, readZero        float64 // ns per call in this untraced process
	linesPerSec              float64 // lines gonetscope wrote per second of load
	linesByEvent             map[string]int64
	seconds                  float64 // of load
	errors                   int
	requests                 int
	// progs: the tracer's BPF programs' runs and run time over the
	// measurement, by program name; only with -bpf-stats.
	progs map[string]progStat
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	untraced := func(int) (int, func() error, error) { return 0, func() error { return nil }, nil }
	quiet := []string{"--min-wait", "1h"} // no netpoll_wait or epoll_wait sent
	everything := []string{"--waits", "all", "--min-wait", "0", "--events", "all", "--max-events-per-sec", "0"}
	modes := []mode{
		{"untraced", "both", untraced},
		{dispatchMode, "cost", gonetscopeMode(*gonetscope, append(quiet, "--bench-cost-stage", "dispatch")...)},
		{filterMode, "cost", gonetscopeMode(*gonetscope, append(quiet, "--bench-cost-stage", "filter")...)},
		{goidMode, "cost", gonetscopeMode(*gonetscope, append(quiet, "--bench-cost-stage", "goid")...)},
		{recordsMode, "cost", gonetscopeMode(*gonetscope, append(quiet, "--bench-cost-stage", "records")...)},
		{"+ the epoll events scan of the syscall path (everything, nothing sent)", "cost", gonetscopeMode(*gonetscope, quiet...)},
		{"  same, overflow sampler off", "cost", gonetscopeMode(*gonetscope, append(quiet, "--overflow-interval", "1h")...)},
		{"  same, overflow sampler and liveness poll off", "cost", gonetscopeMode(*gonetscope, append(quiet, "--overflow-interval", "1h", "--poll-interval", "1h")...)},
		{defaultsMode, "both", gonetscopeMode(*gonetscope)},
		{syscallMode, "both", gonetscopeMode(*gonetscope, "--hooks", "tracepoint")},
		{"every wait sent, a wake-up per record (the old ring buffer)", "cost", gonetscopeMode(*gonetscope, append(everything, "--bench-wakeup-each")...)},
		{"every wait sent, gonetscope's Go code on every CPU (--procs 0; the default is 1)", "cost", gonetscopeMode(*gonetscope, append(everything, "--procs", "0")...)},
		{"gonetscope, every wait sent: " + strings.Join(everything, " "), "both", gonetscopeMode(*gonetscope, everything...)},
		{requestsMode, "overhead", gonetscopeMode(*gonetscope, "--requests")},
		{contentionMode, "overhead", gonetscopeMode(*gonetscope, "--contention")},
	}
	if *before != "" {
		modes = append(modes,
			mode{"before: gonetscope (defaults: --min-wait 1ms)", "overhead", gonetscopeMode(*before)},
			mode{"before: gonetscope --min-wait 0", "overhead", gonetscopeMode(*before, "--min-wait", "0")})
		// A before binary from after request tracing came: its
		// --requests too.
		if help, _ := exec.Command(*before, "trace", "--help").CombinedOutput(); bytes.Contains(help, []byte("--requests")) {
			modes = append(modes, mode{"before: " + requestsMode, "overhead", gonetscopeMode(*before, "--requests")})
		}
	}
	modes = append(modes, mode{"bpftrace, uprobes on runtime netpoll functions (classic)", "overhead", bpftraceMode})
	if *thirdParty != "" {
		modes = append(modes,
			mode{caddyUntraced, "caddy", untraced},
			mode{"caddy: " + defaultsMode, "caddy", gonetscopeMode(*gonetscope)},
			mode{"caddy: gonetscope, every wait sent: " + strings.Join(everything, " "), "caddy", gonetscopeMode(*gonetscope, everything...)},
			mode{caddyRequestsMode, "caddy", gonetscopeMode(*gonetscope, "--requests")},
			mode{"caddy: " + contentionMode, "caddy", gonetscopeMode(*gonetscope, "--contention")},
			mode{"caddy: bpftrace, uprobes on runtime netpoll functions (classic)", "caddy", bpftraceMode})
		if *before != "" && slices.ContainsFunc(modes, func(m mode) bool { return m.name == "before: "+requestsMode }) {
			modes = append(modes, mode{"caddy: before: " + requestsMode, "caddy", gonetscopeMode(*before, "--requests")})
		}
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return fmt.Errorf("-only: %w", err)
		}
		modes = slices.DeleteFunc(modes, func(m mode) bool {
			return m.name != "untraced" && m.name != caddyUntraced && !re.MatchString(m.name)
		})
	}
	load0 := loadavg()
	var startup []startupResult
	if *thirdParty != "" && *only == "" {
		var err error
		if startup, err = measureStartup(); err != nil {
			return fmt.Errorf("start-up: %w", err)
		}
	}
	var attach attachResult
	if *only == "" {
		var err error
		if attach, err = measureAttach(); err != nil {
			return fmt.Errorf("attach: %w", err)
		}
	}
	// The programs' own time, from the kernel's BPF stats: measured apart,
	// since the stats add two clock reads to every program run.
	stats := map[string]result{}
	for _, m := range modes {
		if !slices.ContainsFunc(statsModes, func(s statsMode) bool { return s.name == m.name }) {
			continue
		}
		res, err := measureStats(m)
		if err != nil {
			return fmt.Errorf("BPF stats, %s: %w", m.name, err)
		}
		stats[m.name] = res
	}
	results := map[string][]result{}
	for r := 1; r <= *rounds; r++ {
		// Each round starts at another mode: a run of 14 modes drifts
		// (the untraced server itself cost 51-64 µs per request across
		// one run's rounds, more later in a round), and a fixed order
		// would give every mode the same place in that drift.
		start := (r - 1) * len(modes) / *rounds
		for i := range modes {
			m := modes[(start+i)%len(modes)]
			res, err := measure(m)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, m.name, err)
			}
			fmt.Fprintf(os.Stderr, "round %d %-66s %6.0f req/s  p50 %.3fms  p99 %.3fms  cpu %.1fµs/req  tracer %.1fms/s %.0fcs/s  getppid %.0fns read %.0fns  errors %d\n",
				r, m.name, res.rps, res.p50, res.p99, res.cpuPerReq, res.tracerCPU, res.tracerCS, res.getppid, res.readZero, res.errors)
			results[m.name] = append(results[m.name], res)
		}
	}
	return report(modes, results, stats, attach, startup, load0, loadavg())
}

const (
	dispatchMode  = "dispatch: netpoll programs attached, empty (sock path; accept4, connect, getsockopt: fentry, else uprobes in the target)"
	filterMode    = "+ PID filter"
	goidMode      = "+ goroutine read and validation (at parks)"
	recordsMode   = "+ park/ready/resume records, histograms"
	caddyUntraced = "caddy: untraced"
	defaultsMode  = "gonetscope (defaults)"
	syscallMode   = "gonetscope, syscall tracepoint path: --hooks tracepoint"
	requestsMode  = "gonetscope, request tracing: --requests (uprobes in the server, per-route histograms)"
	// contentionMode runs the contention probes: net/http parks on a
	// sync.Cond per keep-alive request (connReader.abortPendingRead).
	contentionMode    = "gonetscope, contention: --contention (uprobes on the runtime's blocking slow paths)"
	caddyRequestsMode = "caddy: " + requestsMode
)

// statsMode is a mode measured once more with the kernel's BPF stats,
// and what its rows say in that table's path column.
type statsMode struct{ name, path string }

// statsModes are those modes.
var statsModes = []statsMode{
	{dispatchMode, "cost stage: dispatch"},
	{filterMode, "cost stage: + PID filter"},
	{goidMode, "cost stage: + goroutine read"},
	{recordsMode, "cost stage: + records"},
	{defaultsMode, "defaults"},
	{syscallMode, "--hooks tracepoint"},
	{requestsMode, "--requests"},
	{contentionMode, "--contention"},
	{caddyRequestsMode, "caddy, --requests"},
}

// progStat is one BPF program's runs and run time (kernel BPF stats).
type progStat struct{ runs, ns, misses uint64 }

// measureStats measures m once with the kernel's BPF stats on.
func measureStats(m mode) (result, error) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return result{}, err
	}
	defer stats.Close()
	return measure(m)
}

// progStats reads the stats of the BPF programs pid holds, summed by
// program name. Zero counts where the stats are off.
func progStats(pid int) map[string]progStat {
	out := map[string]progStat{}
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, _ := os.ReadDir(dir)
	seen := map[uint32]bool{}
	for _, e := range ents {
		raw, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		for _, line := range strings.Split(string(raw), "\n") {
			var id uint32
			if _, err := fmt.Sscanf(line, "prog_id:\t%d", &id); err != nil || seen[id] {
				continue
			}
			seen[id] = true
			p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
			if err != nil {
				continue
			}
			info, ierr := p.Info()
			st, serr := p.Stats()
			p.Close()
			if ierr != nil || serr != nil {
				continue
			}
			s := out[info.Name]
			s.runs += st.RunCount
			s.ns += uint64(st.Runtime)
			s.misses += st.RecursionMisses
			out[info.Name] = s
		}
	}
	return out
}

// attachResult is the daemon's attach time to a large Go binary and its RSS.
type attachResult struct {
	binary           string
	size             int64
	attach, detached []time.Duration
	rssKB            int
}

// measureAttach starts a daemon, attaches it five times to a running copy
// of the Go toolchain's compiler (a large, stripped Go binary: its offsets
// come from the version table) and reads the daemon's RSS while attached.
func measureAttach() (attachResult, error) {
	var res attachResult
	out, err := exec.Command("go", "env", "GOTOOLDIR").Output()
	if err != nil {
		return res, err
	}
	res.binary = filepath.Join(strings.TrimSpace(string(out)), "compile")
	st, err := os.Stat(res.binary)
	if err != nil {
		return res, err
	}
	res.size = st.Size()
	// compile blocks reading its source from a pipe nobody writes to.
	target := exec.Command(res.binary, "-o", os.DevNull, "-p", "main", "/dev/stdin")
	stdin, _ := target.StdinPipe()
	if err := target.Start(); err != nil {
		return res, err
	}
	defer func() { stdin.Close(); target.Process.Kill(); target.Wait() }()

	sock, daemon, stop, err := startDaemon("")
	if err != nil {
		return res, err
	}
	defer stop()
	pid := strconv.Itoa(target.Process.Pid)
	for range 5 {
		t0 := time.Now()
		if out, err := exec.Command(*gonetscope, "attach", "--socket", sock, pid).CombinedOutput(); err != nil {
			return res, fmt.Errorf("%v: %s", err, out)
		}
		res.attach = append(res.attach, time.Since(t0))
		res.rssKB = max(res.rssKB, vmRSSKB(daemon.Process.Pid))
		if out, err := exec.Command(*gonetscope, "detach", "--socket", sock, pid).CombinedOutput(); err != nil {
			return res, fmt.Errorf("%v: %s", err, out)
		}
	}
	return res, nil
}

func vmRSSKB(pid int) int { return statusKB(pid, "VmRSS:") }

// statusKB is a field of /proc/PID/status in kB (VmRSS:, VmHWM:).
func statusKB(pid int, field string) int {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.Atoi(f[1])
			return kb
		}
	}
	return 0
}

// measure starts a fresh server, starts the mode's tracer on it, drives the
// load and returns what it measured.
func measure(m mode) (result, error) {
	start := startBenchserver
	if m.table == "caddy" {
		start = startCaddy
	}
	srv, addr, err := start()
	if err != nil {
		return result{}, err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	tracer, stop, err := m.start(srv.Process.Pid)
	if err != nil {
		return result{}, err
	}
	res, err := load("http://"+strings.TrimSpace(addr)+"/", srv.Process.Pid, tracer)
	if err == nil {
		res.getppid, res.readZero = syscallCosts()
	}
	if serr := stop(); err == nil {
		err = serr
	}
	return res, err
}

// startBenchserver starts cmd/bench/benchserver, which prints its address.
func startBenchserver() (*exec.Cmd, string, error) {
	srv := exec.Command(*server)
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		return nil, "", err
	}
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		srv.Process.Kill()
		srv.Wait()
		return nil, "", fmt.Errorf("benchserver did not start: %w", err)
	}
	return srv, strings.TrimSpace(addr), nil
}

// freeAddr is a loopback address with a port nobody listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startDaemon starts gonetscope's daemon, writing its events nowhere and
// serving metrics on metricsAddr ("" none), and waits for its control
// socket; stop ends it and removes the socket's directory.
func startDaemon(metricsAddr string) (sock string, daemon *exec.Cmd, stop func(), err error) {
	dir, err := os.MkdirTemp("", "bench-daemon")
	if err != nil {
		return "", nil, nil, err
	}
	sock = filepath.Join(dir, "ctl.sock")
	daemon = exec.Command(*gonetscope, "daemon", "--socket", sock, "--output", os.DevNull, "--metrics-addr", metricsAddr)
	daemon.Stderr = os.Stderr
	if err := daemon.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, nil, err
	}
	stop = func() { daemon.Process.Signal(os.Interrupt); daemon.Wait(); os.RemoveAll(dir) }
	if err := waitFile(sock, 30*time.Second); err != nil {
		stop()
		return "", nil, nil, err
	}
	return sock, daemon, stop, nil
}

// startCaddy starts caddy answering every request with a short body
// (caddy respond), its state in a directory of its own, and waits until
// it accepts connections.
func startCaddy() (*exec.Cmd, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	home, err := os.MkdirTemp("", "bench-caddy")
	if err != nil {
		return nil, "", err
	}
	srv := exec.Command(*thirdParty, "respond", "--listen", addr, "--body", "hello")
	srv.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
	if err := srv.Start(); err != nil {
		return nil, "", err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return srv, addr, nil
		}
		if time.Now().After(deadline) {
			srv.Process.Kill()
			srv.Wait()
			return nil, "", fmt.Errorf("caddy did not listen on %s", addr)
		}
	}
}

// startupResult is one start of gonetscope on caddy.
type startupResult struct {
	toAttached time.Duration // from exec to the attached event's time
	traceKB    int           // trace's peak RSS
	daemonKB   int           // a daemon's peak RSS with caddy attached, after a scrape
}

// measureStartup starts gonetscope trace on a running caddy five times:
// the time from exec to its attached event, and its peak RSS; then a
// daemon serving metrics, caddy attached and /metrics scraped.
func measureStartup() ([]startupResult, error) {
	srv, _, err := startCaddy()
	if err != nil {
		return nil, err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	pid := strconv.Itoa(srv.Process.Pid)
	var out []startupResult
	for range 5 {
		var r startupResult
		cmd := exec.Command(*gonetscope, "trace", "--pid", pid, "--duration", "1ms")
		stdout, _ := cmd.StdoutPipe()
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		// Its peak RSS from /proc while it runs: getrusage's would be
		// this process's when that is larger, as exec hands the old
		// mm's high-water mark down to the new image (signal->maxrss),
		// and os/exec's child runs in this process's mm until its exec.
		stop, peak := make(chan struct{}), make(chan int)
		go func() {
			kb := 0
			for {
				kb = max(kb, statusKB(cmd.Process.Pid, "VmHWM:"))
				select {
				case <-stop:
					peak <- kb
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		}()
		// The attached event, which a sample taken at the end of so
		// short a run can precede.
		rd := bufio.NewReader(stdout)
		var ev struct {
			Time  time.Time `json:"time"`
			Event string    `json:"event"`
		}
		var line []byte
		for err == nil && ev.Event != "attached" {
			if line, err = rd.ReadBytes('\n'); err == nil {
				err = json.Unmarshal(line, &ev)
			}
		}
		io.Copy(io.Discard, stdout)
		if werr := cmd.Wait(); err == nil {
			err = werr
		}
		close(stop)
		r.traceKB = <-peak
		if err != nil || ev.Event != "attached" {
			return nil, fmt.Errorf("trace: %v, first line %s", err, line)
		}
		r.toAttached = ev.Time.Sub(t0)
		out = append(out, r)
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	sock, daemon, stop, err := startDaemon(metricsAddr)
	if err != nil {
		return nil, err
	}
	defer stop()
	if o, err := exec.Command(*gonetscope, "attach", "--socket", sock, pid).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("attach: %v: %s", err, o)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	out[0].daemonKB = statusKB(daemon.Process.Pid, "VmHWM:")
	return out, nil
}

// syscallCosts times getppid and a 1-byte read of /dev/zero in this
// process, which is never traced: what the rest of the host pays while
// the mode's tracer is loaded. Best of three batches, on one thread.
func syscallCosts() (getppid, readZero float64) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := syscall.Open("/dev/zero", syscall.O_RDONLY, 0)
	if err != nil {
		return 0, 0
	}
	defer syscall.Close(fd)
	buf := make([]byte, 1)
	const n = 100000
	best := func(f func()) float64 {
		b := time.Duration(1 << 62)
		for range 3 {
			t0 := time.Now()
			for range n {
				f()
			}
			b = min(b, time.Since(t0))
		}
		return float64(b.Nanoseconds()) / n
	}
	return best(func() { syscall.Getppid() }), best(func() { syscall.Read(fd, buf) })
}

func gonetscopeMode(bin string, flags ...string) func(int) (int, func() error, error) {
	return func(pid int) (int, func() error, error) {
		dir, err := os.MkdirTemp("", "bench")
		if err != nil {
			return 0, nil, err
		}
		ready := filepath.Join(dir, "ready")
		args := append([]string{"trace", "--pid", strconv.Itoa(pid), "--ready-file", ready}, flags...)
		cmd := exec.Command(bin, args...)
		cmd.Stdout = &lines
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return 0, nil, err
		}
		if err := waitFile(ready, 30*time.Second); err != nil {
			cmd.Process.Kill()
			return 0, nil, err
		}
		return cmd.Process.Pid, func() error {
			defer os.RemoveAll(dir)
			cmd.Process.Signal(os.Interrupt)
			return cmd.Wait()
		}, nil
	}
}

// bpftraceMode answers the same question the classic way: uprobes on the
// runtime's netpoll wait path, counting and timing waits per thread.
func bpftraceMode(pid int) (int, func() error, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0, nil, err
	}
	script := fmt.Sprintf(`
uprobe:%[1]s:"internal/poll.runtime_pollWait" /pid == %[2]d/ { @waits = count(); @start[tid] = nsecs; }
uprobe:%[1]s:runtime.netpollblock /pid == %[2]d/ { @blocks = count(); }
BEGIN { printf("ready\n"); }
`, exe, pid)
	cmd := exec.Command("bpftrace", "-e", script)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("starting bpftrace (apt-get install bpftrace): %w", err)
	}
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && lines.Text() != "ready" { // after "Attaching 3 probes..."
	}
	if lines.Err() != nil || lines.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		return 0, nil, fmt.Errorf("bpftrace did not attach: %v", lines.Err())
	}
	go io.Copy(io.Discard, stdout)
	return cmd.Process.Pid, func() error {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		return nil
	}, nil
}

func waitFile(path string, limit time.Duration) error {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
	}
	return errors.New("gonetscope did not attach in time")
}

// load sends *rate requests per second for *duration, open loop: a request
// is sent on schedule whether or not earlier ones have returned.
func load(url string, pid, tracer int) (result, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	// Warm up the server and open the connections the load will use, 64
	// at once, so that the measurement is a keep-alive steady state: a
	// fresh client opening its pool during the measurement made every
	// mode accept 5-10 connections a second, at the moments the machine
	// stalled (those accepts waited in the queue and were written).
	var warm sync.WaitGroup
	for range 64 {
		warm.Go(func() {
			for range 5 {
				if resp, err := client.Get(url); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	warm.Wait()

	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      int
		wg        sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	cpu0, tcpu0, tcs0, lines0 := cpuNs(pid), cpuNs(tracer), ctxSwitches(tracer), lines.snapshot()
	progs0 := progStats(tracer)
	start := time.Now()
	const tick = time.Millisecond
	sent := 0
	t := time.NewTicker(tick)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-t.C:
			due := int(now.Sub(start).Seconds()*float64(*rate)) - sent
			for range due {
				sent++
				wg.Add(1)
				go func() {
					defer wg.Done()
					t0 := time.Now()
					resp, err := client.Get(url)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					d := time.Since(t0)
					mu.Lock()
					if err != nil {
						errs++
					} else {
						latencies = append(latencies, d)
					}
					mu.Unlock()
				}()
			}
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuNs(pid) - cpu0
	tcpu, tcs := cpuNs(tracer)-tcpu0, ctxSwitches(tracer)-tcs0
	byEvent, nlines := lines.snapshot(), int64(0)
	for ev, n := range byEvent {
		byEvent[ev] = n - lines0[ev]
		nlines += byEvent[ev]
	}
	progs := progStats(tracer)
	for name, s := range progs {
		s0 := progs0[name]
		progs[name] = progStat{s.runs - s0.runs, s.ns - s0.ns, s.misses - s0.misses}
	}
	slices.Sort(latencies)
	if len(latencies) == 0 {
		return result{}, errors.New("no request succeeded")
	}
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	return result{
		rps:          float64(len(latencies)) / elapsed.Seconds(),
		p50:          pct(0.50),
		p99:          pct(0.99),
		cpuPerReq:    float64(cpu) / 1e3 / float64(len(latencies)),
		tracerCPU:    float64(tcpu) / 1e6 / elapsed.Seconds(),
		tracerCS:     float64(tcs) / elapsed.Seconds(),
		linesPerSec:  float64(nlines) / elapsed.Seconds(),
		linesByEvent: byEvent,
		seconds:      elapsed.Seconds(),
		errors:       errs,
		requests:     len(latencies),
		progs:        progs,
	}, nil
}

// cpuNs is the on-CPU time of all of pid's threads in ns
// (/proc/PID/task/*/schedstat, first field): finer than the clock ticks of
// /proc/PID/stat. Go servers and gonetscope keep their threads. 0 for pid 0.
func cpuNs(pid int) uint64 {
	var sum uint64
	eachTask(pid, "schedstat", func(raw string) {
		if f := strings.Fields(raw); len(f) > 0 {
			n, _ := strconv.ParseUint(f[0], 10, 64)
			sum += n
		}
	})
	return sum
}

// ctxSwitches is the voluntary and involuntary context switches of all
// of pid's threads: its wake-ups. 0 for pid 0.
func ctxSwitches(pid int) uint64 {
	var sum uint64
	eachTask(pid, "status", func(raw string) {
		for _, line := range strings.Split(raw, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				sum += n
			}
		}
	})
	return sum
}

func eachTask(pid int, file string, f func(string)) {
	if pid == 0 {
		return
	}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		if raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/%s", pid, t.Name(), file)); err == nil {
			f(string(raw))
		}
	}
}

// linesCell is a mode's lines/s (the median over rounds) and what they
// were: the three most written events, each a rate over all rounds.
func linesCell(rs []result) string {
	total, secs := map[string]int64{}, 0.0
	for _, r := range rs {
		for ev, n := range r.linesByEvent {
			total[ev] += n
		}
		secs += r.seconds
	}
	evs := slices.Collect(maps.Keys(total))
	slices.SortFunc(evs, func(a, b string) int { return cmp.Or(cmp.Compare(total[b], total[a]), cmp.Compare(a, b)) })
	var parts []string
	for _, ev := range evs[:min(3, len(evs))] {
		if total[ev] > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f", cmp.Or(ev, "other"), float64(total[ev])/secs))
		}
	}
	cell := fmt.Sprintf("%.0f", median(rs, func(r result) float64 { return r.linesPerSec }))
	if len(parts) > 0 {
		cell += " (" + strings.Join(parts, ", ") + ")"
	}
	return cell
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// ratio is the median over rounds of mode's value divided by the same
// round's untraced value: rounds run under different background load, so
// each is compared with its own baseline.
func ratio(rs, base []result, f func(result) float64) float64 {
	v := make([]float64, 0, len(rs))
	for i := range rs {
		if i < len(base) && f(base[i]) > 0 {
			v = append(v, f(rs[i])/f(base[i]))
		}
	}
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func report(modes []mode, results map[string][]result, stats map[string]result, attach attachResult, startup []startupResult, load0, load1 string) error {
	var b strings.Builder
	host, _ := os.Hostname()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` on %s: %s, Linux %s, %d CPUs, %s.\n\n",
		time.Now().UTC().Format("2006-01-02"), host, strings.TrimSpace(string(kernel)), runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(&b, "Load average (1, 5, 15 min) at the start: %s; at the end: %s. Above about 0.5, other jobs shared the machine's cores during the run: absolute times are then inflated and noisy, and only the ratios to the untraced baseline of the same round mean much.\n\n", load0, load1)
	fmt.Fprintf(&b, "## Target overhead\n\n%s\n\n", method)
	fmt.Fprintf(&b, "Load: %d req/s for %v per measurement, %d rounds, all modes of both tables interleaved in each round, each round starting at another mode; medians over rounds, ratios are medians of each round's ratio to that round's untraced run.", *rate, *duration, *rounds)
	if *before != "" {
		fmt.Fprintf(&b, " \"before\" is gonetscope built from %s, the code before the overhead work (issue 12), in the same run.", *beforeRev)
	}
	fmt.Fprintf(&b, "\n\n")
	fmt.Fprintln(&b, "| mode | throughput | p50 | p99 | server CPU per request | gonetscope's own CPU | lines/s | errors |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|")
	base := results[modes[0].name]
	med := func(rs []result, f func(result) float64) float64 { return median(rs, f) }
	var (
		rps  = func(r result) float64 { return r.rps }
		p50  = func(r result) float64 { return r.p50 }
		p99  = func(r result) float64 { return r.p99 }
		cpu  = func(r result) float64 { return r.cpuPerReq }
		tcpu = func(r result) float64 { return r.tracerCPU }
		tcs  = func(r result) float64 { return r.tracerCS }
		gpp  = func(r result) float64 { return r.getppid }
		rdz  = func(r result) float64 { return r.readZero }
	)
	for _, m := range modes {
		if m.table != "overhead" && m.table != "both" {
			continue
		}
		rs := results[m.name]
		errs := 0
		for _, r := range rs {
			errs += r.errors
		}
		own, nl := "", ""
		if m.name != modes[0].name {
			own = fmt.Sprintf("%.1f ms/s", med(rs, tcpu))
			if strings.Contains(m.name, "gonetscope") {
				nl = linesCell(rs)
			}
		}
		fmt.Fprintf(&b, "| %s | %.0f req/s (%.1f%%) | %.3f ms (×%.2f) | %.3f ms (×%.2f) | %.1f µs (×%.2f) | %s | %s | %d |\n",
			m.name, med(rs, rps), 100*ratio(rs, base, rps), med(rs, p50), ratio(rs, base, p50), med(rs, p99), ratio(rs, base, p99),
			med(rs, cpu), ratio(rs, base, cpu), own, nl, errs)
	}

	if cbase := results[caddyUntraced]; len(cbase) > 0 {
		fmt.Fprintf(&b, "\n## A third-party server\n\n%s\n\n", caddyMethod)
		fmt.Fprintln(&b, "| mode | throughput | p50 | p99 | server CPU per request | added per request | gonetscope's own CPU | lines/s | errors |")
		fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|---|")
		for _, m := range modes {
			if m.table != "caddy" {
				continue
			}
			rs := results[m.name]
			errs := 0
			for _, r := range rs {
				errs += r.errors
			}
			added, own, nl := "—", "", ""
			if m.name != caddyUntraced {
				added = fmt.Sprintf("%+.1f µs", (ratio(rs, cbase, cpu)-1)*med(cbase, cpu))
				own = fmt.Sprintf("%.1f ms/s", med(rs, tcpu))
				if strings.Contains(m.name, "gonetscope") {
					nl = linesCell(rs)
				}
			}
			fmt.Fprintf(&b, "| %s | %.0f req/s (%.1f%%) | %.3f ms (×%.2f) | %.3f ms (×%.2f) | %.1f µs (×%.2f) | %s | %s | %s | %d |\n",
				m.name, med(rs, rps), 100*ratio(rs, cbase, rps), med(rs, p50), ratio(rs, cbase, p50), med(rs, p99), ratio(rs, cbase, p99),
				med(rs, cpu), ratio(rs, cbase, cpu), added, own, nl, errs)
		}
	}
	if len(startup) > 0 {
		fmt.Fprintf(&b, "\n## Start-up and memory\n\n%s\n\n", startupMethod)
		var ts []time.Duration
		var kbs []int
		for _, r := range startup {
			ts, kbs = append(ts, r.toAttached), append(kbs, r.traceKB)
		}
		slices.Sort(ts)
		slices.Sort(kbs)
		fmt.Fprintf(&b, "| measure | median | min | max |\n|---|---|---|---|\n")
		fmt.Fprintf(&b, "| `gonetscope trace --pid` to its attached event | %d ms | %d ms | %d ms |\n",
			ts[len(ts)/2].Milliseconds(), ts[0].Milliseconds(), ts[len(ts)-1].Milliseconds())
		fmt.Fprintf(&b, "| peak RSS of that trace | %.1f MB | %.1f MB | %.1f MB |\n",
			float64(kbs[len(kbs)/2])/1024, float64(kbs[0])/1024, float64(kbs[len(kbs)-1])/1024)
		fmt.Fprintf(&b, "| peak RSS of a daemon (--metrics-addr), caddy attached, /metrics scraped | %.1f MB | | |\n", float64(startup[0].daemonKB)/1024)
	}

	fmt.Fprintf(&b, "\n## Cost table\n\n%s\n\n", costMethod)
	fmt.Fprintln(&b, "| mode | server CPU per request | added per request | p50 | gonetscope CPU | gonetscope context switches | untraced process: getppid | untraced process: read /dev/zero |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|")
	bcpu := med(base, cpu)
	for _, m := range modes {
		if m.table != "cost" && m.table != "both" {
			continue
		}
		rs := results[m.name]
		added := "—"
		own, cs := "—", "—"
		if m.name != modes[0].name {
			added = fmt.Sprintf("%+.1f µs", (ratio(rs, base, cpu)-1)*bcpu)
			own = fmt.Sprintf("%.1f ms/s", med(rs, tcpu))
			cs = fmt.Sprintf("%.0f /s", med(rs, tcs))
		}
		fmt.Fprintf(&b, "| %s | %.1f µs (×%.2f) | %s | %.3f ms (×%.2f) | %s | %s | %.0f ns (×%.2f) | %.0f ns (×%.2f) |\n",
			m.name, med(rs, cpu), ratio(rs, base, cpu), added, med(rs, p50), ratio(rs, base, p50), own, cs,
			med(rs, gpp), ratio(rs, base, gpp), med(rs, rdz), ratio(rs, base, rdz))
	}

	fmt.Fprintf(&b, "\n## BPF programs' own time\n\n%s\n\n", statsMethod)
	fmt.Fprintln(&b, "| program | path | runs per request | ns per run | ns per request | recursion misses |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|")
	for _, sm := range statsModes {
		res, path := stats[sm.name], sm.path
		var total uint64
		progs := slices.Collect(maps.Keys(res.progs))
		slices.SortFunc(progs, func(a, b string) int { return cmp.Compare(res.progs[b].ns, res.progs[a].ns) })
		for _, p := range progs {
			s := res.progs[p]
			if s.runs == 0 || res.requests == 0 {
				continue
			}
			total += s.ns
			fmt.Fprintf(&b, "| %s | %s | %.2f | %.0f | %.0f | %d |\n", p, path, float64(s.runs)/float64(res.requests),
				float64(s.ns)/float64(s.runs), float64(s.ns)/float64(res.requests), s.misses)
		}
		if res.requests > 0 {
			fmt.Fprintf(&b, "| **all** | %s | | | **%.0f** (server CPU %.1f µs per request in this run) | |\n", path, float64(total)/float64(res.requests), res.cpuPerReq)
		}
	}

	slices.Sort(attach.attach)
	if len(attach.attach) > 0 {
		fmt.Fprintf(&b, "\n## Attach\n\n`gonetscope attach` to a running %s (%.1f MB, stripped Go %s binary: offsets from the version table), through a running daemon, 5 times: median %v (min %v, max %v), including the CLI's own start. Daemon RSS while attached: %.1f MB.\n",
			filepath.Base(attach.binary), float64(attach.size)/1e6, runtime.Version(), attach.attach[len(attach.attach)/2].Round(time.Millisecond),
			attach.attach[0].Round(time.Millisecond), attach.attach[len(attach.attach)-1].Round(time.Millisecond), float64(attach.rssKB)/1024)
	}
	if *extra != "" {
		raw, err := os.ReadFile(*extra)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\n## Microbenchmarks\n\n`go test -bench` of pkg/tracer (see its bench_test.go), same run:\n\n```\n%s```\n", raw)
	}
	return os.WriteFile(*outFile, []byte(b.String()), 0o644)
}

func loadavg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

const statsMethod = `Each program's runs and run time from the kernel's BPF stats
(kernel.bpf_stats_enabled), over one measurement of the same server and
load per path, made apart from the rounds above because the stats add two
clock reads to every program run (they are included here). Runs count every
process on the host: the socket tracepoints fire for the load generator's
sockets too, which leave at the PID filter. Programs that run in softirq
or in gonetscope itself (the listener iterator) are in the table, and
their time is not all the server's. A uprobe's trap (the breakpoint, and
the kernel's emulation of the probed instruction) is not in any program's
run time: only the server CPU per request shows it. The "cost stage" rows
are the cost table's first four modes: each adds one part of the netpoll
programs to the row above (dispatch alone, with the stats' own clock
reads; the PID filter; the socket storage and goroutine read; the park,
ready and resume records), so the difference between two rows is that
part's BPF time per request, steadier than the CPU columns above.`

const costMethod = `Where the cost goes: the same server and load, with gonetscope's hot
path switched on one part at a time (trace --bench-cost-stage, which cuts
each netpoll program short after that part; the verifier drops the rest),
on the kernel's default netpoll path (the sock path where the kernel has
the socket tracepoints of 6.3: it has no epoll scan, so its last two
stages are the same code).
Each row adds one part to the row above, so the difference between two rows
is that part's cost. The first rows send nothing (--min-wait 1h); the
tcp programs (connects, accepts, state changes: rare on keep-alive
connections) and the overflow sampler run in full throughout, except
where a row says otherwise. "gonetscope CPU" and its context switches
(all its threads, per second of load) are the daemon's own cost: the
overflow sampler, the liveness poll and the ring-buffer readers.
"Untraced process" is a getppid and a 1-byte read of /dev/zero timed in
cmd/bench itself (never traced) while the mode runs: what every other
process on the host pays.`

const caddyMethod = `caddy 2.11.9 (github.com/caddyserver/caddy/v2, built from the module
proxy by make bench: 82 MB with DWARF), ` + "`caddy respond`" + ` on loopback, under the same load
and rounds as above (its modes are interleaved with the others); ratios
are to the untraced caddy of the same round.`

const startupMethod = `gonetscope started on a running caddy (82 MB, with DWARF: the runtime
offsets come from it) five times: the time from exec to the attached
event's timestamp, and the peak RSS of the process (its VmHWM, read
from /proc every 2 ms while it runs: getrusage's maxrss would be the
bench's own RSS where that is larger, as exec hands the high-water mark
of the forking process's memory down to the child). Then a daemon with
--metrics-addr, caddy attached through its socket and /metrics scraped
once: its peak RSS (VmHWM) after that.`

const method = `A Go net/http server (cmd/bench/benchserver) on loopback under an open-loop,
fixed-rate load of keep-alive requests from cmd/bench on the same machine.
"Server CPU per request" is the on-CPU time of all the server's threads
(/proc/PID/task/*/schedstat) over the measurement divided by the requests
served: it is what tracing adds to the traced process (probe handlers run
in its context). "lines/s" is what gonetscope wrote, summaries included (median over rounds), and after it the events most written (each a rate over all rounds). Throughput at a fixed rate
shows whether the server kept up; latency percentiles include the load
generator, which shares the machine's cores.`
