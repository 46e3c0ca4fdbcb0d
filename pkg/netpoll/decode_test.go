package netpoll

import (
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
)

// rawOf copies a record's bytes, as the ring buffer would hand them over.
func rawOf[T any](rec *T) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(rec)), unsafe.Sizeof(*rec))...)
}

// hdr is an event header as the BPF side fills it: goid is 0 unless goidOk.
func hdr(typ netpollEventType, timeNs uint64, comm string, goid uint64, goidOk bool) netpollEventHeader {
	h := netpollEventHeader{TimeNs: timeNs, Pid: 4242, Tid: 4250, Type: uint8(typ)}
	if goidOk {
		h.Goid, h.GoidOk = goid, 1
	}
	for i := range len(comm) {
		h.Comm[i] = int8(comm[i])
	}
	return h
}

// decode decodes raw and checks the header's time, which is then cleared so
// that events can be compared with ==.
func decode(t *testing.T, raw []byte, clock bpfobj.Clock, timeNs uint64) event.Event {
	t.Helper()
	ev, err := Decode(raw, clock)
	if err != nil {
		t.Fatal(err)
	}
	h := ev.Head()
	if want := clock.Time(timeNs); !h.Time.Equal(want) {
		t.Errorf("time = %v, want %v", h.Time, want)
	}
	h.Time = time.Time{}
	return ev
}

func TestDecodeNetpollWait(t *testing.T) {
	clock := bpfobj.NewClock()
	v4 := func(a, b, c, d byte) (r [16]uint8) { r[0], r[1], r[2], r[3] = a, b, c, d; return }
	v6 := func(s string) [16]uint8 { return netip.MustParseAddr(s).As16() }

	for _, tc := range []struct {
		mode         netpollMode
		family       uint16
		saddr, daddr [16]uint8
		goidOk       bool
		readySeen    bool
		idle         bool
		want         event.NetpollWait
	}{
		{
			mode: netpollModeMODE_READ, family: unix.AF_INET,
			saddr: v4(127, 0, 0, 1), daddr: v4(10, 9, 8, 7), goidOk: true, readySeen: true,
			want: event.NetpollWait{Mode: "read", Kind: "in_request", Addrs: event.Addrs{
				Local: netip.MustParseAddr("127.0.0.1"), Remote: netip.MustParseAddr("10.9.8.7"),
			}, ReadySeen: true},
		},
		{
			mode: netpollModeMODE_WRITE, family: unix.AF_INET6,
			saddr: v6("2001:db8::5"), daddr: v6("2001:db8::6"),
			want: event.NetpollWait{Mode: "write", Kind: "in_request", Addrs: event.Addrs{
				Local: netip.MustParseAddr("2001:db8::5"), Remote: netip.MustParseAddr("2001:db8::6"),
			}},
		},
		{
			mode: netpollModeMODE_ACCEPT, family: unix.AF_INET6,
			saddr: v6("::ffff:192.0.2.1"), daddr: v6("::"), goidOk: true, idle: true,
			want: event.NetpollWait{Mode: "accept", Kind: "idle", Addrs: event.Addrs{
				Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("::"),
			}},
		},
		{
			mode: netpollModeMODE_CONNECT, family: unix.AF_INET6,
			saddr: v6("::ffff:10.0.0.1"), daddr: v6("::ffff:10.0.0.2"), readySeen: true,
			want: event.NetpollWait{Mode: "connect", Kind: "in_request", Addrs: event.Addrs{
				Local: netip.MustParseAddr("10.0.0.1"), Remote: netip.MustParseAddr("10.0.0.2"),
			}, ReadySeen: true},
		},
	} {
		t.Run(tc.want.Mode, func(t *testing.T) {
			const timeNs, goid = 123_456_789_012, 1<<40 + 17
			rec := netpollNetpollWaitEvent{
				Hdr:          hdr(netpollEventTypeEVENT_NETPOLL_WAIT, timeNs, "nettarget", goid, tc.goidOk),
				WaitNs:       3_000_123,
				IoWaitNs:     3_000_000,
				SchedDelayNs: 123,
				Fd:           37,
				ParkTid:      4251,
				Mode:         uint8(tc.mode),
			}
			rec.Addrs.Family, rec.Addrs.Saddr, rec.Addrs.Daddr = tc.family, tc.saddr, tc.daddr
			rec.Addrs.Sport, rec.Addrs.Dport = 8080, 61000
			if tc.readySeen {
				rec.ReadySeen = 1
			}
			if tc.idle {
				rec.Kind = uint8(netpollWaitKindWAIT_IDLE)
			}

			want := tc.want
			want.Header = event.Header{Event: "netpoll_wait", PID: 4242, TID: 4250, Comm: "nettarget"}
			if tc.goidOk {
				want.Goid, want.HasGoid = goid, true
			}
			want.FD, want.ParkTID = 37, 4251
			want.Addrs.LocalPort, want.Addrs.RemotePort = 8080, 61000
			want.WaitNs, want.IoWaitNs, want.SchedDelayNs = 3_000_123, 3_000_000, 123

			got, ok := decode(t, rawOf(&rec), clock, timeNs).(*event.NetpollWait)
			if !ok {
				t.Fatalf("decoded a %T", got)
			}
			if *got != want {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestDecodeEpollWait(t *testing.T) {
	clock := bpfobj.NewClock()
	const timeNs = 99_000_000_001
	// A full 15-byte comm: TASK_COMM_LEN is 16 with the NUL.
	rec := netpollEpollWaitEvent{
		Hdr:       hdr(netpollEventTypeEVENT_EPOLL_WAIT, timeNs, "abcdefghijklmno", 0, false),
		BlockNs:   250_000_000,
		Ready:     3,
		TimeoutMs: -1,
		Epfd:      4,
	}
	want := event.EpollWait{
		Header:  event.Header{Event: "epoll_wait", PID: 4242, TID: 4250, Comm: "abcdefghijklmno"},
		BlockNs: 250_000_000, Ready: 3, TimeoutMs: -1, EpFD: 4,
	}
	got, ok := decode(t, rawOf(&rec), clock, timeNs).(*event.EpollWait)
	if !ok {
		t.Fatalf("decoded a %T", got)
	}
	if *got != want {
		t.Errorf("got  %+v\nwant %+v", *got, want)
	}
}

func TestDecodeTime(t *testing.T) {
	clock := bpfobj.NewClock()
	const t1, t2 = 1_000_000_000, 8_123_456_789
	at := func(ns uint64) time.Time {
		rec := netpollEpollWaitEvent{Hdr: hdr(netpollEventTypeEVENT_EPOLL_WAIT, ns, "x", 0, false)}
		ev, err := Decode(rawOf(&rec), clock)
		if err != nil {
			t.Fatal(err)
		}
		return ev.Head().Time
	}
	if d := at(t2).Sub(at(t1)); d != t2-t1 {
		t.Errorf("time difference = %v, want %v", d, time.Duration(t2-t1))
	}
}

func TestDecodeErrors(t *testing.T) {
	clock := bpfobj.NewClock()
	wait := netpollNetpollWaitEvent{Hdr: hdr(netpollEventTypeEVENT_NETPOLL_WAIT, 1, "x", 0, false)}
	epoll := netpollEpollWaitEvent{Hdr: hdr(netpollEventTypeEVENT_EPOLL_WAIT, 1, "x", 0, false)}
	unknown := func(typ netpollEventType) []byte {
		rec := netpollNetpollWaitEvent{Hdr: hdr(typ, 1, "x", 0, false)}
		return rawOf(&rec)
	}
	hdrSize := int(unsafe.Sizeof(netpollEventHeader{}))

	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"empty", nil},
		{"half a header", rawOf(&wait)[:hdrSize/2]},
		{"header only", rawOf(&wait)[:hdrSize]},
		{"netpoll_wait short by one byte", rawOf(&wait)[:len(rawOf(&wait))-1]},
		{"epoll_wait short by one byte", rawOf(&epoll)[:len(rawOf(&epoll))-1]},
		{"type 0", unknown(0)},
		{"a tcp object's type", unknown(netpollEventTypeEVENT_TCP_CONNECT)},
		{"type 255", unknown(255)},
	} {
		if ev, err := Decode(tc.raw, clock); err == nil {
			t.Errorf("%s: Decode = %+v, want an error", tc.name, ev)
		}
	}
}
