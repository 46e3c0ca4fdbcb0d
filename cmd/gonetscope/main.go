// Command gonetscope traces the network waits of running Go programs with
// eBPF and says, per goroutine, whether the peer or the Go scheduler made
// them wait. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/metrics"
	"github.com/gonetscope/gonetscope/pkg/netpoll"
	"github.com/gonetscope/gonetscope/pkg/output"
	"github.com/gonetscope/gonetscope/pkg/tracer"
)

const usage = `gonetscope traces where the goroutines of running Go programs wait on the network.

Usage:
  gonetscope trace --pid PID [--pid PID ...] [flags]   stream JSON events until Ctrl-C
  gonetscope daemon [--socket PATH] [--output FILE]     run until SIGTERM; attach on request
  gonetscope attach|detach [--socket PATH] PID          tell the daemon
  gonetscope list [--socket PATH]                       what the daemon traces
  gonetscope profile --pid PID --kind netpoll|cpu|offcpu -o out.pb.gz   write a pprof profile
  gonetscope version

Run 'gonetscope COMMAND -h' for a command's flags.
`

func main() {
	if err := run(os.Args[1:]); err != nil && err != errHelp {
		fmt.Fprintln(os.Stderr, "gonetscope:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("no command given: use 'gonetscope trace --pid PID'")
	}
	switch args[0] {
	case "trace":
		return trace(args[1:])
	case "daemon":
		return daemon(args[1:])
	case "attach", "detach", "list":
		return client(args[0], args[1:])
	case "profile":
		return profileCmd(args[1:])
	case "version":
		fmt.Println("gonetscope", version)
		return nil
	case "-h", "--help", "help":
		fmt.Print(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q: use 'gonetscope trace --pid PID'", args[0])
}

var version = "dev"

type pidList []int

func (p *pidList) String() string { return fmt.Sprint(*p) }
func (p *pidList) Set(s string) error {
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return fmt.Errorf("%q is not a PID", s)
	}
	*p = append(*p, pid)
	return nil
}

// summaryInterval maps --summary-interval to Options.SummaryInterval,
// where 0 means the default.
func summaryInterval(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// parseWaits reads --waits: whether idle waits are written too.
func parseWaits(s string) (bool, error) {
	switch s {
	case "in_request":
		return false, nil
	case "all":
		return true, nil
	}
	return false, fmt.Errorf("--waits %q: use in_request or all", s)
}

// costStages are the values of --bench-cost-stage.
var costStages = map[string]netpoll.CostStage{
	"":         netpoll.CostAll,
	"dispatch": netpoll.CostDispatch,
	"filter":   netpoll.CostFilter,
	"goid":     netpoll.CostGoid,
	"records":  netpoll.CostRecords,
}

func trace(args []string) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	var (
		pids        pidList
		out         = fs.String("output", "-", "write events to this file ('-': stdout)")
		duration    = fs.Duration("duration", 0, "stop after this long (0: until Ctrl-C, SIGTERM or the last target exits)")
		minWait     = fs.Duration("min-wait", time.Millisecond, "report netpoll and epoll waits at least this long (0: all)")
		hooks       = fs.String("hooks", "auto", "kernel hook mechanism: auto (best available), fentry, kprobe or tracepoint")
		ringBuf     = fs.Int("ring-buffer-bytes", 0, "size of each BPF ring buffer (power of two, page multiple; 0: 1 MiB)")
		ready       = fs.String("ready-file", "", "create this file once every target is attached")
		stacks      = fs.Bool("stacks", false, "netpoll_wait, tcp_connect and tcp_accept carry the goroutine's stack")
		grs         = fs.Bool("goroutines", false, "track goroutine creation and exit: goroutines and goroutine_leak events (two uprobes per target)")
		grEvery     = fs.Duration("goroutine-interval", 10*time.Second, "how often to write the goroutines event and look for leaks")
		metricsAddr = fs.String("metrics-addr", "", "serve Prometheus metrics on http://HOST:PORT/metrics (off when empty; e.g. 127.0.0.1:9464)")
		ovfEvery    = fs.Duration("overflow-interval", 100*time.Millisecond, "how often listeners' accept-queue drops are sampled (listen_overflow)")
		events      = fs.String("events", "default", "event kinds to write: default (all but epoll_wait), all, or a comma-separated list of "+strings.Join(tracer.EventKinds, ","))
		waits       = fs.String("waits", "in_request", "netpoll waits to write: in_request (waits in the middle of work) or all (idle ones too: a server connection waiting for the next request, an accept waiting for a client)")
		summary     = fs.Duration("summary-interval", 10*time.Second, "write a summary event per target this often (0: never)")
		maxRate     = fs.Int("max-events-per-sec", 100, "write at most this many events per second per target; the excess is counted in the summary (0: no limit)")
		pollEvery   = fs.Duration("poll-interval", time.Second, "how often lost counters are read (and target liveness checked where the kernel has no pidfd)")
		costStage   = fs.String("bench-cost-stage", "", "make bench only: run the netpoll programs only up to dispatch, filter, goid or records")
		wakeupEach  = fs.Bool("bench-wakeup-each", false, "make bench only: wake the reader on every ring buffer record (the kernel's default)")
	)
	fs.Var(&pids, "pid", "PID of a Go program to trace (repeatable)")
	if err := parseFlags(fs, args, "gonetscope trace --pid PID [--pid PID ...] [flags]"); err != nil {
		return err
	}
	if len(pids) == 0 {
		return errors.New("no target: give the PID of a Go program with --pid")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: targets are given with --pid", fs.Arg(0))
	}
	if err := checkHooks(*hooks); err != nil {
		return err
	}
	if *metricsAddr != "" {
		if err := metrics.CheckAddr(*metricsAddr); err != nil {
			return err
		}
	}
	if err := checkPrivileges(); err != nil {
		return err
	}
	// Refuse bad targets before anything is loaded into the kernel.
	for _, pid := range pids {
		if _, _, err := tracer.Inspect(pid); err != nil {
			return err
		}
	}
	var sink tracer.Sink = output.NewJSON(os.Stdout)
	if *out != "-" {
		f, err := output.OpenFile(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		sink = f
	}

	if *ovfEvery <= 0 {
		return fmt.Errorf("--overflow-interval %v: give a positive duration such as 100ms", *ovfEvery)
	}
	kinds, err := tracer.ParseEvents(*events)
	if err != nil {
		return err
	}
	idle, err := parseWaits(*waits)
	if err != nil {
		return err
	}
	stage, ok := costStages[*costStage]
	if !ok {
		return fmt.Errorf("--bench-cost-stage %q: use dispatch, filter, goid or records", *costStage)
	}
	if *pollEvery <= 0 {
		return fmt.Errorf("--poll-interval %v: give a positive duration such as 100ms", *pollEvery)
	}
	tr, err := tracer.New(tracer.Options{MinWait: *minWait, Hooks: *hooks, RingBufferBytes: uint32(*ringBuf), Stacks: *stacks,
		Goroutines: *grs, GoroutineInterval: *grEvery, OverflowInterval: *ovfEvery, PollInterval: *pollEvery,
		CostStage: stage, WakeupEach: *wakeupEach, Events: kinds, IdleWaits: idle,
		SummaryInterval: summaryInterval(*summary), MaxEventsPerSec: *maxRate})
	if err != nil {
		return err
	}
	defer tr.Close()
	for _, pid := range pids {
		if _, err := tr.Attach(pid); err != nil {
			return err
		}
	}
	if *metricsAddr != "" {
		srv, err := metrics.Listen(*metricsAddr, tr)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("writing --ready-file: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reason := event.ReasonSignal
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		timer := time.AfterFunc(*duration, func() { reason = event.ReasonDuration; cancel() })
		defer timer.Stop()
	}
	err = tr.Run(ctx, sink, tracer.RunOptions{
		ExitWhenNoTargets: true,
		Reason:            func() string { return reason },
	})
	if errors.Is(err, tracer.ErrNoTargets) {
		return nil
	}
	return err
}

// checkPrivileges fails early, naming what is missing, instead of letting
// the first bpf() call fail with a bare EPERM.
func checkPrivileges() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return errors.New("this kernel has no BTF (/sys/kernel/btf/vmlinux): gonetscope needs Linux 5.15+ built with CONFIG_DEBUG_INFO_BTF=y")
	}
	if missing := missingCaps(); len(missing) > 0 {
		return fmt.Errorf("missing capabilities %s: run gonetscope as root (sudo)", strings.Join(missing, ", "))
	}
	if !tracefsMounted() {
		return errors.New("tracefs is not mounted: mount it with 'mount -t tracefs nodev /sys/kernel/tracing'")
	}
	return nil
}

func tracefsMounted() bool {
	for _, dir := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(dir); err == nil {
			return true
		}
	}
	return false
}
