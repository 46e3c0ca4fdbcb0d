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

	"github.com/cilium/ebpf/rlimit"

	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/netpoll"
	"github.com/gonetscope/gonetscope/pkg/proc"
	"github.com/gonetscope/gonetscope/pkg/tracer"
)

const usage = `gonetscope traces where the goroutines of running Go programs wait on the network.

Usage:
  gonetscope trace --pid PID [--pid PID ...] [flags]   stream JSON events until Ctrl-C
  gonetscope daemon [--socket PATH] [--output FILE]     run until SIGTERM; attach on request
  gonetscope attach|detach [--socket PATH] PID          tell the daemon
  gonetscope list [--socket PATH]                       what the daemon traces
  gonetscope profile --pid PID --kind netpoll|cpu|offcpu|heap -o out.pb.gz   write a pprof profile
  gonetscope goroutines --pid PID [--json] [-o goroutine.pb.gz]    every goroutine and its stack, read from memory
  gonetscope gc --pid PID [--json]                      the GC's own records (cycles, pauses, GOGC), read from memory
  gonetscope diagnose --pid PID [--duration 30s] [--out DIR] [--json]  the checklist, from a live run
  gonetscope report events.jsonl                        the same checklist over a recorded stream
  gonetscope version

Run 'gonetscope COMMAND -h' for a command's flags.
`

func main() {
	err := run(os.Args[1:])
	var exit exitError
	switch {
	case err == nil, err == errHelp:
	case errors.As(err, &exit):
		if exit.err != nil {
			fmt.Fprintln(os.Stderr, "gonetscope:", exit.err)
		}
		os.Exit(exit.code)
	default:
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
	case "goroutines":
		return goroutinesCmd(args[1:])
	case "diagnose":
		return diagnoseCmd(args[1:])
	case "report":
		return reportCmd(args[1:])
	case "gc":
		return gcCmd(args[1:])
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
		pids       pidList
		tf         tracingFlags
		duration   = fs.Duration("duration", 0, "stop after this long (0: until Ctrl-C, SIGTERM or the last target exits)")
		ready      = fs.String("ready-file", "", "create this file once every target is attached")
		costStage  = fs.String("bench-cost-stage", "", "make bench only: run the netpoll programs only up to dispatch, filter, goid or records")
		wakeupEach = fs.Bool("bench-wakeup-each", false, "make bench only: wake the reader on every ring buffer record (the kernel's default)")
	)
	tf.register(fs, "")
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
	if err := tf.check(); err != nil {
		return err
	}
	stage, ok := costStages[*costStage]
	if !ok {
		return fmt.Errorf("--bench-cost-stage %q: use dispatch, filter, goid or records", *costStage)
	}
	// What is not a Go program gonetscope can trace is refused before
	// anything is loaded; the binaries' runtime layouts (their DWARF) are
	// then read while the BPF objects load: on two cores that is a third
	// of the time to the attached event. A target that still fails ends
	// the run with its own error, and what was loaded is closed.
	for _, pid := range pids {
		if err := goruntime.CheckPID(pid); err != nil {
			return err
		}
	}
	// Both allocate far more than they keep (the kernel's BTF, DWARF).
	restoreGC := goruntime.TightGC()
	inspected := make(chan error, 1)
	go func() { inspected <- inspectAll(pids) }()
	sink, _, tr, closeAll, err := tf.open(func(o *tracer.Options) { o.CostStage, o.WakeupEach = stage, *wakeupEach })
	ierr := <-inspected
	restoreGC()
	if ierr != nil {
		if err == nil {
			closeAll()
		}
		return ierr
	}
	if err != nil {
		return err
	}
	defer closeAll()
	stopMetrics := func() {}
	defer func() { stopMetrics() }()
	return runFor(tr, pids, sink, *duration, tf.procs, func() error {
		var err error
		if stopMetrics, err = tf.serveMetrics(tr); err != nil {
			stopMetrics = func() {}
			return err
		}
		return writeReady(*ready)
	}, nil)
}

// inspectAll refuses targets that are not Go programs gonetscope can read.
func inspectAll(pids []int) error {
	for _, pid := range pids {
		if _, _, err := goruntime.InspectPID(pid); err != nil {
			return err
		}
	}
	return nil
}

// writeReady creates the --ready-file, if one was given.
func writeReady(path string) error {
	if path == "" {
		return nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing --ready-file: %w", err)
	}
	return nil
}

// runFor attaches pids to tr, calls attached, and streams tr's events to
// sink on procs CPUs (limitProcs) until duration ends (0: no end), SIGINT
// or SIGTERM, or the last target exits; each target's detached event
// names which. ending, if not nil, is called when duration ends, while
// the targets are still attached.
func runFor(tr *tracer.Tracer, pids []int, sink tracer.Sink, duration time.Duration, procs int, attached func() error, ending func()) error {
	for _, pid := range pids {
		if _, err := tr.Attach(pid); err != nil {
			return err
		}
	}
	if attached != nil {
		if err := attached(); err != nil {
			return err
		}
	}
	limitProcs(procs)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reason := event.ReasonSignal
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		timer := time.AfterFunc(duration, func() {
			if ending != nil {
				ending()
			}
			reason = event.ReasonDuration
			cancel()
		})
		defer timer.Stop()
	}
	err := tr.Run(ctx, sink, tracer.RunOptions{
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
		return errors.New("this kernel has no BTF (/sys/kernel/btf/vmlinux): gonetscope needs Linux 5.10+ built with CONFIG_DEBUG_INFO_BTF=y")
	}
	if missing := missingCaps(); len(missing) > 0 {
		return fmt.Errorf("missing capabilities %s: run gonetscope as root (sudo)", strings.Join(missing, ", "))
	}
	// The classic tracepoints are found by their ids in tracefs. Where
	// nobody mounted it, gonetscope mounts it for itself (privateTracefs
	// executes gonetscope again, and does not return on success).
	if !tracefsMounted() {
		if err := privateTracefs(); err != nil {
			return fmt.Errorf("tracefs is not mounted, and gonetscope could not mount it for itself (%v): mount it with 'mount -t tracefs nodev /sys/kernel/tracing'", err)
		}
	}
	// The kernel side keys targets by the host's PIDs, and a container's
	// PID namespace hides every other container's processes.
	if host, err := proc.InHostPIDNamespace(); err != nil {
		return fmt.Errorf("reading gonetscope's own PID namespace: %w", err)
	} else if !host {
		return errors.New("gonetscope runs in a PID namespace other than the host's, so it cannot see the PIDs it must trace: run it in the host PID namespace (Kubernetes: hostPID: true; docker: --pid=host)")
	}
	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; later ones
	// to the memory cgroup, and this does nothing there.
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising RLIMIT_MEMLOCK for the BPF maps (kernels before 5.11 count them against it): %v: run as root, or grant CAP_SYS_RESOURCE", err)
	}
	return nil
}
