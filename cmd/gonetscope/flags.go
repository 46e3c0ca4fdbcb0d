package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
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
	output, hooks, metricsAddr, events, waits, connections string
	minWait, goroutineEvery, overflowEvy                   time.Duration
	slowRequest                                            time.Duration
	requests, contention                                   bool
	minBlock                                               time.Duration
	summaryEvery, pollEvery                                time.Duration
	healthEvery, noDeadlineAfter                           time.Duration
	ringBufferBytes, maxRate, procs                        int
	stacks, goroutines                                     bool

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
	fs.IntVar(&f.ringBufferBytes, "ring-buffer-bytes", 0, "size of each BPF ring buffer (power of two, page multiple; 0: 1 MiB, 256 KiB for connects and accepts)")
	fs.BoolVar(&f.stacks, "stacks", false, "netpoll_wait, tcp_connect and tcp_accept carry the goroutine's stack")
	fs.BoolVar(&f.goroutines, "goroutines", false, "track goroutine creation and exit: goroutines and goroutine_leak events (two uprobes per target)")
	fs.BoolVar(&f.requests, "requests", false, "trace net/http and gRPC server and client requests: http_request, http_client_request, grpc_request and grpc_client_request events, http_routes and grpc_methods summaries, request-duration histograms (uprobes on emulated instructions in the target)")
	fs.BoolVar(&f.contention, "contention", false, "measure blocking on locks, channels and select: contention events (uprobes on the runtime's blocking slow paths; a lock taken without waiting costs nothing)")
	fs.DurationVar(&f.minBlock, "min-block", 10*time.Millisecond, "with --contention: write a contention event for each block at least this long")
	fs.DurationVar(&f.slowRequest, "slow-request", 500*time.Millisecond, "with --requests: write http_request and http_client_request for requests at least this long (0: all); every request counts in the histograms")
	fs.DurationVar(&f.goroutineEvery, "goroutine-interval", 10*time.Second, "how often to write the goroutines event and look for leaks")
	fs.DurationVar(&f.overflowEvy, "overflow-interval", 100*time.Millisecond, "how often listeners' accept queues are sampled (listen_overflow)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", metricsAddr, "serve Prometheus metrics on http://HOST:PORT/metrics ('' turns it off; e.g. 127.0.0.1:9464)")
	fs.StringVar(&f.events, "events", "default", "event kinds to write: default (all but epoll_wait), all, or a comma-separated list of "+strings.Join(tracer.EventKinds, ","))
	fs.StringVar(&f.waits, "waits", "in_request", "netpoll waits to write: in_request (waits in the middle of work) or all (idle ones too: a server connection waiting for the next request, an accept waiting for a client)")
	fs.StringVar(&f.connections, "connections", "notable", "tcp_connect and tcp_accept events to write: notable (a failed connect, or a handshake or accept-queue wait of at least --min-wait) or all; the others count in the summary (below_threshold) and the metrics")
	fs.DurationVar(&f.summaryEvery, "summary-interval", 10*time.Second, "write a summary event per target this often (0: never)")
	fs.IntVar(&f.maxRate, "max-events-per-sec", 100, "write at most this many events per second per target; the excess is counted in the summary (0: no limit)")
	fs.DurationVar(&f.pollEvery, "poll-interval", time.Second, "how often lost counters are read (and target liveness checked where the kernel has no pidfd)")
	fs.DurationVar(&f.healthEvery, "health-interval", time.Second, "how often each target's GC records and fds are read (gc, fd_pressure events)")
	fs.DurationVar(&f.noDeadlineAfter, "no-deadline-after", 30*time.Second, "report a goroutine parked this long on a socket that has no deadline (no_deadline)")
	fs.IntVar(&f.procs, "procs", 1, "CPUs gonetscope's own code runs on at once while it streams (GOMAXPROCS; loading uses them all): 1 keeps it off the target's other cores with the fewest thread wake-ups; 0: one per CPU")
}

// limitProcs caps the threads that run gonetscope's Go code at once
// (GOMAXPROCS) for the streaming that follows loading: n Ps instead of one
// per CPU (0 leaves it). Measured on the 2-vCPU bench VM, benchserver at
// 5,000 req/s, three interleaved rounds: with every wait sent (about 8,500
// lines a second) one P took gonetscope from 45-56 to 34-35 ms of CPU a
// second and from 900-1,140 to 470-480 context switches a second (idle
// Ps' threads spinning for work, sysmon polling); with the defaults,
// 9-10 to 7 ms/s and 160-180 to 100.
func limitProcs(n int) {
	if n > 0 {
		runtime.GOMAXPROCS(n)
	}
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
	if f.minBlock <= 0 {
		return fmt.Errorf("--min-block %v: give a positive duration such as 10ms", f.minBlock)
	}
	if f.slowRequest < 0 {
		return fmt.Errorf("--slow-request %v: give a duration such as 500ms, or 0 for every request", f.slowRequest)
	}
	if f.healthEvery <= 0 {
		return fmt.Errorf("--health-interval %v: give a positive duration such as 1s", f.healthEvery)
	}
	if f.noDeadlineAfter <= 0 {
		return fmt.Errorf("--no-deadline-after %v: give a positive duration such as 30s", f.noDeadlineAfter)
	}
	if f.procs < 0 {
		return fmt.Errorf("--procs %d: give a number of CPUs such as 1, or 0 for one per CPU", f.procs)
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
	switch f.connections {
	case "notable", "all":
	default:
		return fmt.Errorf("--connections %q: use notable or all", f.connections)
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
		Requests: f.requests, SlowRequest: f.slowRequest, Contention: f.contention, MinBlock: f.minBlock,
		PollInterval: f.pollEvery, Events: f.kinds, HealthInterval: f.healthEvery, NoDeadlineAfter: f.noDeadlineAfter, IdleWaits: f.idleWaits, AllConnections: f.connections == "all",
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
