// Package bpfobj holds what every gonetscope BPF object shares on the Go side:
// attaching its tracepoint programs, the one fentry → kprobe → tracepoint
// fallback for kernel-function hooks (hooks.go), reading its lost-event
// counters, viewing ring buffer records as the bpf2go-generated structs,
// and turning BPF timestamps into wall-clock time.
package bpfobj

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"structs"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/event"
)

// AttachTracepoints attaches every program of spec whose section is
// "tracepoint/GROUP/NAME" and that was loaded into progs.
func AttachTracepoints(spec *ebpf.CollectionSpec, progs map[string]*ebpf.Program) ([]link.Link, error) {
	var links []link.Link
	for name, ps := range spec.Programs {
		group, tp, ok := strings.Cut(strings.TrimPrefix(ps.SectionName, "tracepoint/"), "/")
		if !ok || !strings.HasPrefix(ps.SectionName, "tracepoint/") {
			continue
		}
		prog := progs[name]
		if prog == nil {
			continue
		}
		l, err := link.Tracepoint(group, tp, prog, nil)
		if err != nil {
			CloseAll(links)
			return nil, fmt.Errorf("attaching tracepoint %s/%s: %w", group, tp, err)
		}
		links = append(links, l)
	}
	return links, nil
}

// CloseAll closes links, most recent first.
func CloseAll(links []link.Link) {
	for i := len(links) - 1; i >= 0; i-- {
		links[i].Close()
	}
}

// LoadError makes a load failure readable: the verifier's full log when the
// verifier refused a program.
func LoadError(what string, err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("loading %s: %+v", what, ve)
	}
	return fmt.Errorf("loading %s: %w", what, err)
}

// LostCounts reads a `lost` map (per-CPU counters by event type) for the
// event types in names, by event name.
func LostCounts[K ~uint32](m *ebpf.Map, names map[K]string) (map[string]uint64, error) {
	counts := make(map[string]uint64, len(names))
	for k, name := range names {
		n, err := SumPerCPU(m, uint32(k))
		if err != nil {
			return nil, fmt.Errorf("reading lost counter of %s: %w", name, err)
		}
		counts[name] = n
	}
	return counts, nil
}

// SumPerCPU sums a per-CPU uint64 counter.
func SumPerCPU(m *ebpf.Map, key uint32) (uint64, error) {
	var per []uint64
	if err := m.Lookup(key, &per); err != nil {
		return 0, err
	}
	var sum uint64
	for _, v := range per {
		sum += v
	}
	return sum, nil
}

// View returns raw as a *T without copying. T must be a bpf2go-generated
// struct (host layout) and raw at least as long.
func View[T any](raw []byte) (*T, error) {
	var zero T
	if len(raw) < int(unsafe.Sizeof(zero)) {
		return nil, fmt.Errorf("record of %d bytes, want %d for %T", len(raw), unsafe.Sizeof(zero), zero)
	}
	return (*T)(unsafe.Pointer(&raw[0])), nil
}

// Clock turns bpf_ktime_get_boot_ns() values into wall-clock time.
type Clock struct {
	offset int64 // wall ns - boot ns
}

// NewClock samples CLOCK_BOOTTIME against the wall clock once.
func NewClock() Clock {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	wall := time.Now().UnixNano()
	return Clock{offset: wall - ts.Nano()}
}

// Time converts a boot-time timestamp.
func (c Clock) Time(bootNs uint64) time.Time {
	return time.Unix(0, int64(bootNs)+c.offset)
}

// Now returns the current CLOCK_BOOTTIME in ns.
func Now() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return uint64(ts.Nano())
}

// CString turns a NUL-padded C char array into a string.
func CString(b []int8) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	s := make([]byte, n)
	for i := range s {
		s[i] = byte(b[i])
	}
	return string(s)
}

// EventHeader is struct event_header of bpf/gonetscope.h, the first member of
// every event of every object, read here once for all objects. Each object's
// package tests that its bpf2go-generated twin has the same layout.
type EventHeader struct {
	_      structs.HostLayout
	TimeNs uint64
	Goid   uint64
	Pid    uint32
	Tid    uint32
	Type   uint8
	GoidOk uint8
	Pad    [2]uint8
	NsTid  uint32
	Comm   [16]int8
}

// Header converts an event header for the event named name.
func (h *EventHeader) Header(name string, clock Clock) event.Header {
	return event.Header{
		Time:    clock.Time(h.TimeNs),
		Event:   name,
		PID:     h.Pid,
		TID:     h.Tid,
		Comm:    CString(h.Comm[:]),
		NsTID:   h.NsTid,
		Goid:    h.Goid,
		HasGoid: h.GoidOk != 0,
	}
}

// Addrs converts struct addrs.
func Addrs(family uint16, saddr, daddr [16]uint8, sport, dport uint16) event.Addrs {
	var a event.Addrs
	switch family {
	case unix.AF_INET:
		a.Local = netip.AddrFrom4([4]byte(saddr[:4]))
		a.Remote = netip.AddrFrom4([4]byte(daddr[:4]))
	case unix.AF_INET6:
		a.Local = netip.AddrFrom16(saddr).Unmap()
		a.Remote = netip.AddrFrom16(daddr).Unmap()
	default:
		return a
	}
	a.LocalPort, a.RemotePort = sport, dport
	return a
}

// Stack copies the first n of a captured user stack's pcs (struct
// user_stack); nil when none were captured.
func Stack(pcs []uint64, n uint32) *event.Stack {
	if n == 0 {
		return nil
	}
	return &event.Stack{PCs: append([]uint64(nil), pcs[:min(int(n), len(pcs))]...)}
}
