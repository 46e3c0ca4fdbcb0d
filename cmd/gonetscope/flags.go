package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/metrics"
	"github.com/gonetscope/gonetscope/pkg/output"
	"github.com/gonetscope/gonetscope/pkg/tracer"
)

// tracingFlags are the flags trace and daemon share: defined once, with
// one help text each. Only the default of --metrics-addr differs.
type tracingFlags struct {
	output, hooks, metricsAddr, events, waits string
	minWait, goroutineEvery, overflowEvy      time.Duration
	summaryEvery, pollEvery                   time.Duration
	ringBufferBytes, maxRate                  int
	stacks, goroutines                        bool

	// Parsed by check.
	kinds     []string
	idleWaits bool
}

// register defines the shared flags on fs; metricsAddr is the default of
// --metrics-addr ("" for trace, loopback for the daemon).
func (f *tracingFlags) register(fs *flag.FlagSet, metricsAddr string) {
	fs.StringVar(&f.output, "output", "-", "write events to this file ('-': stdout); the daemon reopens it on SIGHUP")
	fs.DurationVar(&f.minWait, "min-wait", time.Millisecond, "report netpoll and epoll waits at least this long (0: all)")
	fs.StringVar(&f.hooks, "hooks", "auto", "kernel hook mechanism: auto (best available), fentry, kprobe or tracepoint")
	fs.IntVar(&f.ringBufferBytes, "ring-buffer-bytes", 0, "size of each BPF ring buffer (power of two, page multiple; 0: 1 MiB)")
	fs.BoolVar(&f.stacks, "stacks", false, "netpoll_wait, tcp_connect and tcp_accept carry the goroutine's stack")
	fs.BoolVar(&f.goroutines, "goroutines", false, "track goroutine creation and exit: goroutines and goroutine_leak events (two uprobes per target)")
	fs.DurationVar(&f.goroutineEvery, "goroutine-interval", 10*time.Second, "how often to write the goroutines event and look for leaks")
	fs.DurationVar(&f.overflowEvy, "overflow-interval", 100*time.Millisecond, "how often listeners' accept queues are sampled (listen_overflow)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", metricsAddr, "serve Prometheus metrics on http://HOST:PORT/metrics ('' turns it off; e.g. 127.0.0.1:9464)")
	fs.StringVar(&f.events, "events", "default", "event kinds to write: default (all but epoll_wait), all, or a comma-separated list of "+strings.Join(tracer.EventKinds, ","))
	fs.StringVar(&f.waits, "waits", "in_request", "netpoll waits to write: in_request (waits in the middle of work) or all (idle ones too: a server connection waiting for the next request, an accept waiting for a client)")
	fs.DurationVar(&f.summaryEvery, "summary-interval", 10*time.Second, "write a summary event per target this often (0: never)")
	fs.IntVar(&f.maxRate, "max-events-per-sec", 100, "write at most this many events per second per target; the excess is counted in the summary (0: no limit)")
	fs.DurationVar(&f.pollEvery, "poll-interval", time.Second, "how often lost counters are read (and target liveness checked where the kernel has no pidfd)")
}

// check refuses bad values, and a machine gonetscope cannot run on, before
// anything is loaded.
func (f *tracingFlags) check() error {
	if err := bpfobj.CheckHooks(f.hooks); err != nil {
		return err
	}
	if f.overflowEvy <= 0 {
		return fmt.Errorf("--overflow-interval %v: give a positive duration such as 100ms", f.overflowEvy)
	}
	if f.pollEvery <= 0 {
		return fmt.Errorf("--poll-interval %v: give a positive duration such as 1s", f.pollEvery)
	}
	var err error
	if f.kinds, err = tracer.ParseEvents(f.events); err != nil {
		return err
	}
	if f.idleWaits, err = parseWaits(f.waits); err != nil {
		return err
	}
	if f.metricsAddr != "" {
		if err := metrics.CheckAddr(f.metricsAddr); err != nil {
			return err
		}
	}
	return checkPrivileges()
}

// open opens --output (stdout, or a file, returned to be reopened) and
// loads the tracer, with the options the flags give and then what tune
// changes; closeAll releases both.
func (f *tracingFlags) open(tune ...func(*tracer.Options)) (sink tracer.Sink, file *output.File, tr *tracer.Tracer, closeAll func(), err error) {
	sink = output.NewJSON(os.Stdout)
	if f.output != "-" {
		if file, err = output.OpenFile(f.output); err != nil {
			return nil, nil, nil, nil, err
		}
		sink = file
	}
	opts := tracer.Options{MinWait: f.minWait, Hooks: f.hooks, RingBufferBytes: uint32(f.ringBufferBytes),
		Stacks: f.stacks, Goroutines: f.goroutines, GoroutineInterval: f.goroutineEvery, OverflowInterval: f.overflowEvy,
		PollInterval: f.pollEvery, Events: f.kinds, IdleWaits: f.idleWaits,
		SummaryInterval: summaryInterval(f.summaryEvery), MaxEventsPerSec: f.maxRate}
	for _, t := range tune {
		t(&opts)
	}
	tr, err = tracer.New(opts)
	if err != nil {
		if file != nil {
			file.Close()
		}
		return nil, nil, nil, nil, err
	}
	return sink, file, tr, func() {
		tr.Close()
		if file != nil {
			file.Close()
		}
	}, nil
}

// serveMetrics serves --metrics-addr, if set, until stop.
func (f *tracingFlags) serveMetrics(tr *tracer.Tracer) (stop func(), err error) {
	if f.metricsAddr == "" {
		return func() {}, nil
	}
	srv, err := metrics.Listen(f.metricsAddr, tr)
	if err != nil {
		return nil, err
	}
	return func() { srv.Close() }, nil
}
