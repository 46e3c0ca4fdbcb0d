package netpoll

import (
	"io"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/output"
)

// BenchmarkDecodeEncode is the daemon's work per netpoll_wait record:
// decoding the ring buffer's bytes and writing the JSON line.
func BenchmarkDecodeEncode(b *testing.B) {
	clock := bpfobj.NewClock()
	rec := netpollNetpollWaitEvent{
		Hdr:    hdr(netpollEventTypeEVENT_NETPOLL_WAIT, 123_456_789_012, "nettarget", 77, true),
		WaitNs: 3_000_123, IoWaitNs: 3_000_000, SchedDelayNs: 123, Fd: 37, ParkTid: 4251,
		Mode: uint8(netpollModeMODE_READ),
	}
	rec.Addrs.Family = unix.AF_INET
	rec.Addrs.Saddr[0], rec.Addrs.Daddr[0] = 127, 10
	rec.Addrs.Sport, rec.Addrs.Dport = 8080, 61000
	raw := rawOf(&rec)
	out := output.NewJSON(io.Discard)
	b.ReportAllocs()
	for b.Loop() {
		ev, err := Decode(raw, clock)
		if err != nil {
			b.Fatal(err)
		}
		out.Write(ev)
	}
	out.Flush()
}
