package tracer

// Benchmarks of what tracing costs, as ratios within one run (make bench).
// They need root: they load the real BPF programs and trace this very
// process, a Go program with DWARF.

import (
	"context"
	"io"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/output"
)

// syscalls are the loops measured per call. Each is a syscall a Go network
// program makes all the time.
var syscalls = []struct {
	name string
	// setup returns the loop body.
	setup func(b *testing.B) func()
}{
	{"getppid", func(b *testing.B) func() { // no gonetscope hook: the floor
		return func() { unix.Getppid() }
	}},
	{"read_devzero", func(b *testing.B) func() { // hooked, not a socket, never parks
		fd, err := unix.Open("/dev/zero", unix.O_RDONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { unix.Close(fd) })
		buf := make([]byte, 1)
		return func() { unix.Read(fd, buf) }
	}},
	{"read_eagain", func(b *testing.B) func() { // a park (EAGAIN) and a resume every call
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
		buf := make([]byte, 1)
		return func() { unix.Read(fds[0], buf) }
	}},
}

func benchSyscalls(b *testing.B) {
	for _, sc := range syscalls {
		b.Run(sc.name, func(b *testing.B) {
			body := sc.setup(b)
			b.ResetTimer()
			for range b.N {
				body()
			}
		})
	}
}

// BenchmarkSyscall measures each syscall three ways: with nothing loaded;
// with gonetscope loaded but tracing another process (what every process on
// the host pays); and with this process traced.
func BenchmarkSyscall(b *testing.B) {
	requireRoot(b)
	b.Run("untraced", benchSyscalls)
	tr, err := New(Options{MinWait: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	b.Run("loaded", benchSyscalls)
	if _, err := tr.Attach(os.Getpid()); err != nil {
		b.Fatal(err)
	}
	b.Run("traced", benchSyscalls)
}

// BenchmarkPipeline drives events end to end: every EAGAIN read and its
// retry is a netpoll_wait (min-wait 0), through the ring buffer, decoding
// and JSON, to io.Discard. It reports events per second delivered and the
// fraction lost (ring buffer full or queue full).
func BenchmarkPipeline(b *testing.B) {
	requireRoot(b)
	// PollInterval 100ms: the drain below waits for the lost counts too,
	// which are read every PollInterval (1s by default).
	tr, err := New(Options{MinWait: 0, RingBufferBytes: 8 << 20, QueueLen: 1 << 16, PollInterval: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.Attach(os.Getpid()); err != nil {
		b.Fatal(err)
	}
	sink := &countingSink{JSON: output.NewJSON(io.Discard)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- tr.Run(ctx, sink, RunOptions{}) }()

	body := syscalls[2].setup(b)
	body() // the first park; each call below resumes and parks again
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		body()
	}
	// Let the pipeline drain what the loop produced.
	for deadline := time.Now().Add(5 * time.Second); sink.waits.Load()+sink.lost.Load() < uint64(b.N) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(sink.waits.Load())/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(sink.lost.Load())/float64(b.N), "lost/op")
}

type countingSink struct {
	*output.JSON
	waits, lost atomic.Uint64
}

func (s *countingSink) Write(ev event.Event) error {
	switch e := ev.(type) {
	case *event.NetpollWait:
		s.waits.Add(1)
	case *event.Lost:
		s.lost.Add(e.Count)
	}
	return s.JSON.Write(ev)
}

// BenchmarkAttach measures attaching to a process (reading its binary's
// build info and DWARF, filling the kernel filter) and detaching.
func BenchmarkAttach(b *testing.B) {
	requireRoot(b)
	tr, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	b.ResetTimer()
	for range b.N {
		if _, err := tr.Attach(os.Getpid()); err != nil {
			b.Fatal(err)
		}
		if err := tr.Detach(os.Getpid(), event.ReasonRequested); err != nil {
			b.Fatal(err)
		}
		tr.mu.Lock()
		tr.control = tr.control[:0]
		tr.mu.Unlock()
	}
	b.StopTimer() // not Close: detaching ~30 tracepoints takes a while
}

// BenchmarkLoad measures loading and attaching every BPF program, and
// detaching and unloading them.
func BenchmarkLoad(b *testing.B) {
	requireRoot(b)
	for range b.N {
		tr, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		tr.Close()
	}
}

func requireRoot(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("benchmarks load BPF programs: run them as root")
	}
}

// BenchmarkDaemon is the daemon's user-space path alone, on one core
// (GOMAXPROCS 1): netpoll_wait events of an attached target handed to
// the queue as the ring buffer readers would, then Run's bookkeeping
// (the features, the summaries, the rate limit) and the JSON line. What
// the readers do before (decoding the record) is BenchmarkDecodeEncode
// of pkg/netpoll, a few hundred ns. The kernel side cannot produce
// events this fast on this machine (BenchmarkPipeline).
func BenchmarkDaemon(b *testing.B) {
	requireRoot(b)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	tr, err := New(Options{MinWait: 0, QueueLen: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	a, err := tr.Attach(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	sink := &countingSink{JSON: output.NewJSON(io.Discard)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- tr.Run(ctx, sink, RunOptions{}) }()
	ev := event.NetpollWait{Header: a.Header, FD: 7, Mode: "read", Kind: "in_request", WaitNs: 3_000_123, IoWaitNs: 3_000_000, SchedDelayNs: 123, ReadySeen: true}
	ev.Event, ev.Goid, ev.HasGoid = "netpoll_wait", 42, true
	ev.Addrs.Local, ev.Addrs.Remote = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.1.2.3")
	ev.Addrs.LocalPort, ev.Addrs.RemotePort = 8080, 61000
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		e := ev // each event is its own, as decoded
		e.Time = time.Now()
		tr.queue <- item{ev: &e}
	}
	for sink.waits.Load() < uint64(b.N) {
		runtime.Gosched()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
