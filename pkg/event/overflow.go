package event

import "github.com/rs/zerolog"

// Verdicts of a listen_overflow: why the accept queue overflowed.
const (
	// VerdictAcceptorBusy: the queue filled while no acceptor was parked
	// in the netpoller; the accept loop was doing other work.
	VerdictAcceptorBusy = "acceptor_busy"
	// VerdictAcceptorStarved: an acceptor was parked, the netpoller had
	// reported the listener ready, and the scheduler had not run it.
	VerdictAcceptorStarved = "acceptor_starved"
	// VerdictNoAcceptor: no live goroutine accepts on the listener.
	VerdictNoAcceptor = "no_acceptor"
	// VerdictBacklogTooSmall: an acceptor drained the queue and parked
	// within the interval, yet a burst still overflowed it.
	VerdictBacklogTooSmall = "backlog_too_small"
)

// Acceptor states.
const (
	AcceptorParked  = "parked"
	AcceptorRunning = "running"
	AcceptorBlocked = "blocked"
)

// Acceptor is a goroutine that accepts on a listener.
type Acceptor struct {
	Goid  uint64
	State string // parked, running or blocked
	// SinceNs is how long it has been in State: since it parked, since its
	// last accept4 returned, or since that accept4 (blocked).
	SinceNs uint64
	// Syscall names the syscall a blocked acceptor's thread is in.
	Syscall string
	// GoStatus is the runtime's view of the goroutine, such as "waiting:
	// sleep", "runnable", "running" or "syscall"; empty when unread.
	GoStatus string
	// Accepts is how many connections it accepted since gonetscope attached.
	Accepts uint64
	// Stack is its stack at its latest accept (tcp_accept, or a
	// netpoll_wait in accept mode), innermost first, with --stacks.
	Stack []Frame
}

// ListenOverflow: a traced listener's accept queue overflowed and the
// kernel dropped connections.
type ListenOverflow struct {
	Header
	ListenFD int32
	Addrs    Addrs
	MPTCP    bool
	// Overflows counts the connections dropped because the accept queue
	// was full (SYNs and final ACKs: the namespace's
	// TcpExtListenOverflows), Drops every SYN or handshake dropped on the
	// listener (TcpExtListenDrops: the overflows and other listen drops),
	// both since its previous event (see README: what is counted). SkDrops
	// is the rise of its own drop counter over the interval.
	Overflows, Drops, SkDrops uint64
	Backlog, BacklogMax       uint32
	IntervalNs                uint64
	Acceptors                 []Acceptor
	// AcceptRate and SynRate are per second over the interval: accepted
	// connections, and handshakes that reached the listener (completed or
	// dropped).
	AcceptRate, SynRate float64
	// AcceptErrors counts accept4 EMFILE/ENFILE on this listener in the
	// interval; AcceptErrno names the last one.
	AcceptErrors uint64
	AcceptErrno  string
	Verdict      string
}

func (o *ListenOverflow) MarshalZerologObject(e *zerolog.Event) {
	o.marshal(e)
	e.Int32("listen_fd", o.ListenFD)
	o.Addrs.marshal(e)
	e.Bool("mptcp", o.MPTCP).
		Uint64("overflows", o.Overflows).
		Uint64("drops", o.Drops).
		Uint64("sk_drops", o.SkDrops).
		Uint32("backlog", o.Backlog).
		Uint32("backlog_max", o.BacklogMax).
		Uint64("interval_ns", o.IntervalNs)
	arr := zerolog.Arr()
	for _, a := range o.Acceptors {
		d := zerolog.Dict().Uint64("goid", a.Goid).Str("state", a.State).Uint64("since_ns", a.SinceNs)
		if a.Syscall != "" {
			d.Str("syscall", a.Syscall)
		}
		if a.GoStatus != "" {
			d.Str("go_status", a.GoStatus)
		}
		d.Uint64("accepts", a.Accepts)
		if len(a.Stack) > 0 {
			d.Array("stack", frames(a.Stack))
		}
		arr.Dict(d)
	}
	e.Array("acceptors", arr).
		Float64("accept_rate", o.AcceptRate).
		Float64("syn_rate", o.SynRate).
		Uint64("accept_errors", o.AcceptErrors)
	if o.AcceptErrno != "" {
		e.Str("accept_errno", o.AcceptErrno)
	}
	e.Str("verdict", o.Verdict)
}
