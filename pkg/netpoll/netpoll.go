// Package netpoll loads bpf/netpoll.bpf.c: per-goroutine waits in Go's
// netpoller (netpoll_wait) and the netpoller's own epoll_pwait blocks
// (epoll_wait), from syscall tracepoints. It also owns the `targets` map
// that every BPF object filters on.
package netpoll

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
)

// Target is one traced process as the BPF programs see it (struct target).
type Target netpollTarget

// Hooks names this object's hook points and the mechanism each uses: the
// syscall tracepoints, on every kernel.
var Hooks = map[string]string{
	"netpoll":     "tracepoint",
	"epoll_pwait": "tracepoint",
}

// Objects are the loaded and attached programs and maps.
type Objects struct {
	coll  *ebpf.Collection
	links []link.Link
}

// Options change the object before it is loaded.
type Options struct {
	// RingBufferBytes sizes the event ring buffer (a power of two, a
	// multiple of the page size). Zero keeps the default of 1 MiB.
	RingBufferBytes uint32
	// StackTraces sizes the map of netpoll wait stacks (see EnableStacks).
	// Zero keeps 1 entry: no room for stacks, no memory spent.
	StackTraces uint32
}

// Load loads the programs and maps into the kernel and attaches them.
func Load(opts Options) (*Objects, error) {
	spec, err := loadNetpoll()
	if err != nil {
		return nil, err
	}
	if opts.RingBufferBytes != 0 {
		spec.Maps[netpollMapEvents].MaxEntries = opts.RingBufferBytes
	}
	if opts.StackTraces != 0 {
		spec.Maps[netpollMapNetpollStackTraces].MaxEntries = opts.StackTraces
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, bpfobj.LoadError("netpoll BPF object", err)
	}
	links, err := bpfobj.AttachTracepoints(spec, coll.Programs)
	if err != nil {
		coll.Close()
		return nil, err
	}
	return &Objects{coll: coll, links: links}, nil
}

// Targets is the map of traced processes, keyed by PID, value Target.
func (o *Objects) Targets() *ebpf.Map { return o.coll.Maps[netpollMapTargets] }

// Parks is the map of goroutines parked in the netpoller, keyed by (pid,
// fd, direction); pkg/acceptq reads it to see whether an acceptor is parked.
func (o *Objects) Parks() *ebpf.Map { return o.coll.Maps[netpollMapParks] }

// Events is the ring buffer of netpoll_wait and epoll_wait records.
func (o *Objects) Events() *ebpf.Map { return o.coll.Maps[netpollMapEvents] }

// Lost returns how many events of each type found the ring buffer full so far.
func (o *Objects) Lost() (map[string]uint64, error) {
	return bpfobj.LostCounts(o.coll.Maps[netpollMapLost], eventNames)
}

var eventNames = map[netpollEventType]string{
	netpollEventTypeEVENT_NETPOLL_WAIT: "netpoll_wait",
	netpollEventTypeEVENT_EPOLL_WAIT:   "epoll_wait",
}

// Close detaches and unloads everything.
func (o *Objects) Close() error {
	bpfobj.CloseAll(o.links)
	o.coll.Close()
	return nil
}

var modes = map[netpollMode]string{
	netpollModeMODE_READ:    "read",
	netpollModeMODE_WRITE:   "write",
	netpollModeMODE_ACCEPT:  "accept",
	netpollModeMODE_CONNECT: "connect",
}

// Decode turns one ring buffer record into an event.
func Decode(raw []byte, clock bpfobj.Clock) (event.Event, error) {
	h, err := bpfobj.View[bpfobj.EventHeader](raw)
	if err != nil {
		return nil, err
	}
	switch netpollEventType(h.Type) {
	case netpollEventTypeEVENT_NETPOLL_WAIT:
		r, err := bpfobj.View[netpollNetpollWaitEvent](raw)
		if err != nil {
			return nil, err
		}
		hdr := h.Header(eventNames[netpollEventTypeEVENT_NETPOLL_WAIT], clock)
		hdr.Stack = bpfobj.Stack(r.Stack.Pcs[:], r.Stack.Len)
		return &event.NetpollWait{
			Header:       hdr,
			FD:           r.Fd,
			Mode:         modes[netpollMode(r.Mode)],
			Addrs:        bpfobj.Addrs(r.Addrs.Family, r.Addrs.Saddr, r.Addrs.Daddr, r.Addrs.Sport, r.Addrs.Dport),
			WaitNs:       r.WaitNs,
			IoWaitNs:     r.IoWaitNs,
			SchedDelayNs: r.SchedDelayNs,
			ReadySeen:    r.ReadySeen != 0,
			ParkTID:      r.ParkTid,
		}, nil
	case netpollEventTypeEVENT_EPOLL_WAIT:
		r, err := bpfobj.View[netpollEpollWaitEvent](raw)
		if err != nil {
			return nil, err
		}
		return &event.EpollWait{
			Header:    h.Header(eventNames[netpollEventTypeEVENT_EPOLL_WAIT], clock),
			BlockNs:   r.BlockNs,
			Ready:     r.Ready,
			TimeoutMs: r.TimeoutMs,
			EpFD:      r.Epfd,
		}, nil
	}
	return nil, fmt.Errorf("netpoll: unknown event type %d", h.Type)
}
