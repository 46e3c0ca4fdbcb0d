// Command bench is `make bench`: it measures what tracing costs a Go HTTP
// server and writes BENCHMARKS.md.
//
// Method: cmd/benchserver serves on loopback; an open-loop load generator
// in this process sends a fixed rate of keep-alive requests (a fixed rate
// is steadier than saturating a 2-core machine). Each mode — untraced,
// gonetscope with its defaults, gonetscope with every event (--min-wait 0),
// and the classic way (bpftrace with uprobes on the Go runtime's netpoll
// functions) — runs once per round, the modes interleaved, and each round
// starts a fresh server. Reported per mode: median over rounds of achieved
// throughput, p50 and p99 latency, and the server's CPU time per request
// (utime+stime from /proc/PID/stat), each also as a ratio to untraced.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	rate       = flag.Int("rate", 5000, "requests per second")
	duration   = flag.Duration("duration", 5*time.Second, "load per measurement")
	rounds     = flag.Int("rounds", 3, "rounds; modes are interleaved within each")
	gonetscope = flag.String("gonetscope", "bin/gonetscope", "gonetscope binary")
	server     = flag.String("server", "bin/benchserver", "benchmark server binary")
	outFile    = flag.String("o", "BENCHMARKS.md", "write the report here")
	extra      = flag.String("extra", "", "file whose contents (e.g. go test -bench output) are appended to the report")
)

type mode struct {
	name  string
	start func(pid int) (stop func() error, err error)
}

type result struct {
	rps, p50, p99, cpuPerReq float64 // req/s, ms, ms, µs
	errors                   int
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	modes := []mode{
		{"untraced", func(int) (func() error, error) { return func() error { return nil }, nil }},
		{"gonetscope (defaults: --min-wait 1ms)", gonetscopeMode()},
		{"gonetscope --min-wait 0 (every wait sent)", gonetscopeMode("--min-wait", "0")},
		{"bpftrace, uprobes on runtime netpoll functions (classic)", bpftraceMode},
	}
	attach, err := measureAttach()
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	results := map[string][]result{}
	for r := 1; r <= *rounds; r++ {
		for _, m := range modes {
			res, err := measure(m)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, m.name, err)
			}
			fmt.Fprintf(os.Stderr, "round %d %-55s %8.0f req/s  p50 %.3fms  p99 %.3fms  cpu %.1fµs/req  errors %d\n",
				r, m.name, res.rps, res.p50, res.p99, res.cpuPerReq, res.errors)
			results[m.name] = append(results[m.name], res)
		}
	}
	return report(modes, results, attach)
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

	dir, err := os.MkdirTemp("", "bench-daemon")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "ctl.sock")
	daemon := exec.Command(*gonetscope, "daemon", "--socket", sock, "--output", os.DevNull, "--metrics-addr", "")
	daemon.Stderr = os.Stderr
	if err := daemon.Start(); err != nil {
		return res, err
	}
	defer func() { daemon.Process.Signal(os.Interrupt); daemon.Wait() }()
	if err := waitFile(sock, 30*time.Second); err != nil {
		return res, err
	}
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

func vmRSSKB(pid int) int {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb
		}
	}
	return 0
}

// measure starts a fresh server, starts the mode's tracer on it, drives the
// load and returns what it measured.
func measure(m mode) (result, error) {
	srv := exec.Command(*server)
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		return result{}, err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return result{}, fmt.Errorf("benchserver did not start: %w", err)
	}
	stop, err := m.start(srv.Process.Pid)
	if err != nil {
		return result{}, err
	}
	res, err := load("http://"+strings.TrimSpace(addr)+"/", srv.Process.Pid)
	if serr := stop(); err == nil {
		err = serr
	}
	return res, err
}

func gonetscopeMode(flags ...string) func(int) (func() error, error) {
	return func(pid int) (func() error, error) {
		dir, err := os.MkdirTemp("", "bench")
		if err != nil {
			return nil, err
		}
		ready := filepath.Join(dir, "ready")
		args := append([]string{"trace", "--pid", strconv.Itoa(pid), "--ready-file", ready}, flags...)
		cmd := exec.Command(*gonetscope, args...)
		cmd.Stdout = io.Discard
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		if err := waitFile(ready, 30*time.Second); err != nil {
			cmd.Process.Kill()
			return nil, err
		}
		return func() error {
			defer os.RemoveAll(dir)
			cmd.Process.Signal(os.Interrupt)
			return cmd.Wait()
		}, nil
	}
}

// bpftraceMode answers the same question the classic way: uprobes on the
// runtime's netpoll wait path, counting and timing waits per thread.
func bpftraceMode(pid int) (func() error, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("starting bpftrace (apt-get install bpftrace): %w", err)
	}
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && lines.Text() != "ready" { // after "Attaching 3 probes..."
	}
	if lines.Err() != nil || lines.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("bpftrace did not attach: %v", lines.Err())
	}
	go io.Copy(io.Discard, stdout)
	return func() error {
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
func load(url string, pid int) (result, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	// Warm up the connections and the server.
	for range 200 {
		if resp, err := client.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      int
		wg        sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	cpu0 := cpuTicks(pid)
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
	cpu := cpuTicks(pid) - cpu0
	slices.Sort(latencies)
	if len(latencies) == 0 {
		return result{}, errors.New("no request succeeded")
	}
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	ticks := float64(100) // USER_HZ
	return result{
		rps:       float64(len(latencies)) / elapsed.Seconds(),
		p50:       pct(0.50),
		p99:       pct(0.99),
		cpuPerReq: float64(cpu) / ticks * 1e6 / float64(len(latencies)),
		errors:    errs,
	}, nil
}

// cpuTicks is utime+stime of pid in clock ticks.
func cpuTicks(pid int) uint64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return u + s
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func report(modes []mode, results map[string][]result, attach attachResult) error {
	var b strings.Builder
	host, _ := os.Hostname()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` on %s: %s, Linux %s, %d CPUs, %s.\n\n",
		time.Now().UTC().Format("2006-01-02"), host, strings.TrimSpace(string(kernel)), runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(&b, "## Target overhead\n\n%s\n\n", method)
	fmt.Fprintf(&b, "Load: %d req/s for %v per measurement, %d rounds, modes interleaved; medians over rounds.\n\n", *rate, *duration, *rounds)
	fmt.Fprintln(&b, "| mode | throughput | p50 | p99 | server CPU per request | errors |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|")
	base := results[modes[0].name]
	brps, bp50, bp99, bcpu := median(base, func(r result) float64 { return r.rps }), median(base, func(r result) float64 { return r.p50 }),
		median(base, func(r result) float64 { return r.p99 }), median(base, func(r result) float64 { return r.cpuPerReq })
	for _, m := range modes {
		rs := results[m.name]
		rps, p50, p99, cpu := median(rs, func(r result) float64 { return r.rps }), median(rs, func(r result) float64 { return r.p50 }),
			median(rs, func(r result) float64 { return r.p99 }), median(rs, func(r result) float64 { return r.cpuPerReq })
		errs := 0
		for _, r := range rs {
			errs += r.errors
		}
		fmt.Fprintf(&b, "| %s | %.0f req/s (%.1f%%) | %.3f ms (×%.2f) | %.3f ms (×%.2f) | %.1f µs (×%.2f) | %d |\n",
			m.name, rps, 100*rps/brps, p50, p50/bp50, p99, p99/bp99, cpu, cpu/bcpu, errs)
	}
	slices.Sort(attach.attach)
	fmt.Fprintf(&b, "\n## Attach\n\n`gonetscope attach` to a running %s (%.1f MB, stripped Go %s binary: offsets from the version table), through a running daemon, 5 times: median %v (min %v, max %v), including the CLI's own start. Daemon RSS while attached: %.1f MB.\n",
		filepath.Base(attach.binary), float64(attach.size)/1e6, runtime.Version(), attach.attach[len(attach.attach)/2].Round(time.Millisecond),
		attach.attach[0].Round(time.Millisecond), attach.attach[len(attach.attach)-1].Round(time.Millisecond), float64(attach.rssKB)/1024)
	if *extra != "" {
		raw, err := os.ReadFile(*extra)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\n## Microbenchmarks\n\n`go test -bench` of pkg/tracer (see its bench_test.go), same run:\n\n```\n%s```\n", raw)
	}
	return os.WriteFile(*outFile, []byte(b.String()), 0o644)
}

const method = `A Go net/http server (cmd/benchserver) on loopback under an open-loop,
fixed-rate load of keep-alive requests from cmd/bench on the same machine.
"Server CPU per request" is the server's utime+stime over the measurement
divided by the requests served: it is what tracing adds to the traced
process (probe handlers run in its context). Throughput at a fixed rate
shows whether the server kept up; latency percentiles include the load
generator, which shares the machine's cores.`
