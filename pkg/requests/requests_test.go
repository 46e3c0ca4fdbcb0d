package requests

import (
	"debug/elf"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/arch/x86/x86asm"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
)

func TestRoute(t *testing.T) {
	for _, c := range []struct {
		raw   string
		flags uint8
		want  string
	}{
		{"GET /items/{id}", flagPattern, "/items/{id}"},
		{"POST example.com/x/{y}", flagPattern, "/x/{y}"},
		{"example.com/", flagPattern, "/"},
		{"/plain/", flagPattern, "/plain/"},
		{"/items/{id}", 0, "/items/{id}"},
		{"/a/b", flagTruncated, "/a/b…"},
	} {
		if got := Route(c.raw, c.flags); got != c.want {
			t.Errorf("Route(%q, %d) = %q, want %q", c.raw, c.flags, got, c.want)
		}
	}
}

func TestMethod(t *testing.T) {
	for in, want := range map[string]string{"GET": "GET", "PATCH": "PATCH", "get": "_OTHER", "PROPFIND": "_OTHER", "": "_OTHER"} {
		if got := Method(in); got != want {
			t.Errorf("Method(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPercentile(t *testing.T) {
	b := make([]uint64, len(Bounds)+1)
	b[0] = 98 // ≤ 5ms
	b[7] = 1  // (250ms, 500ms]
	b[14] = 1 // > 10s
	if gt, le := Percentile(b, 0.5); gt != 0 || le != 5e6 {
		t.Errorf("p50 in (%d, %d], want (0, 5ms]", gt, le)
	}
	if gt, le := Percentile(b, 0.99); gt != 250e6 || le != 500e6 {
		t.Errorf("p99 in (%d, %d], want (250ms, 500ms]", gt, le)
	}
	if gt, le := Percentile(b, 1); gt != 10e9 || le != 0 {
		t.Errorf("p100 in (%d, %d], want (10s, +Inf)", gt, le)
	}
	if gt, le := Percentile(make([]uint64, len(Bounds)+1), 0.99); gt != 0 || le != 0 {
		t.Errorf("empty: (%d, %d]", gt, le)
	}
}

// TestDecodeRequest: the fd counts only when its socket's peer is the
// connection's remote address; the breakdown's rest is the duration less
// the waits, never negative; the request's own connection is the client.
func TestDecodeRequest(t *testing.T) {
	var r requestsHttpRequestEvent
	r.Hdr.Type = uint8(requestsReqEventTypeEVENT_HTTP_REQUEST)
	r.Hdr.GoidOk, r.Hdr.Goid = 1, 42
	copy8(r.Method[:], "GET")
	copy8(r.Route[:], "GET /items/{id}")
	copy8(r.Path[:], "/items/7")
	copy8(r.Raddr[:], "127.0.0.1:5555")
	r.Flags, r.Status, r.DurationNs, r.Fd = flagPattern, 200, 1000, 6
	r.Addrs.Family, r.Addrs.Dport = 2, 5555
	copy(r.Addrs.Daddr[:], []byte{127, 0, 0, 1})
	r.St.IoNs, r.St.SchedNs, r.St.Waits = 600, 100, 2
	for i := range r.St.Slot {
		r.St.Slot[i].Fd = -1
	}
	r.St.Slot[0] = requestsReqWait{Fd: 6, IoNs: 100, Waits: 1}
	r.St.Slot[1] = requestsReqWait{Fd: 9, IoNs: 500, SchedNs: 100, Waits: 1, ViaClient: 1, ClientCalls: 1, ClientNs: 650}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r))
	ev, err := Decode(raw, bpfobj.Clock{})
	if err != nil {
		t.Fatal(err)
	}
	got := ev.(*event.HTTPRequest)
	if got.Method != "GET" || got.Route != "/items/{id}" || got.RouteFrom != "pattern" || got.Path != "/items/7" ||
		got.Status != 200 || got.FD != 6 || got.RemoteAddr != "127.0.0.1" || got.RemotePort != 5555 || got.Goid != 42 {
		t.Errorf("decoded %+v", got)
	}
	b := got.Breakdown
	if b.NetworkNs != 600 || b.SchedNs != 100 || b.OtherNs != 300 || len(b.Conns) != 2 ||
		b.Conns[0].Role != "client" || b.Conns[1].Role != "downstream" || b.Conns[1].ClientCalls != 1 {
		t.Errorf("breakdown %+v", b)
	}
	// Another peer behind the fd (a TLS connection's rwc leads
	// elsewhere): no fd, and no connection is the client's.
	r.Addrs.Dport = 6666
	got = mustDecode(t, &r)
	if got.FD != -1 || got.Breakdown.Conns[0].Role != "downstream" {
		t.Errorf("fd %d, roles %+v with a mismatched peer", got.FD, got.Breakdown.Conns)
	}
	// Parallel round trips can wait longer than the request took.
	r.DurationNs = 500
	if got = mustDecode(t, &r); got.Breakdown.OtherNs != 0 {
		t.Errorf("other_ns %d, want 0 when the waits exceed the duration", got.Breakdown.OtherNs)
	}
}

func mustDecode(t *testing.T, r *requestsHttpRequestEvent) *event.HTTPRequest {
	t.Helper()
	ev, err := Decode(unsafe.Slice((*byte)(unsafe.Pointer(r)), unsafe.Sizeof(*r)), bpfobj.Clock{})
	if err != nil {
		t.Fatal(err)
	}
	return ev.(*event.HTTPRequest)
}

func copy8(dst []int8, s string) {
	for i := 0; i < len(s) && i < len(dst); i++ {
		dst[i] = int8(s[i])
	}
}

// TestFindProbes finds the probes in this test binary, which links
// net/http's server and client: each start and end is a direct call, the
// client's end the emulated instruction right after its call.
func TestFindProbes(t *testing.T) {
	// Keep the server and the client reachable so the linker keeps them.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(ln, http.NotFoundHandler())
	if resp, err := http.Get("http://" + ln.Addr().String()); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	ln.Close()

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		t.Skip("the instruction checks are for amd64")
	}
	bin, err := goruntime.Inspect(exe)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := goruntime.OpenTable(f, bin)
	if err != nil {
		t.Fatal(err)
	}
	p, err := FindProbes(f, tab.Func)
	if err != nil {
		t.Fatal(err)
	}
	if p.ClientWhyNot != nil {
		t.Fatalf("no client probes: %v", p.ClientWhyNot)
	}
	for name, sites := range map[string][]goruntime.Site{"server start": p.ServerStart, "server end": p.ServerEnd, "client start": p.ClientStart} {
		if len(sites) == 0 {
			t.Errorf("%s: no site", name)
		}
		for _, s := range sites {
			if !strings.HasPrefix(s.Inst, "CALL ") {
				t.Errorf("%s at %#x is %q, not a call", name, s.Addr, s.Inst)
			}
		}
	}
	if p.H2WhyNot != nil || len(p.H2Start) != 1 || len(p.H2End) == 0 {
		t.Fatalf("HTTP/2 probes: %v, %d starts, %d ends", p.H2WhyNot, len(p.H2Start), len(p.H2End))
	}
	if s := p.H2Start[0]; !strings.HasPrefix(s.Inst, "J") {
		t.Errorf("HTTP/2 start at %#x is %q, not the stack check's jump", s.Addr, s.Inst)
	}
	for _, s := range p.H2End {
		if !strings.HasPrefix(s.Inst, "CALL ") {
			t.Errorf("HTTP/2 end at %#x is %q, not a call", s.Addr, s.Inst)
		}
	}
	if p.H2ClientWhyNot != nil || len(p.H2ClientStart) == 0 || len(p.H2ClientEnd) != len(p.H2ClientStart) {
		t.Fatalf("HTTP/2 client probes: %v, %d starts, %d ends", p.H2ClientWhyNot, len(p.H2ClientStart), len(p.H2ClientEnd))
	}
	for i, s := range p.H2ClientEnd {
		if !strings.HasPrefix(p.H2ClientStart[i].Inst, "CALL ") || s.Addr <= p.H2ClientStart[i].Addr || !(strings.HasPrefix(s.Inst, "J") || strings.HasPrefix(s.Inst, "NOP")) {
			t.Errorf("HTTP/2 round trip %q at %#x, its end %q at %#x", p.H2ClientStart[i].Inst, p.H2ClientStart[i].Addr, s.Inst, s.Addr)
		}
	}
	if len(p.ClientEnd) != len(p.ClientStart) {
		t.Fatalf("%d client ends for %d starts", len(p.ClientEnd), len(p.ClientStart))
	}
	for i, s := range p.ClientEnd {
		if s.Addr <= p.ClientStart[i].Addr || s.Addr > p.ClientStart[i].Addr+32 {
			t.Errorf("client end at %#x, its call at %#x", s.Addr, p.ClientStart[i].Addr)
		}
		code, err := goruntime.Code(f, s.Addr, s.Addr+16)
		if err != nil {
			t.Fatal(err)
		}
		inst, err := x86asm.Decode(code, 64)
		if err != nil {
			t.Fatal(err)
		}
		if inst.Op != x86asm.NOP && !(inst.Op >= x86asm.JA && inst.Op <= x86asm.JS && inst.Op != x86asm.JMP) {
			t.Errorf("client end at %#x is %v: not an instruction the kernel emulates", s.Addr, inst)
		}
	}
}
