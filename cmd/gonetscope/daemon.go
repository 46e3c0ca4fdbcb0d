package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gonetscope/gonetscope/pkg/control"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/metrics"
	"github.com/gonetscope/gonetscope/pkg/output"
	"github.com/gonetscope/gonetscope/pkg/tracer"
)

// daemon runs until SIGTERM with one set of loaded BPF programs, and
// attaches to and detaches from PIDs on request over the control socket.
func daemon(args []string) error {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	var (
		socket  = fs.String("socket", control.DefaultSocket, "control socket (mode 0600, root only)")
		out     = fs.String("output", "-", "write events to this file, reopened on SIGHUP ('-': stdout)")
		minWait = fs.Duration("min-wait", time.Millisecond, "report netpoll and epoll waits at least this long (0: all)")
		hooks   = fs.String("hooks", "auto", "kernel hook mechanism: auto, fentry, kprobe or tracepoint")
		ringBuf = fs.Int("ring-buffer-bytes", 0, "size of each BPF ring buffer (0: 1 MiB)")
		stacks  = fs.Bool("stacks", false, "netpoll_wait, tcp_connect and tcp_accept carry the goroutine's stack")
		grs     = fs.Bool("goroutines", false, "track goroutine creation and exit: goroutines and goroutine_leak events (two uprobes per target)")
		grEvery = fs.Duration("goroutine-interval", 10*time.Second, "how often to write the goroutines event and look for leaks")
		ovEvery = fs.Duration("overflow-interval", 100*time.Millisecond, "how often listeners' accept-queue drops are sampled (listen_overflow)")
		events  = fs.String("events", "default", "event kinds to write: default (all but epoll_wait), all, or a comma-separated list of "+strings.Join(tracer.EventKinds, ","))
		waits   = fs.String("waits", "in_request", "netpoll waits to write: in_request or all (idle ones too)")
		summary = fs.Duration("summary-interval", 10*time.Second, "write a summary event per target this often (0: never)")
		maxRate = fs.Int("max-events-per-sec", 100, "write at most this many events per second per target; the excess is counted in the summary (0: no limit)")
		mAddr   = fs.String("metrics-addr", "127.0.0.1:9464", "serve Prometheus metrics on http://HOST:PORT/metrics ('' turns it off; loopback unless told otherwise)")
	)
	if err := parseFlags(fs, args, "gonetscope daemon [flags]"); err != nil {
		return err
	}
	if err := checkHooks(*hooks); err != nil {
		return err
	}
	kinds, err := tracer.ParseEvents(*events)
	if err != nil {
		return err
	}
	idle, err := parseWaits(*waits)
	if err != nil {
		return err
	}
	if *ovEvery <= 0 {
		return fmt.Errorf("--overflow-interval %v: give a positive duration such as 100ms", *ovEvery)
	}
	if *mAddr != "" {
		if err := metrics.CheckAddr(*mAddr); err != nil {
			return err
		}
	}
	if err := checkPrivileges(); err != nil {
		return err
	}

	var sink tracer.Sink = output.NewJSON(os.Stdout)
	var file *output.File
	if *out != "-" {
		f, err := output.OpenFile(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		sink, file = f, f
	}

	tr, err := tracer.New(tracer.Options{MinWait: *minWait, Hooks: *hooks, RingBufferBytes: uint32(*ringBuf), Stacks: *stacks,
		Goroutines: *grs, GoroutineInterval: *grEvery, OverflowInterval: *ovEvery, Events: kinds, IdleWaits: idle,
		SummaryInterval: summaryInterval(*summary), MaxEventsPerSec: *maxRate})
	if err != nil {
		return err
	}
	defer tr.Close()
	srv, err := control.Listen(*socket, daemonHandler{tr})
	if err != nil {
		return err
	}
	defer srv.Close()
	if *mAddr != "" {
		ms, err := metrics.Listen(*mAddr, tr)
		if err != nil {
			return err
		}
		defer ms.Close()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if file != nil {
				if err := file.Reopen(); err != nil {
					fmt.Fprintln(os.Stderr, "gonetscope:", err)
				}
			}
		}
	}()
	served := make(chan struct{})
	go func() { srv.Serve(ctx); close(served) }()
	err = tr.Run(ctx, sink, tracer.RunOptions{})
	stop()
	<-served
	return err
}

type daemonHandler struct{ tr *tracer.Tracer }

func (h daemonHandler) Attach(pid int) (control.Target, error) {
	ev, err := h.tr.Attach(pid)
	if err != nil {
		return control.Target{}, err
	}
	return control.Target{PID: pid, Comm: ev.Comm, Exe: ev.Exe, GoVersion: ev.GoVersion, Since: ev.Time}, nil
}

func (h daemonHandler) Detach(pid int) error { return h.tr.Detach(pid, event.ReasonRequested) }

func (h daemonHandler) List() []control.Target {
	var list []control.Target
	for _, t := range h.tr.Targets() {
		list = append(list, control.Target{PID: t.PID, Comm: t.Comm, Exe: t.Exe, GoVersion: t.GoVersion, Since: t.Since})
	}
	return list
}

// client runs attach, detach and list against a daemon.
func client(op string, args []string) error {
	fs := flag.NewFlagSet(op, flag.ContinueOnError)
	socket := fs.String("socket", control.DefaultSocket, "the daemon's control socket")
	usage := "gonetscope " + op + " [--socket PATH] PID"
	if op == "list" {
		usage = "gonetscope list [--socket PATH]"
	}
	if err := parseFlags(fs, args, usage); err != nil {
		return err
	}
	req := control.Request{Op: op}
	if op != "list" {
		if fs.NArg() != 1 {
			return fmt.Errorf("%s needs one PID: %s", op, usage)
		}
		pid, err := strconv.Atoi(fs.Arg(0))
		if err != nil || pid <= 0 {
			return fmt.Errorf("%q is not a PID", fs.Arg(0))
		}
		req.PID = pid
	} else if fs.NArg() != 0 {
		return fmt.Errorf("list takes no arguments: %s", usage)
	}
	rep, err := control.Call(*socket, req)
	if err != nil {
		return err
	}
	switch op {
	case "attach":
		fmt.Printf("attached to %d (%s, %s)\n", rep.Target.PID, rep.Target.Comm, rep.Target.GoVersion)
	case "detach":
		fmt.Printf("detached from %d\n", req.PID)
	case "list":
		for _, t := range rep.Targets {
			fmt.Printf("%d\t%s\t%s\t%s\tsince %s\n", t.PID, t.Comm, t.GoVersion, t.Exe, t.Since.Format(time.RFC3339))
		}
	}
	return nil
}

// parseFlags parses a subcommand's flags; errors are reported once, by main.
func parseFlags(fs *flag.FlagSet, args []string, usage string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(os.Stdout)
		fmt.Println("Usage:", usage)
		fs.PrintDefaults()
		return errHelp
	}
	return err
}

// errHelp ends a command that printed its help: exit status 0.
var errHelp = errors.New("help")

func checkHooks(h string) error {
	switch h {
	case "auto", "fentry", "kprobe", "tracepoint":
		return nil
	}
	return fmt.Errorf("unknown hook mechanism %q: use --hooks auto, fentry, kprobe or tracepoint", h)
}
