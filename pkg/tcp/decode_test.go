package tcp

import (
	"net/netip"
	"os"
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
func hdr(typ tcpEventType, pid uint32, timeNs uint64, goid uint64, goidOk bool) tcpEventHeader {
	h := tcpEventHeader{TimeNs: timeNs, Pid: pid, Tid: pid + 3, Type: uint8(typ)}
	if goidOk {
		h.Goid, h.GoidOk = goid, 1
	}
	for i, c := range []byte("client") {
		h.Comm[i] = int8(c)
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

func v4(a, b, c, d byte) (r [16]uint8) {
	r[0], r[1], r[2], r[3] = a, b, c, d
	return r
}

func v6(s string) [16]uint8 { return netip.MustParseAddr(s).As16() }

func TestDecodeConnect(t *testing.T) {
	clock := bpfobj.NewClock()
	for _, tc := range []struct {
		result int32
		want   string
		goidOk bool
	}{
		{0, "ok", true},
		{111, "ECONNREFUSED", true},
		{110, "ETIMEDOUT", false},
	} {
		t.Run(tc.want, func(t *testing.T) {
			const timeNs, goid = 77_000_000_123, 42
			rec := tcpTcpConnectEvent{
				Hdr:         hdr(tcpEventTypeEVENT_TCP_CONNECT, 900, timeNs, goid, tc.goidOk),
				HandshakeNs: 150_000,
				Fd:          -1,
				Result:      tc.result,
			}
			rec.Addrs.Family, rec.Addrs.Saddr, rec.Addrs.Daddr = unix.AF_INET, v4(10, 0, 0, 1), v4(10, 0, 0, 2)
			rec.Addrs.Sport, rec.Addrs.Dport = 40000, 443

			want := event.TCPConnect{
				Header: event.Header{Event: "tcp_connect", PID: 900, TID: 903, Comm: "client"},
				FD:     -1,
				Addrs: event.Addrs{
					Local: netip.MustParseAddr("10.0.0.1"), Remote: netip.MustParseAddr("10.0.0.2"),
					LocalPort: 40000, RemotePort: 443,
				},
				HandshakeNs: 150_000,
				Result:      tc.want,
			}
			if tc.goidOk {
				want.Goid, want.HasGoid = goid, true
			}
			got, ok := decode(t, rawOf(&rec), clock, timeNs).(*event.TCPConnect)
			if !ok {
				t.Fatalf("decoded a %T", got)
			}
			if *got != want {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestDecodeAccept(t *testing.T) {
	clock := bpfobj.NewClock()
	for _, known := range []bool{true, false} {
		const timeNs = 5_000_000_000
		rec := tcpTcpAcceptEvent{
			Hdr:        hdr(tcpEventTypeEVENT_TCP_ACCEPT, 901, timeNs, 7, true),
			Fd:         12,
			ListenFd:   3,
			Backlog:    5,
			BacklogMax: 4096,
		}
		rec.Addrs.Family, rec.Addrs.Saddr, rec.Addrs.Daddr = unix.AF_INET6, v6("::ffff:127.0.0.1"), v6("2001:db8::9")
		rec.Addrs.Sport, rec.Addrs.Dport = 8080, 51000
		want := event.TCPAccept{
			Header:   event.Header{Event: "tcp_accept", PID: 901, TID: 904, Comm: "client", Goid: 7, HasGoid: true},
			FD:       12,
			ListenFD: 3,
			Addrs: event.Addrs{
				Local: netip.MustParseAddr("127.0.0.1"), Remote: netip.MustParseAddr("2001:db8::9"),
				LocalPort: 8080, RemotePort: 51000,
			},
			Backlog:    5,
			BacklogMax: 4096,
		}
		if known {
			rec.QueueWaitNs, rec.QueueWaitKnown = 2_500, 1
			want.QueueWaitNs, want.QueueWaitKnown = 2_500, true
		}
		got, ok := decode(t, rawOf(&rec), clock, timeNs).(*event.TCPAccept)
		if !ok {
			t.Fatalf("decoded a %T", got)
		}
		if *got != want {
			t.Errorf("queue wait known %v:\ngot  %+v\nwant %+v", known, *got, want)
		}
	}
}

// countFDs counts this process's open fds by listing /proc/self/fd.
func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestDecodeAcceptError(t *testing.T) {
	clock := bpfobj.NewClock()
	// Hold a few more fds than usual, so the count is not a coincidence.
	for range 3 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	pid := uint32(os.Getpid())

	for _, tc := range []struct {
		errno int32
		want  string
	}{
		{24, "EMFILE"},
		{23, "ENFILE"},
	} {
		const timeNs = 6_000_000_000
		rec := tcpAcceptErrorEvent{
			Hdr:      hdr(tcpEventTypeEVENT_ACCEPT_ERROR, pid, timeNs, 0, false),
			ListenFd: 3,
			Err:      tc.errno,
		}
		// A listener: its remote half is all zero.
		rec.Addrs.Family, rec.Addrs.Saddr = unix.AF_INET, v4(0, 0, 0, 0)
		rec.Addrs.Sport = 8080
		want := event.AcceptError{
			Header:   event.Header{Event: "accept_error", PID: pid, TID: pid + 3, Comm: "client"},
			ListenFD: 3,
			Addrs: event.Addrs{
				Local: netip.MustParseAddr("0.0.0.0"), Remote: netip.MustParseAddr("0.0.0.0"),
				LocalPort: 8080,
			},
			Errno:   tc.want,
			OpenFDs: countFDs(t),
			FDLimit: lim.Cur,
		}
		got, ok := decode(t, rawOf(&rec), clock, timeNs).(*event.AcceptError)
		if !ok {
			t.Fatalf("decoded a %T", got)
		}
		if *got != want {
			t.Errorf("got  %+v\nwant %+v", *got, want)
		}
	}
}

func TestDecodeAcceptErrorGoneProcess(t *testing.T) {
	// Above PID_MAX_LIMIT (4M): no process has this PID.
	const gone = 1<<22 + 1
	rec := tcpAcceptErrorEvent{Hdr: hdr(tcpEventTypeEVENT_ACCEPT_ERROR, gone, 1, 0, false), Err: 24}
	ev, err := Decode(rawOf(&rec), bpfobj.NewClock())
	if err != nil {
		t.Fatal(err)
	}
	got := ev.(*event.AcceptError)
	if got.OpenFDs != -1 || got.FDLimit != 0 {
		t.Errorf("OpenFDs, FDLimit = %d, %d, want -1, 0 for a process that is gone", got.OpenFDs, got.FDLimit)
	}
}

func TestDecodeErrors(t *testing.T) {
	clock := bpfobj.NewClock()
	conn := tcpTcpConnectEvent{Hdr: hdr(tcpEventTypeEVENT_TCP_CONNECT, 1, 1, 0, false)}
	acc := tcpTcpAcceptEvent{Hdr: hdr(tcpEventTypeEVENT_TCP_ACCEPT, 1, 1, 0, false)}
	accErr := tcpAcceptErrorEvent{Hdr: hdr(tcpEventTypeEVENT_ACCEPT_ERROR, 1, 1, 0, false)}
	short := func(raw []byte) []byte { return raw[:len(raw)-1] }
	unknown := func(typ tcpEventType) []byte {
		rec := tcpTcpAcceptEvent{Hdr: hdr(typ, 1, 1, 0, false)}
		return rawOf(&rec)
	}
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"empty", nil},
		{"half a header", rawOf(&conn)[:unsafe.Sizeof(tcpEventHeader{})/2]},
		{"tcp_connect short by one byte", short(rawOf(&conn))},
		{"tcp_accept short by one byte", short(rawOf(&acc))},
		{"accept_error short by one byte", short(rawOf(&accErr))},
		{"type 0", unknown(0)},
		{"a netpoll object's type", unknown(tcpEventTypeEVENT_NETPOLL_WAIT)},
		{"type 200", unknown(200)},
	} {
		if ev, err := Decode(tc.raw, clock); err == nil {
			t.Errorf("%s: Decode = %+v, want an error", tc.name, ev)
		}
	}
}
