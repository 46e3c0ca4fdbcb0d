package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/gonetscope/gonetscope/pkg/metrics"
	"github.com/gonetscope/gonetscope/pkg/output"
	"github.com/gonetscope/gonetscope/pkg/tracer"
)

// tracingFlags are the flags trace and daemon share: defined once, with
// one help text each. Only the default of --metrics-addr differs.
type tracingFlags struct {
	output, hooks, metricsAddr           string
	minWait, goroutineEvery, overflowEvy time.Duration
	ringBufferBytes                      int
	stacks, goroutines                   bool
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
}

// check refuses bad values, and a machine gonetscope cannot run on, before
// anything is loaded.
func (f *tracingFlags) check() error {
	if err := checkHooks(f.hooks); err != nil {
		return err
	}
	if f.overflowEvy <= 0 {
		return fmt.Errorf("--overflow-interval %v: give a positive duration such as 100ms", f.overflowEvy)
	}
	if f.metricsAddr != "" {
		if err := metrics.CheckAddr(f.metricsAddr); err != nil {
			return err
		}
	}
	return checkPrivileges()
}

// open opens --output (stdout, or a file, returned to be reopened) and
// loads the tracer; closeAll releases both.
func (f *tracingFlags) open() (sink tracer.Sink, file *output.File, tr *tracer.Tracer, closeAll func(), err error) {
	sink = output.NewJSON(os.Stdout)
	if f.output != "-" {
		if file, err = output.OpenFile(f.output); err != nil {
			return nil, nil, nil, nil, err
		}
		sink = file
	}
	tr, err = tracer.New(tracer.Options{MinWait: f.minWait, Hooks: f.hooks, RingBufferBytes: uint32(f.ringBufferBytes),
		Stacks: f.stacks, Goroutines: f.goroutines, GoroutineInterval: f.goroutineEvery, OverflowInterval: f.overflowEvy})
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
