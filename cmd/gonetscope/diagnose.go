package main

// gonetscope diagnose and gonetscope report: the checklist of pkg/diagnose,
// over a live run of the tracer or over a recorded event stream.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/pprof/profile"
	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/diagnose"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/metrics"
	"github.com/gonetscope/gonetscope/pkg/output"
	"github.com/gonetscope/gonetscope/pkg/proc"
	"github.com/gonetscope/gonetscope/pkg/sampler"
	"github.com/gonetscope/gonetscope/pkg/tracer"
)

// exitError ends gonetscope with its code; err (if any) is printed first.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// cannot is diagnose's and report's "could not diagnose": exit status 2.
func cannot(err error) error {
	if err == nil || errors.Is(err, errHelp) {
		return err
	}
	return exitError{diagnose.ExitFailed, err}
}

const diagnoseUsage = "gonetscope diagnose --pid PID [--duration 30s] [--out DIR] [--json] [--quiet] [--config FILE]"

func diagnoseCmd(args []string) error {
	fs := flag.NewFlagSet("diagnose", flag.ContinueOnError)
	var (
		pid        = fs.Int("pid", 0, "PID of the Go program to diagnose")
		duration   = fs.Duration("duration", 30*time.Second, "how long to watch it")
		out        = fs.String("out", "", "keep events.jsonl, report.json and report.txt in this directory")
		asJSON     = fs.Bool("json", false, "print the report as JSON (docs/diagnose.md) instead of text")
		quiet      = fs.Bool("quiet", false, "no progress on stderr")
		config     = fs.String("config", "", "thresholds file, YAML or JSON (docs/diagnose.md)")
		goroutines = fs.Bool("goroutines", false, "also count goroutine creations and exits per site (two uprobes: about 2 µs per goroutine created); leaks are found without")
		grEvery    = fs.Duration("goroutine-interval", 0, "how often to count goroutines by site (0: a sixth of --duration); a leak shows over 4 intervals")
		minWait    = fs.Duration("min-wait", time.Millisecond, "record netpoll waits at least this long")
		hooks      = fs.String("hooks", "auto", "kernel hook mechanism: auto, fentry, kprobe or tracepoint")
		ringBytes  = fs.Int("ring-buffer-bytes", 0, "size of each BPF ring buffer (0: 1 MiB)")
		ready      = fs.String("ready-file", "", "create this file once the target is attached")
		slowReq    = fs.Duration("slow-request", 500*time.Millisecond, "record net/http requests at least this long as http_request events (the evidence of the request item); every request counts in its route's p99")
		noDeadline = fs.Duration("no-deadline-after", 0, "report goroutines parked this long on a connection without a deadline (0: half of --duration, at most 30s)")
	)
	if err := parseFlags(fs, args, diagnoseUsage); err != nil {
		return cannot(err)
	}
	switch {
	case fs.NArg() > 0:
		return cannot(fmt.Errorf("unexpected argument %q: %s", fs.Arg(0), diagnoseUsage))
	case *pid <= 0:
		return cannot(errors.New("no target: give the PID of a Go program with --pid"))
	case *duration <= 0:
		return cannot(fmt.Errorf("--duration %s: give a positive duration such as 30s", *duration))
	case *slowReq < 0:
		return cannot(fmt.Errorf("--slow-request %s: give a duration such as 500ms, or 0 for every request", *slowReq))
	}
	if *noDeadline < 0 {
		return cannot(fmt.Errorf("--no-deadline-after %s: give a positive duration such as 30s", *noDeadline))
	}
	if *noDeadline == 0 {
		*noDeadline = min(*duration/2, 30*time.Second)
	}
	if *grEvery <= 0 {
		*grEvery = max(*duration/6, 100*time.Millisecond)
	}
	th, err := thresholds(*config)
	if err != nil {
		return cannot(err)
	}
	if err := bpfobj.CheckHooks(*hooks); err != nil {
		return cannot(err)
	}
	if err := checkPrivileges(); err != nil {
		return cannot(err)
	}
	// The runtime reader (symbols, the heap profile) refuses what is not
	// a Go program gonetscope can read.
	p, rt, err := openTarget(*pid)
	if err != nil {
		return cannot(err)
	}
	ns, _ := proc.ReadNamespaces(*pid)

	var events io.Writer
	var recorded bytes.Buffer
	events = &recorded
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return cannot(fmt.Errorf("creating --out: %w", err))
		}
		f, err := os.Create(filepath.Join(*out, "events.jsonl"))
		if err != nil {
			return cannot(fmt.Errorf("creating --out: %w", err))
		}
		defer f.Close()
		events = io.MultiWriter(f, &recorded)
	}
	// What is cheap enough for production: the default events with
	// stacks (taken only for the events sent), one summary at the end
	// (its histograms cover the whole window), request tracing (uprobes
	// on emulated instructions: the per-route p99 and 5xx item),
	// goroutine tracking only when asked for.
	tr, err := tracer.New(tracer.Options{
		MinWait: *minWait, Hooks: *hooks, RingBufferBytes: uint32(*ringBytes), Stacks: true,
		Goroutines: *goroutines, GoroutineInterval: *grEvery, NoDeadlineAfter: *noDeadline,
		Requests: true, SlowRequest: *slowReq,
		SummaryInterval: *duration + time.Hour, MaxEventsPerSec: 1000,
	})
	if err != nil {
		return cannot(err)
	}
	defer tr.Close()
	sink := &snapshotSink{json: output.NewJSON(events), p: p, rt: rt, nsPID: ns.NsPID(), out: *out}
	stopProgress := func() {}
	err = runFor(tr, []int{*pid}, sink, *duration, 1, func() error {
		sink.begin()
		sink.every(min(5*time.Second, max(*duration/3, time.Second)))
		if !*quiet && isTerminal(os.Stderr) {
			stopProgress = progress(os.Stderr, *pid, *duration, &sink.n)
		}
		return writeReady(*ready)
	}, func() {
		// The end of the window, the target still attached: before the
		// last samples and the detach take their time.
		if *out != "" {
			sink.goroutineProfile()
			sink.metricsSnapshot(tr)
		}
	})
	sink.stop()
	sink.endCPU() // if the run ended before the detach
	stopProgress()
	if err != nil {
		return cannot(err)
	}
	if err := sink.Flush(); err != nil {
		return cannot(fmt.Errorf("writing events: %w", err))
	}
	if *out != "" {
		for name, prof := range map[string]*profile.Profile{"heap.pb.gz": sink.heap, "cpu.pb.gz": sink.cpuProf} {
			if prof == nil {
				continue
			}
			if err := writeProfile(prof, filepath.Join(*out, name)); err != nil {
				return cannot(err)
			}
		}
	}
	evs, err := diagnose.ReadEvents(&recorded)
	if err != nil {
		return cannot(err)
	}
	r, err := diagnose.Analyze(evs, uint32(*pid), th)
	if err != nil {
		return cannot(err)
	}
	return finish(r, *asJSON, *out)
}

const reportUsage = "gonetscope report [--pid PID] [--json] [--config FILE] [--out DIR] events.jsonl ('-': stdin)"

// reportCmd runs the checklist over a recorded stream, with no target.
func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	var (
		pid    = fs.Int("pid", 0, "the process to report on, when the stream traced several")
		asJSON = fs.Bool("json", false, "print the report as JSON (docs/diagnose.md) instead of text")
		config = fs.String("config", "", "thresholds file, YAML or JSON (docs/diagnose.md)")
		out    = fs.String("out", "", "write report.json and report.txt in this directory too")
	)
	if err := parseFlags(fs, args, reportUsage); err != nil {
		return cannot(err)
	}
	if fs.NArg() != 1 {
		return cannot(fmt.Errorf("report reads one event stream: %s", reportUsage))
	}
	th, err := thresholds(*config)
	if err != nil {
		return cannot(err)
	}
	var in io.Reader = os.Stdin
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return cannot(err)
		}
		defer f.Close()
		in = f
	}
	evs, err := diagnose.ReadEvents(in)
	if err != nil {
		return cannot(fmt.Errorf("%s: %w", fs.Arg(0), err))
	}
	pids := diagnose.PIDs(evs)
	target := uint32(*pid)
	switch {
	case *pid == 0 && len(pids) == 1:
		target = pids[0]
	case *pid == 0 && len(pids) == 0:
		return cannot(fmt.Errorf("%s has no attached event: not a gonetscope stream, or cut before its start", fs.Arg(0)))
	case *pid == 0:
		return cannot(fmt.Errorf("%s traced several processes %v: choose one with --pid", fs.Arg(0), pids))
	}
	r, err := diagnose.Analyze(evs, target, th)
	if err != nil {
		return cannot(err)
	}
	return finish(r, *asJSON, *out)
}

func thresholds(config string) (diagnose.Thresholds, error) {
	if config == "" {
		return diagnose.Defaults(), nil
	}
	return diagnose.LoadThresholds(config)
}

// finish prints r, keeps it in dir (if any), and ends with its exit status.
func finish(r *diagnose.Report, asJSON bool, dir string) error {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return cannot(err)
		}
		for name, write := range map[string]func(io.Writer) error{"report.json": r.JSON, "report.txt": r.Text} {
			var b bytes.Buffer
			write(&b)
			if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
				return cannot(err)
			}
		}
	}
	write := r.Text
	if asJSON {
		write = r.JSON
	}
	if err := write(os.Stdout); err != nil {
		return cannot(err)
	}
	if r.ExitStatus != 0 {
		return exitError{code: r.ExitStatus}
	}
	return nil
}

// writeProfile writes prof to a new file at path (-o, --out).
func writeProfile(prof *profile.Profile, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("opening the output file: %w", err)
	}
	if err := prof.Write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// snapshotSink is the JSON sink of a diagnose run: it counts the events,
// and adds a process event (pkg/diagnose.Snapshot) after the attach,
// periodically, and right before the detach; heap_profile and
// contention_profile events (the runtime's own heap and mutex profiles:
// pkg/diagnose.HeapSnapshot, ContentionSnapshot) after the attach and
// before the detach; and a cpu_profile event of the window before the
// detach, so that the recorded stream holds the facts report needs. Run and the
// periodic snapshot write through one lock.
type snapshotSink struct {
	mu    sync.Mutex
	json  *output.JSON
	p     proc.Process
	rt    *goruntime.Process
	nsPID int
	n     atomic.Int64
	done  chan struct{}
	wg    sync.WaitGroup
	// out is --out: where the goroutine profile and metrics.prom go.
	out string
	// heap is the last heap profile read, for --out's heap.pb.gz.
	heap *profile.Profile
	// cpu collects the CPU profile of the window (startSampler), once;
	// cpuStart is when it started, cpuErr why it could not, cpuProf the
	// profile for --out's cpu.pb.gz.
	cpu      func(*goruntime.Process, time.Duration) (*profile.Profile, uint64, error)
	cpuStart time.Time
	cpuErr   error
	cpuProf  *profile.Profile
}

// metricsSnapshot writes --out's metrics.prom: tr's Prometheus metrics as
// a scrape at the end of the window shows them, the target still attached.
// A failure is said on stderr: the report does not need it.
func (s *snapshotSink) metricsSnapshot(tr *tracer.Tracer) {
	var b bytes.Buffer
	err := metrics.WriteText(&b, tr)
	if err == nil {
		err = os.WriteFile(filepath.Join(s.out, "metrics.prom"), b.Bytes(), 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gonetscope: no metrics.prom: %v\n", err)
	}
}

// goroutineProfile writes --out's goroutine.pb.gz: the target's
// goroutines at the end of the window, read from its memory, as
// /debug/pprof/goroutine gives them. A failure is said on stderr: the
// report does not need it.
func (s *snapshotSink) goroutineProfile() {
	if !s.p.Alive() {
		fmt.Fprintln(os.Stderr, "gonetscope: no goroutine.pb.gz: the target has exited")
		return
	}
	gs, err := s.rt.Dump()
	if err == nil {
		err = writeGoroutineProfile(s.rt, gs, filepath.Join(s.out, "goroutine.pb.gz"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gonetscope: no goroutine.pb.gz: %v\n", err)
	}
}

// diagCPUHz is diagnose's CPU sampling rate per CPU: a prime, off the
// beat of the program's own timers, and a few µs of CPU a second.
const diagCPUHz = 49

// startCPU starts sampling the target's stacks on CPU.
// begin writes what the window starts from, at the attach: the process
// snapshot and the runtime's heap and mutex profiles; and starts the CPU
// sampler.
func (s *snapshotSink) begin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshotLocked()
	s.runtimeProfilesLocked()
	s.cpu, s.cpuErr = startSampler(s.p, sampler.CPU, diagCPUHz)
	s.cpuStart = time.Now()
}

func (s *snapshotSink) endCPU() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endCPULocked()
}

// endCPULocked ends the sampling and writes the cpu_profile event, once.
func (s *snapshotSink) endCPULocked() {
	if s.cpu == nil && s.cpuErr == nil {
		return
	}
	var prof *profile.Profile
	var lost uint64
	err := s.cpuErr
	if s.cpu != nil {
		prof, lost, err = s.cpu(s.rt, time.Since(s.cpuStart))
	}
	s.cpu, s.cpuErr, s.cpuProf = nil, nil, prof
	s.n.Add(1)
	s.json.Write(diagnose.CPUSnapshot(s.p, s.nsPID, diagCPUHz, prof, lost, err))
}

func (s *snapshotSink) Write(ev event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := ev.(*event.Detached); ok && int(d.PID) == s.p.PID {
		s.snapshotLocked()
		s.runtimeProfilesLocked()
		s.endCPULocked()
	}
	s.n.Add(1)
	return s.json.Write(ev)
}

func (s *snapshotSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.json.Flush()
}

func (s *snapshotSink) snapshot() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshotLocked()
}

func (s *snapshotSink) snapshotLocked() {
	if !s.p.Alive() {
		return
	}
	s.n.Add(1)
	s.json.Write(diagnose.Snapshot(s.p, s.nsPID))
}

// runtimeProfilesLocked writes the runtime's heap and mutex profiles,
// read from the target's memory.
func (s *snapshotSink) runtimeProfilesLocked() {
	if !s.p.Alive() {
		return
	}
	ev, prof := diagnose.HeapSnapshot(s.p, s.rt, s.nsPID)
	if prof != nil {
		s.heap = prof
	}
	s.n.Add(2)
	s.json.Write(ev)
	s.json.Write(diagnose.ContentionSnapshot(s.p, s.rt, s.nsPID, "mutex"))
}

// every takes a snapshot each interval, from a goroutine, until stop.
func (s *snapshotSink) every(d time.Duration) {
	s.done = make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.snapshot()
			}
		}
	}()
}

// stop ends every and waits for it.
func (s *snapshotSink) stop() {
	if s.done != nil {
		close(s.done)
		s.wg.Wait()
	}
}

// progress writes "elapsed / duration, events so far" on w every second
// until stopped, and clears its line then.
func progress(w io.Writer, pid int, d time.Duration, n *atomic.Int64) func() {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			fmt.Fprintf(w, "\rdiagnosing PID %d: %s / %s, %d events ", pid,
				time.Since(start).Round(time.Second), d, n.Load())
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
