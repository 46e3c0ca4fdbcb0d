package tracer

import (
	"time"

	"github.com/gonetscope/gonetscope/pkg/netpoll"
)

// Options configure a Tracer.
type Options struct {
	// MinWait is the shortest netpoll_wait / epoll_wait sent to user space;
	// shorter ones are dropped in the kernel. Zero sends all.
	MinWait time.Duration
	// Hooks forces a mechanism family for the kernel-function hooks:
	// "auto" (default), "fentry", "kprobe" or "tracepoint".
	Hooks string
	// RingBufferBytes sizes each BPF ring buffer; zero means 1 MiB (256 KiB
	// for the connects and accepts).
	RingBufferBytes uint32
	// QueueLen bounds the queue between the ring buffer readers and the
	// sink; events that find it full are dropped and counted. Zero: 8192.
	QueueLen int
	// PollInterval is how often the lost counters are read and, where
	// the kernel has no pidfd, target liveness is checked (otherwise an
	// exit is seen at once, without polling). Zero: 1s. Execs are checked
	// every OverflowInterval.
	PollInterval time.Duration
	// Stacks: netpoll_wait, tcp_connect and tcp_accept carry the
	// goroutine's symbolized user stack.
	Stacks bool
	// Goroutines tracks goroutine creation and exit (uprobes): created and
	// exited counts per site in the goroutines event, which a scan of the
	// goroutine list writes every GoroutineInterval (zero: 10s) with the
	// GoroutineTop sites (zero: 10), --goroutines or not.
	Goroutines        bool
	GoroutineInterval time.Duration
	GoroutineTop      int
	// Requests traces net/http server and client requests (uprobes,
	// pkg/requests): histograms per route, and http_request and
	// http_client_request events for those of at least SlowRequest
	// (zero: all).
	Requests    bool
	SlowRequest time.Duration
	// Contention measures blocking on locks, channels, select and
	// sync.Cond (uprobes, pkg/contention) and writes a contention event
	// for each block of at least MinBlock (zero: 10ms).
	Contention bool
	MinBlock   time.Duration
	// HealthInterval is how often each target's GC records and fds are
	// read (gc, fd_pressure). Zero: 1s. NoDeadlineAfter is how long a
	// goroutine stays parked on a socket without a deadline before
	// no_deadline says so. Zero: 30s. The goroutine list is scanned every
	// GoroutineInterval, --goroutines or not.
	HealthInterval  time.Duration
	NoDeadlineAfter time.Duration
	// OverflowInterval is how often the traced listeners' accept queues
	// are sampled for listen_overflow, and execs checked. Zero: 100ms.
	OverflowInterval time.Duration
	// DrainInterval bounds how long an event waits in the kernel: netpoll
	// submits wake the reader at most once per interval (or when a
	// quarter of the ring buffer is waiting), and the reader drains once
	// more an interval after each wake-up. Zero: 50ms.
	DrainInterval time.Duration
	// Events are the event kinds written (see EventKinds); nil:
	// DefaultEvents.
	Events []string
	// SummaryInterval is how often each target's summary event is
	// written. Zero: 10s; negative: never.
	SummaryInterval time.Duration
	// MaxEventsPerSec limits the events written per target (a token
	// bucket holding one second's worth); the excess is counted in the
	// summary. Zero: no limit.
	MaxEventsPerSec int
	// IdleWaits sends idle netpoll waits too (--waits all): a server
	// connection waiting for its client's next request, an accept finding
	// no connection. They count in the histograms either way.
	IdleWaits bool
	// AllConnections writes every tcp_connect and tcp_accept
	// (--connections all). Otherwise only the notable ones are: a connect
	// that failed or whose handshake took at least MinWait, an accept
	// that waited in the queue at least MinWait; the rest are counted in
	// the summary (below_threshold) and the metrics.
	AllConnections bool
	// CostStage and WakeupEach are for make bench's cost table only (see
	// netpoll.Options); zero values run everything, batching wake-ups.
	CostStage  netpoll.CostStage
	WakeupEach bool
	// noExitWatch leaves exits to the poll (TestPIDReuse keeps a dead
	// target attached to test the kernel's start-time check).
	noExitWatch bool
}

// withDefaults fills in the zero values that mean a default.
func (opts Options) withDefaults() Options {
	if opts.QueueLen == 0 {
		opts.QueueLen = 8192
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Second
	}
	if opts.GoroutineInterval == 0 {
		opts.GoroutineInterval = 10 * time.Second
	}
	if opts.GoroutineTop == 0 {
		opts.GoroutineTop = 10
	}
	if opts.HealthInterval == 0 {
		opts.HealthInterval = time.Second
	}
	if opts.NoDeadlineAfter == 0 {
		opts.NoDeadlineAfter = 30 * time.Second
	}
	if opts.OverflowInterval == 0 {
		opts.OverflowInterval = 100 * time.Millisecond
	}
	if opts.SummaryInterval == 0 {
		opts.SummaryInterval = 10 * time.Second
	}
	if opts.DrainInterval == 0 {
		opts.DrainInterval = 50 * time.Millisecond
	}
	if opts.Events == nil {
		opts.Events = DefaultEvents
	}
	return opts
}
