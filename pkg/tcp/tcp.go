// Package tcp loads bpf/tcp.bpf.c: TCP connects (handshake time, result) and
// accepts (time in the accept queue, the listener's backlog) of traced
// processes.
//
// Two hook points have better mechanisms than tracepoints where the kernel
// allows them. Load tries them best first and keeps the first that loads and
// attaches; Hooks reports the choice:
//
//	tcp_connect:     fentry, kprobe, tracepoint (sock:inet_sock_set_state)
//	inet_csk_accept: fexit, kretprobe, tracepoint (syscalls:sys_exit_accept4)
//
// The events are sent from the same places on every path, so they are the
// same whatever was chosen.
package tcp

import (
	"cmp"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// Options change the object before it is loaded.
type Options struct {
	// Targets is the shared map of traced processes (netpoll.Objects.Targets).
	Targets *ebpf.Map
	// CallArgs is the shared map of the socket calls' arguments
	// (netpoll.Objects.CallArgs).
	CallArgs *ebpf.Map
	// RingBufferBytes sizes the event ring buffer; zero: 256 KiB.
	RingBufferBytes uint32
	// WakeupInterval bounds the reader's wake-ups (zero: 50ms): it must
	// drain once more this long after each (pkg/tracer does).
	WakeupInterval time.Duration
	// Hooks is bpfobj.HooksAuto (the best mechanism the kernel allows) or
	// forces a family; a forced family the kernel refuses is an error.
	Hooks string
}

// Objects are the loaded and attached programs and maps.
type Objects struct {
	coll     *ebpf.Collection
	links    []link.Link
	attached []*bpfobj.Attached
	hooks    map[string]string
	// syscalls are the syscall tracepoints of connect and accept4 where
	// fentry does not serve, attached while a target needs them (Trace).
	syscalls *bpfobj.SyscallLinks
	// callUprobes serve instead where the targets can have them.
	callUprobes []bpfobj.CallUprobe
}

// defaultRingBufferBytes: a connect or accept event is written per
// connection at most, and the reader drains every 50ms after a wake-up,
// so 256 KiB (about 1,300 events) holds 26,000 a second; the kernel maps
// a ring buffer's data twice into the reader, so each MiB saved is 2 MiB
// of RSS.
const defaultRingBufferBytes = 256 << 10

var hookPoints = []struct {
	name       string
	candidates []bpfobj.Candidate
	// chosen runs once a kernel-function mechanism was attached.
	chosen func(o *Objects) error
}{
	{
		name: "tcp_connect",
		candidates: []bpfobj.Candidate{
			{Family: bpfobj.HooksFentry, Mechanism: "fentry", Probes: []bpfobj.Probe{{Prog: tcpProgFentryTcpConnect, Attach: bpfobj.Tracing}}},
			{Family: bpfobj.HooksKprobe, Mechanism: "kprobe", Probes: []bpfobj.Probe{{Prog: tcpProgKprobeTcpConnect, Attach: bpfobj.Kprobe("tcp_connect")}}},
		},
		chosen: func(o *Objects) error {
			// The tracepoint's SYN_SENT branch stops recording starts.
			return o.coll.Variables[tcpVarConnectStartWith].Set(uint32(tcpConnectStartHookCONNECT_START_KERNEL_FUNC))
		},
	},
	{
		name: "inet_csk_accept",
		candidates: []bpfobj.Candidate{
			{Family: bpfobj.HooksFentry, Mechanism: "fexit", Probes: []bpfobj.Probe{{Prog: tcpProgFexitInetCskAccept, Attach: bpfobj.Tracing}}},
			{Family: bpfobj.HooksKprobe, Mechanism: "kretprobe", Probes: []bpfobj.Probe{{Prog: tcpProgKretprobeInetCskAccept, Attach: bpfobj.Kretprobe("inet_csk_accept")}}},
		},
	},
}

// syscallHooks are the ends of connect and accept4.
var syscallHooks = []bpfobj.SyscallHook{
	{Tracing: tcpProgFexitSysConnect, Uprobe: tcpProgUprobeConnectReturn, At: bpfobj.CallPoint{Syscall: goruntime.Connect, Return: true},
		Tracepoint: tcpProgExitConnect},
	{Tracing: tcpProgFexitSysAccept4, Uprobe: tcpProgUprobeAccept4Return, At: bpfobj.CallPoint{Syscall: goruntime.Accept4, Return: true},
		Tracepoint: tcpProgExitAccept4},
}

// Load loads the programs and maps into the kernel and attaches them,
// choosing a mechanism per hook point.
func Load(opts Options) (*Objects, error) {
	family := cmp.Or(opts.Hooks, bpfobj.HooksAuto)
	if err := bpfobj.CheckHooks(family); err != nil {
		return nil, err
	}
	spec, err := loadTcp()
	if err != nil {
		return nil, err
	}
	spec.Maps[tcpMapEvents].MaxEntries = cmp.Or(opts.RingBufferBytes, defaultRingBufferBytes)
	if err := spec.Variables[tcpVarWakeupIntervalNs].Set(uint64(cmp.Or(opts.WakeupInterval, 50*time.Millisecond).Nanoseconds())); err != nil {
		return nil, fmt.Errorf("setting wakeup_interval_ns: %w", err)
	}
	// The tracepoint programs always load; the kernel-function ones are
	// loaded one candidate at a time below, since a kernel may refuse any.
	var optional []string
	for _, hp := range hookPoints {
		optional = append(optional, bpfobj.CandidateProgs(hp.candidates)...)
	}
	optional = append(optional, bpfobj.CandidateProgs(bpfobj.SyscallsFentry(syscallHooks))...)
	base := bpfobj.Without(spec, optional...)
	coll, err := bpfobj.NewCollection(base, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{tcpMapTargets: opts.Targets, tcpMapSavedCalls: opts.CallArgs},
	})
	if err != nil {
		return nil, bpfobj.LoadError("tcp BPF object", err)
	}
	o := &Objects{coll: coll, hooks: map[string]string{}}
	calls, links, syscalls, err := bpfobj.AttachTracepointsAndSyscalls(spec, base, coll, syscallHooks, family)
	if err != nil {
		o.Close()
		return nil, err
	}
	o.links, o.syscalls, o.hooks[bpfobj.SocketCalls] = links, syscalls, bpfobj.CallsMechanism(calls)
	if calls != nil {
		o.attached = append(o.attached, calls)
	} else {
		o.callUprobes = bpfobj.CallUprobes(coll, syscallHooks)
	}
	for _, hp := range hookPoints {
		a, err := bpfobj.AttachFirst(spec, coll.Maps, hp.candidates, family)
		if err != nil {
			o.Close()
			return nil, fmt.Errorf("hook %s: %w", hp.name, err)
		}
		if a == nil {
			o.hooks[hp.name] = "tracepoint"
			continue
		}
		o.attached = append(o.attached, a)
		o.hooks[hp.name] = a.Mechanism
		if hp.chosen != nil {
			if err := hp.chosen(o); err != nil {
				o.Close()
				return nil, err
			}
		}
	}
	return o, nil
}

// Hooks maps each hook point to the mechanism in use.
func (o *Objects) Hooks() map[string]string { return o.hooks }

// Events is the ring buffer of tcp_connect, tcp_accept and accept_error records.
func (o *Objects) Events() *ebpf.Map { return o.coll.Maps[tcpMapEvents] }

// Lost returns how many events of each type found the ring buffer full so far.
func (o *Objects) Lost() (map[string]uint64, error) {
	return bpfobj.LostCounts(o.coll.Maps[tcpMapLost], eventNames)
}

var eventNames = map[tcpEventType]string{
	tcpEventTypeEVENT_TCP_CONNECT:  "tcp_connect",
	tcpEventTypeEVENT_TCP_ACCEPT:   "tcp_accept",
	tcpEventTypeEVENT_ACCEPT_ERROR: "accept_error",
}

// Trace says whether a target needs the syscall tracepoints that serve
// where neither fentry nor uprobes do: they are attached only while one
// does.
func (o *Objects) Trace(on bool) error { return o.syscalls.Trace(on) }

// CallUprobes are the programs at the returns of connect and accept4 for
// uprobes in a target (netpoll.Objects.CallUprobes); nil where fentry
// serves.
func (o *Objects) CallUprobes() []bpfobj.CallUprobe { return o.callUprobes }

// Close detaches and unloads everything.
func (o *Objects) Close() error {
	for _, a := range o.attached {
		a.Close()
	}
	o.syscalls.Close()
	bpfobj.CloseAll(o.links)
	o.coll.Close()
	return nil
}

// Decode turns one ring buffer record into an event.
func Decode(raw []byte, clock bpfobj.Clock) (event.Event, error) {
	h, err := bpfobj.View[bpfobj.EventHeader](raw)
	if err != nil {
		return nil, err
	}
	switch tcpEventType(h.Type) {
	case tcpEventTypeEVENT_TCP_CONNECT:
		r, err := bpfobj.View[tcpTcpConnectEvent](raw)
		if err != nil {
			return nil, err
		}
		result := "ok"
		if r.Result != 0 {
			result = event.ErrnoName(r.Result)
		}
		hdr := h.Header(eventNames[tcpEventTypeEVENT_TCP_CONNECT], clock)
		hdr.Stack = bpfobj.Stack(r.Stack.Pcs[:], r.Stack.Len)
		return &event.TCPConnect{
			Header:      hdr,
			FD:          r.Fd,
			Addrs:       bpfobj.Addrs(r.Addrs.Family, r.Addrs.Saddr, r.Addrs.Daddr, r.Addrs.Sport, r.Addrs.Dport),
			HandshakeNs: r.HandshakeNs,
			Result:      result,
		}, nil
	case tcpEventTypeEVENT_TCP_ACCEPT:
		r, err := bpfobj.View[tcpTcpAcceptEvent](raw)
		if err != nil {
			return nil, err
		}
		hdr := h.Header(eventNames[tcpEventTypeEVENT_TCP_ACCEPT], clock)
		hdr.Stack = bpfobj.Stack(r.Stack.Pcs[:], r.Stack.Len)
		return &event.TCPAccept{
			Header:         hdr,
			FD:             r.Fd,
			ListenFD:       r.ListenFd,
			Addrs:          bpfobj.Addrs(r.Addrs.Family, r.Addrs.Saddr, r.Addrs.Daddr, r.Addrs.Sport, r.Addrs.Dport),
			QueueWaitNs:    r.QueueWaitNs,
			QueueWaitKnown: r.QueueWaitKnown != 0,
			Backlog:        r.Backlog,
			BacklogMax:     r.BacklogMax,
		}, nil
	case tcpEventTypeEVENT_ACCEPT_ERROR:
		r, err := bpfobj.View[tcpAcceptErrorEvent](raw)
		if err != nil {
			return nil, err
		}
		e := &event.AcceptError{
			Header:   h.Header(eventNames[tcpEventTypeEVENT_ACCEPT_ERROR], clock),
			ListenFD: r.ListenFd,
			Addrs:    bpfobj.Addrs(r.Addrs.Family, r.Addrs.Saddr, r.Addrs.Daddr, r.Addrs.Sport, r.Addrs.Dport),
			Errno:    event.ErrnoName(r.Err),
		}
		// Read now, while the process is short of fds; -1 if it is gone.
		e.OpenFDs, e.FDLimit = -1, 0
		if n, err := proc.OpenFDs(int(r.Hdr.Pid)); err == nil {
			e.OpenFDs = n
		}
		if n, err := proc.FDLimit(int(r.Hdr.Pid)); err == nil {
			e.FDLimit = n
		}
		return e, nil
	}
	return nil, fmt.Errorf("tcp: unknown event type %d", h.Type)
}
