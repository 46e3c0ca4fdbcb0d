// Package event defines the events gonetscope emits and their JSON form, one
// object per line. Field names are a contract with log pipelines: see the
// event reference in README.md.
package event

import (
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
)

// TimeFormat is RFC 3339 with nanoseconds, fixed width.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Event is anything gonetscope writes to the stream.
type Event interface {
	zerolog.LogObjectMarshaler
	Head() *Header
}

// Header is common to every event.
type Header struct {
	Time  time.Time
	Event string
	PID   uint32
	TID   uint32
	Comm  string
	// NsPID and NsTID are the process's and the thread's ids in the
	// target's own PID namespace, set only when the target lives in a PID
	// namespace of its own (a container): what its logs and its /proc say.
	// NsTID is 0 when it was not read.
	NsPID, NsTID uint32
	// Goid is the goroutine the event happened on, when HasGoid: it was
	// read from the thread's g and validated (g.m.procid equal to the
	// thread's id in the target's PID namespace).
	Goid    uint64
	HasGoid bool
	// Stack is the goroutine's user stack, with --stacks; nil otherwise.
	// (A pointer keeps Header comparable.)
	Stack *Stack
}

// Stack is a goroutine's user stack.
type Stack struct {
	// PCs as the kernel captured them: runtime addresses, innermost
	// first. Not written out.
	PCs []uint64
	// Frames are PCs symbolized, inlined calls expanded.
	Frames []Frame
}

// Frame is one frame of a goroutine's stack, as a Go panic trace shows it:
// the one Frame type, from pkg/goruntime/symtab. Func is empty when the pc
// could not be symbolized; PC says which it was.
type Frame = symtab.Frame

type frames []Frame

func (fs frames) MarshalZerologArray(a *zerolog.Array) {
	for _, f := range fs {
		a.Object(frameJSON(f))
	}
}

type frameJSON Frame

func (f frameJSON) MarshalZerologObject(e *zerolog.Event) {
	if f.Func == "" {
		e.Str("pc", "0x"+strconv.FormatUint(f.PC, 16))
		return
	}
	e.Str("func", f.Func).Str("file", f.File).Int("line", f.Line)
	if f.Inlined {
		e.Bool("inlined", true)
	}
}

func (h *Header) Head() *Header { return h }

func (h *Header) marshal(e *zerolog.Event) {
	var buf [len(TimeFormat)]byte
	e.Bytes("time", AppendTime(buf[:0], h.Time)).
		Str("event", h.Event).
		Uint32("pid", h.PID).
		Uint32("tid", h.TID).
		Str("comm", h.Comm)
	if h.NsPID != 0 {
		e.Uint32("ns_pid", h.NsPID)
		if h.NsTID != 0 {
			e.Uint32("ns_tid", h.NsTID)
		}
	}
	if h.HasGoid {
		e.Uint64("goid", h.Goid)
	}
	if h.Stack != nil && len(h.Stack.Frames) > 0 {
		e.Array("stack", frames(h.Stack.Frames))
	}
}

// Addrs are a socket's endpoints.
type Addrs struct {
	Local, Remote         netip.Addr
	LocalPort, RemotePort uint16
}

func (a Addrs) marshal(e *zerolog.Event) {
	var buf [len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%")]byte
	if a.Local.IsValid() {
		e.Bytes("laddr", a.Local.AppendTo(buf[:0])).Uint16("lport", a.LocalPort)
	}
	// A listener has no peer: its remote half is all zero.
	if a.Remote.IsValid() && !(a.Remote.IsUnspecified() && a.RemotePort == 0) {
		e.Bytes("raddr", a.Remote.AppendTo(buf[:0])).Uint16("rport", a.RemotePort)
	}
}

// ErrnoName is "ECONNREFUSED" for 111, or "errno N" when unknown.
func ErrnoName(n int32) string {
	if name := unix.ErrnoName(unix.Errno(n)); name != "" {
		return name
	}
	return "errno " + strconv.Itoa(int(n))
}

// Attached: gonetscope started tracing a process.
type Attached struct {
	Header
	// Namespaces are the inodes of the target's pid, mnt, net and cgroup
	// namespaces (/proc/PID/ns/*); ContainerID the container id its cgroup
	// path shows, or "".
	Namespaces  map[string]uint64
	ContainerID string
	Exe         string
	GoVersion   string
	// OffsetsFrom says where the runtime struct offsets came from ("dwarf").
	OffsetsFrom string
	// Hooks maps each hook point to the mechanism in use for it, such as
	// "tcp_connect": "fentry" or "tracepoint".
	Hooks     map[string]string
	MinWaitNs uint64
	// Limits lists features switched off for this target and why (an
	// unknown Go version without DWARF, say); empty when all work.
	Limits []string
	// Reason is "exec" when the traced process replaced its image and
	// gonetscope traces the new one; empty at a first attach.
	Reason string
}

func (a *Attached) MarshalZerologObject(e *zerolog.Event) {
	a.marshal(e)
	if len(a.Namespaces) > 0 {
		d := zerolog.Dict()
		for _, k := range slices.Sorted(maps.Keys(a.Namespaces)) {
			d.Uint64(k, a.Namespaces[k])
		}
		e.Dict("namespaces", d)
	}
	if a.ContainerID != "" {
		e.Str("container_id", a.ContainerID)
	}
	e.Str("exe", a.Exe).
		Str("go_version", a.GoVersion).
		Str("offsets_from", a.OffsetsFrom).
		Dict("hooks", dictOf(a.Hooks)).
		Uint64("min_wait_ns", a.MinWaitNs)
	if len(a.Limits) > 0 {
		e.Strs("limits", a.Limits)
	}
	if a.Reason != "" {
		e.Str("reason", a.Reason)
	}
}

func dictOf(m map[string]string) *zerolog.Event {
	d := zerolog.Dict()
	for _, k := range slices.Sorted(maps.Keys(m)) {
		d.Str(k, m[k])
	}
	return d
}

// Detach reasons.
const (
	ReasonSignal       = "signal"
	ReasonDuration     = "duration"
	ReasonTargetExited = "target_exited"
	ReasonRequested    = "requested"
	// ReasonExec: the process replaced its image by exec (attached again
	// with the new image's offsets, or detached when it is not Go).
	ReasonExec = "exec"
)

// Detached: gonetscope stopped tracing a process.
type Detached struct {
	Header
	Reason string
}

func (d *Detached) MarshalZerologObject(e *zerolog.Event) {
	d.marshal(e)
	e.Str("reason", d.Reason)
}

// TCPConnect: an outgoing TCP connection finished its handshake or failed.
type TCPConnect struct {
	Header
	FD          int32 // -1 when the SYN did not go out inside connect(2)
	Addrs       Addrs
	HandshakeNs uint64 // SYN sent -> established or failed
	Result      string // "ok" or the errno name
}

func (c *TCPConnect) MarshalZerologObject(e *zerolog.Event) {
	c.marshal(e)
	e.Int32("fd", c.FD)
	c.Addrs.marshal(e)
	e.Uint64("handshake_ns", c.HandshakeNs).Str("result", c.Result)
}

// TCPAccept: the process accepted a TCP connection.
type TCPAccept struct {
	Header
	FD, ListenFD int32
	Addrs        Addrs
	// QueueWaitNs is the time from handshake completion to accept: time
	// in the accept queue. Valid when QueueWaitKnown.
	QueueWaitNs    uint64
	QueueWaitKnown bool
	Backlog        uint32
	BacklogMax     uint32
}

func (a *TCPAccept) MarshalZerologObject(e *zerolog.Event) {
	a.marshal(e)
	e.Int32("fd", a.FD).Int32("listen_fd", a.ListenFD)
	a.Addrs.marshal(e)
	if a.QueueWaitKnown {
		e.Uint64("queue_wait_ns", a.QueueWaitNs)
	}
	e.Uint32("backlog", a.Backlog).Uint32("backlog_max", a.BacklogMax)
}

// NetpollWait: a goroutine parked in the netpoller on a socket and ran again.
type NetpollWait struct {
	Header
	FD   int32
	Mode string // read, write, accept, connect
	// Kind is "idle" (a server connection waiting for the client's next
	// request, or an accept finding no connection) or "in_request"
	// (waiting in the middle of work). Empty: not classified.
	Kind  string
	Addrs Addrs
	// WaitNs = IoWaitNs + SchedDelayNs: parked -> the netpoller saw the fd
	// ready (the peer) -> the goroutine ran (the Go scheduler).
	WaitNs, IoWaitNs, SchedDelayNs uint64
	// ReadySeen is false when the goroutine was woken without the
	// netpoller reporting the fd (a deadline): all of WaitNs is IoWaitNs.
	ReadySeen bool
	ParkTID   uint32
	// DeadlineNs is the deadline of the fd's side the goroutine waited on
	// (read for read and accept, write for write and connect), relative
	// to the park, when one is set (HasDeadline); DeadlineExpired when it
	// had expired. Read from the fd's pollDesc as the goroutine runs
	// again.
	DeadlineNs      int64
	HasDeadline     bool
	DeadlineExpired bool
}

func (w *NetpollWait) MarshalZerologObject(e *zerolog.Event) {
	w.marshal(e)
	e.Int32("fd", w.FD).Str("mode", w.Mode)
	if w.Kind != "" {
		e.Str("kind", w.Kind)
	}
	w.Addrs.marshal(e)
	e.Uint64("wait_ns", w.WaitNs).
		Uint64("io_wait_ns", w.IoWaitNs).
		Uint64("sched_delay_ns", w.SchedDelayNs).
		Bool("ready_seen", w.ReadySeen).
		Uint32("park_tid", w.ParkTID)
	if w.HasDeadline {
		e.Int64("deadline_ns", w.DeadlineNs)
	}
	if w.DeadlineExpired {
		e.Bool("deadline_expired", true)
	}
}

// EpollWait: a runtime thread blocked in the netpoller's epoll_pwait.
type EpollWait struct {
	Header
	BlockNs   uint64
	Ready     int32
	TimeoutMs int32
	EpFD      int32
}

func (w *EpollWait) MarshalZerologObject(e *zerolog.Event) {
	w.marshal(e)
	e.Uint64("block_ns", w.BlockNs).
		Int32("ready", w.Ready).
		Int32("timeout_ms", w.TimeoutMs).
		Int32("epfd", w.EpFD)
}

// AcceptError: accept failed because the process or host ran out of fds.
type AcceptError struct {
	Header
	ListenFD int32
	Addrs    Addrs // the listener's
	Errno    string
	OpenFDs  int
	FDLimit  uint64
}

func (a *AcceptError) MarshalZerologObject(e *zerolog.Event) {
	a.marshal(e)
	e.Int32("listen_fd", a.ListenFD)
	a.Addrs.marshal(e)
	e.Str("errno", a.Errno).Int("open_fds", a.OpenFDs).Uint64("fd_limit", a.FDLimit)
}

// Lost: events that could not be delivered. Stream names the layer:
// "netpoll" and "tcp" (the kernel's ring buffers were full) or "queue"
// (gonetscope's own queue to the writer was full). pid, tid are 0.
type Lost struct {
	Header
	Count  uint64
	Stream string
	// LostEvent is the type of the lost events, such as "netpoll_wait";
	// "undecodable" for records that could not be decoded.
	LostEvent string
}

func (l *Lost) MarshalZerologObject(e *zerolog.Event) {
	l.marshal(e)
	e.Uint64("count", l.Count).Str("stream", l.Stream).Str("lost_event", l.LostEvent)
}

// GoroutineSite is one creation site in a goroutines event.
type GoroutineSite struct {
	Site      string // the function the goroutines run
	CreatedAt string // file:line of the go statement
	CreatedBy string // the function with the go statement
	Live      int64  // live now (counted in the runtime's goroutine list)
	// Created and Exited count since the attach, with --goroutines
	// (Lifecycle); not written otherwise.
	Created   uint64
	Exited    uint64
	Lifecycle bool
}

func (s GoroutineSite) MarshalZerologObject(e *zerolog.Event) {
	e.Str("site", s.Site).Str("created_at", s.CreatedAt).Str("created_by", s.CreatedBy).Int64("live", s.Live)
	if s.Lifecycle {
		e.Uint64("created", s.Created).Uint64("exited", s.Exited)
	}
}

type goroutineSites []GoroutineSite

func (ss goroutineSites) MarshalZerologArray(a *zerolog.Array) {
	for _, s := range ss {
		a.Object(s)
	}
}

// Goroutines: the live goroutines of a process per creation site, counting
// those created since the attach (--goroutines).
type Goroutines struct {
	Header
	Live      int64           // all sites: what runtime.NumGoroutine says
	System    int64           // the runtime's own goroutines, not in Live
	Sites     []GoroutineSite // the top sites by live count
	Untracked uint64          // creations not tracked: the maps were full
	// ScanNs is how long reading the goroutine list took.
	ScanNs uint64
}

func (g *Goroutines) MarshalZerologObject(e *zerolog.Event) {
	g.marshal(e)
	e.Int64("live", g.Live).Int64("system", g.System).Array("sites", goroutineSites(g.Sites)).Uint64("untracked", g.Untracked).
		Uint64("scan_ns", g.ScanNs)
}

// GoroutineLeak: a creation site whose live goroutines kept growing.
type GoroutineLeak struct {
	Header
	GoroutineSite
	Growth      []int64 // live count change per interval, oldest first
	IntervalNs  uint64
	OldestGoids []uint64
	// ParkedOn says, for each of OldestGoids, what it is parked on (its
	// wait reason, as in a goroutine dump: "chan receive"); "" when it is
	// not parked or that is not known.
	ParkedOn    []string
	OldestAgeNs uint64
}

func (l *GoroutineLeak) MarshalZerologObject(e *zerolog.Event) {
	l.marshal(e)
	l.GoroutineSite.MarshalZerologObject(e)
	g := zerolog.Arr()
	for _, n := range l.Growth {
		g.Int64(n)
	}
	ids := zerolog.Arr()
	for _, id := range l.OldestGoids {
		ids.Uint64(id)
	}
	parked := zerolog.Arr()
	for _, p := range l.ParkedOn {
		parked.Str(p)
	}
	e.Array("growth", g).Uint64("interval_ns", l.IntervalNs).Array("oldest_goids", ids).
		Array("parked_on", parked).Uint64("oldest_age_ns", l.OldestAgeNs)
}
