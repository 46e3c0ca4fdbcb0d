package main

// gRPC request tracing (--requests) against a real google.golang.org/grpc
// server and client from the module proxy: testdata/grpc, a module of its
// own, serves a hand-written service (JSON codec, no protoc) and calls
// it through a grpc.ClientConn to itself, printing for each call what
// both ends said about themselves (the goroutines, the code, the
// handler's and the caller's own time). Each call must come back with
// exactly those values: the slow ones as grpc_request and
// grpc_client_request events, every one in the histograms.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gonetscope/gonetscope/pkg/diagnose"
	"github.com/gonetscope/gonetscope/pkg/requests"
)

// grpcEvent is a grpc_request or grpc_client_request line.
type grpcEvent struct {
	Event      string    `json:"event"`
	Time       time.Time `json:"time"` // the call's end
	Goid       *int64    `json:"goid"`
	Service    string    `json:"service"`
	Method     string    `json:"method"`
	Target     string    `json:"target"`
	Code       *int      `json:"code"`
	CodeName   string    `json:"code_name"`
	DurationNs int64     `json:"duration_ns"`
	FD         *int      `json:"fd"`
	Raddr      string    `json:"raddr"`
	Rport      int       `json:"rport"`
	SrttUs     *int64    `json:"srtt_us"`
	Retrans    *int64    `json:"retrans"`
	Limits     []string  `json:"limits"`
	Breakdown  *struct {
		NetworkNs    int64        `json:"network_ns"`
		SchedDelayNs int64        `json:"sched_delay_ns"`
		OtherNs      int64        `json:"other_ns"`
		GRPCCalls    int          `json:"grpc_calls"`
		GRPCNs       int64        `json:"grpc_ns"`
		GRPCSlowest  *grpcSlowest `json:"grpc_slowest"`
	} `json:"breakdown"`
}

// grpcSlowest is a breakdown's slowest gRPC call.
type grpcSlowest struct {
	Service    string `json:"service"`
	Method     string `json:"method"`
	Target     string `json:"target"`
	DurationNs int64  `json:"duration_ns"`
}

// grpcCall is one call the test has the target make, and what the
// target said about it.
type grpcCall struct {
	SleepMs    int       `json:"sleep_ms"`
	Code       int       `json:"code"`
	Downstream *grpcCall `json:"downstream,omitempty"`
	// Fanout: the handler makes the downstream call on a goroutine it
	// starts, and waits for it.
	Fanout bool `json:"fanout,omitempty"`
	// ID names the target's line about it; Background and Hold: the
	// target makes it on a goroutine of its own, and its handler waits
	// for the line {"release": true}.
	ID         int  `json:"id"`
	Background bool `json:"background,omitempty"`
	Hold       bool `json:"hold,omitempty"`
	// Stream: a server-streaming call of Watch instead, of this many
	// replies SleepMs apart; CancelAfter: the caller cancels it after
	// that many; Readers: the caller opens this many, the j-th's replies
	// (j+1)*SleepMs apart and its code Code+j, and a goroutine of its own
	// reads each.
	Stream      int `json:"stream,omitempty"`
	CancelAfter int `json:"cancel_after,omitempty"`
	Readers     int `json:"readers,omitempty"`
	said        struct {
		Method     string `json:"method"`
		Code       int    `json:"code"`
		ClientNs   int64  `json:"client_ns"`
		ClientGoid int64  `json:"client_goid"`
		ServerGoid int64  `json:"server_goid"`
		ServerFD   int    `json:"server_fd"`
		FanoutGoid int64  `json:"fanout_goid"`
		Local      string `json:"local"`
		HandlerNs  int64  `json:"handler_ns"`
		// ServerRetrans: the connection's retransmissions as the
		// handler returned.
		ServerRetrans int64 `json:"server_retrans"`
		// ReaderGoid: the goroutine that read a stream to its end
		// (ClientGoid opened it).
		ReaderGoid int64 `json:"reader_goid"`
	}
}

const grpcMethod = "/gonetscope.test.Echo/Call"

// grpcWatch is the server-streaming method.
const grpcWatch = "/gonetscope.test.Echo/Watch"

// TestGRPCRequests: unary calls, fast and slow, OK and not, one whose
// handler calls a slow downstream (itself, through a second
// ClientConn), and one begun before the attach that ends after it (in no
// histogram, counted as grpc_no_start and grpc_client_no_start); server
// streams read by the goroutine that opened them, by others, and
// cancelled (checkGRPCStreams); the target built with DWARF, and
// stripped PIE (the layouts are read from grpc's code either way).
// Where the machine has no Go toolchain (the arm64 VM of make
// test-kernels), GONETSCOPE_GRPCTARGET and GONETSCOPE_GRPCTARGET_STRIPPED
// name the two builds (the second not PIE there: the VM has no dynamic
// loader).
func TestGRPCRequests(t *testing.T) {
	for _, c := range []struct {
		name, env string
		flags     []string
	}{{"dwarf", "GONETSCOPE_GRPCTARGET", nil}, {"stripped-pie", "GONETSCOPE_GRPCTARGET_STRIPPED", []string{"-ldflags=-s -w", "-buildmode=pie"}}} {
		t.Run(c.name, func(t *testing.T) {
			bin := os.Getenv(c.env)
			if bin == "" {
				bin = buildGRPCTarget(t, c.flags...)
			}
			checkGRPC(t, bin)
		})
	}
}

// buildGRPCTarget builds testdata/grpc, its own module (CI downloads its
// dependencies in .ci/run).
func buildGRPCTarget(t *testing.T, flags ...string) string {
	t.Helper()
	return buildGo(t, t.TempDir(), filepath.Join("testdata", "grpc"), ".", flags...)
}

// requestLimits are an attached event's limits on request tracing: the
// ones that name its events (http_request, grpc_client_request, ...).
func requestLimits(limits []string) []string {
	return slices.DeleteFunc(featureLimits(limits), func(l string) bool {
		return !strings.Contains(l, "http_") && !strings.Contains(l, "grpc_")
	})
}

// spans says whether event outer's call began no later and ended no
// earlier than inner's.
func spans(outer, inner grpcEvent) bool {
	start := func(e grpcEvent) time.Time { return e.Time.Add(-time.Duration(e.DurationNs)) }
	return !start(outer).After(start(inner)) && !outer.Time.Before(inner.Time)
}

func checkGRPC(t *testing.T, bin string) {
	const slow = 100 * time.Millisecond
	target := exec.Command(bin)
	stdin, next := startTarget(t, target)
	listening := next("listening")
	dialTarget := listening["target"].(string)
	send := func(v any) {
		b, _ := json.Marshal(v)
		if _, err := stdin.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
	}
	// The target's lines about calls, by id: the held call's comes
	// between the others'.
	said := map[int]map[string]any{}
	saidOf := func(id int) map[string]any {
		for said[id] == nil {
			l := next("called")
			said[int(l["id"].(float64))] = l
		}
		return said[id]
	}
	held := &grpcCall{ID: 1000, Background: true, Hold: true}
	send(held)

	out := filepath.Join(t.TempDir(), "trace.jsonl")
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd, done, errOut := startGonetscopeTo(t, nil, target.Process.Pid, "trace", "--requests", "--slow-request", slow.String(),
		"--output", out, "--metrics-addr", maddr, "--max-events-per-sec", "0")

	// codes.NotFound 5, codes.PermissionDenied 7.
	calls := []*grpcCall{
		{}, {SleepMs: 1}, {Code: 5},
		{SleepMs: 300},
		{SleepMs: 200, Code: 7},
		{Downstream: &grpcCall{SleepMs: 250}},
		{Downstream: &grpcCall{SleepMs: 150}, Fanout: true},
		{},
	}
	send(map[string]bool{"release": true})
	for i, c := range append(calls, held) {
		if c != held {
			c.ID = i + 1
			send(c)
		}
		raw, _ := json.Marshal(saidOf(c.ID))
		if err := json.Unmarshal(raw, &c.said); err != nil {
			t.Fatal(err)
		}
		if c.said.Code != c.Code || c.said.Method != grpcMethod {
			t.Fatalf("the target's call %+v ended with code %d (method %s)", c, c.said.Code, c.said.Method)
		}
	}
	// A net/http handler that makes a gRPC call (as grpc-gateway's do):
	// its http_request's breakdown counts it.
	const viaHTTPMs = 150
	resp, err := http.Get(fmt.Sprintf("http://%s/call?sleep_ms=%d", listening["http_addr"], viaHTTPMs))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	httpGoid, err := strconv.ParseInt(resp.Header.Get("X-Goid"), 10, 64)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /call: %s, X-Goid %q", resp.Status, resp.Header.Get("X-Goid"))
	}
	// Streams: read to the end by the goroutine that opened it; one the
	// caller cancels (grpc's own goroutine may end it); two open at once
	// on one goroutine, each read by another (their start is known by
	// the stream, not by the goroutine). Each line the target says is
	// one stream. All are opened by one goroutine, and each ends with a
	// code of its own (OK, CANCELLED, RESOURCE_EXHAUSTED,
	// FAILED_PRECONDITION), which tells their events apart however long
	// a slow machine makes them.
	var streams []*grpcCall
	for i, c := range []*grpcCall{{Stream: 3, SleepMs: 60}, {Stream: 5, SleepMs: 120, CancelAfter: 1}, {Stream: 2, SleepMs: 80, Readers: 2, Code: 8}} {
		c.ID = 100 + i
		send(c)
		ids := []int{c.ID}
		if c.Readers > 0 {
			ids = nil
			for j := range c.Readers {
				ids = append(ids, c.ID*10+j)
			}
		}
		for j, id := range ids {
			s := *c
			if c.Readers > 0 {
				s.SleepMs, s.Code = (j+1)*c.SleepMs, c.Code+j
			}
			raw, _ := json.Marshal(saidOf(id))
			if err := json.Unmarshal(raw, &s.said); err != nil {
				t.Fatal(err)
			}
			want := s.Code
			if c.CancelAfter > 0 {
				want = 1 // codes.Canceled
			}
			if s.said.Code != want || s.said.Method != grpcWatch {
				t.Fatalf("the target's stream %+v ended with code %d (method %s)", s, s.said.Code, s.said.Method)
			}
			streams = append(streams, &s)
		}
	}
	// What is slow by the target's own measure: the server calls by
	// their handler's time (plus the downstream call each made), the
	// client calls by the caller's. A client call is slow for sure where
	// its server's handler was (it spans the server's call), fast for
	// sure where its caller measured less; in between (a fast handler
	// under a slow machine: the arm64 VM emulates) the probes' span,
	// within the caller's, decides.
	wantServer, wantClient, maybeClient := 1, 1, 0 // the HTTP handler's call
	for _, c := range calls {
		if c.Downstream != nil {
			wantServer, wantClient = wantServer+1, wantClient+1 // the downstream's
		}
		slowServer := time.Duration(c.said.HandlerNs) >= slow || c.Downstream != nil
		if slowServer {
			wantServer++
		}
		if slowServer {
			wantClient++
		} else if time.Duration(c.said.ClientNs) >= slow {
			maybeClient++
		}
	}
	// The unary calls' events, and the streams' (every stream is slow).
	var evs, watches []grpcEvent
	read := func() {
		evs, watches = nil, nil
		for _, e := range eventsIn[grpcEvent](t, out) {
			if e.Event != "http_request" && e.Method == "Watch" {
				watches = append(watches, e)
			} else {
				evs = append(evs, e)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		read()
		if countGRPC(evs, "grpc_request") >= wantServer && countGRPC(evs, "grpc_client_request") >= wantClient &&
			countGRPC(evs, "http_request") >= 1 && countGRPC(watches, "grpc_client_request") >= len(streams) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	made := append(append(calls, &grpcCall{}), streams...)
	checkGRPCMetrics(t, maddr, made, dialTarget, 1)
	stopGonetscope(t, cmd, done, errOut, syscall.SIGINT, 10*time.Second)
	read()
	checkGRPCStreams(t, streams, watches, dialTarget)
	checkGRPCMethods(t, out, made)

	for _, e := range evs {
		if e.Event == "attached" {
			// It serves HTTP but makes no net/http round trip. Other
			// features' limits are not this test's.
			want := []string{"no http_client_request and no downstream waits in http_request breakdowns: no function net/http.(*Transport).roundTrip"}
			if got := requestLimits(e.Limits); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("attached limits %q, want %q", got, want)
			}
		}
	}
	byGoid := func(kind string, goid int64) []grpcEvent {
		var got []grpcEvent
		for _, e := range evs {
			if e.Event == kind && e.Goid != nil && *e.Goid == goid {
				got = append(got, e)
			}
		}
		return got
	}
	if e := append(byGoid("grpc_request", held.said.ServerGoid), byGoid("grpc_client_request", held.said.ClientGoid)...); len(e) != 0 {
		t.Errorf("the call begun before the attach is an event: %+v", e)
	}
	hr, hc := byGoid("http_request", httpGoid), byGoid("grpc_client_request", httpGoid)
	if len(hr) != 1 || len(hc) != 1 || hc[0].DurationNs < viaHTTPMs*1e6 {
		t.Errorf("GET /call on goroutine %d: http_request %+v, its gRPC call %+v; want one each, the call at least %dms", httpGoid, hr, hc, viaHTTPMs)
	} else if b := hr[0].Breakdown; b == nil || b.GRPCCalls != 1 || b.GRPCNs != hc[0].DurationNs || b.GRPCSlowest == nil ||
		*b.GRPCSlowest != (grpcSlowest{"gonetscope.test.Echo", "Call", dialTarget, hc[0].DurationNs}) {
		t.Errorf("GET /call: breakdown %+v; want its one gRPC call, %v to %s", b, time.Duration(hc[0].DurationNs), dialTarget)
	}
	if n := countGRPC(evs, "grpc_request"); n != wantServer {
		t.Errorf("%d grpc_request events, want %d (the slow server calls)", n, wantServer)
	}
	if n := countGRPC(evs, "grpc_client_request"); n < wantClient || n > wantClient+maybeClient {
		t.Errorf("%d grpc_client_request events, want %d (the slow client calls; up to %d more whose caller measured %v or more)",
			n, wantClient, maybeClient, slow)
	}
	for _, c := range calls {
		name := fmt.Sprintf("call %+v (code %d, handler %v, caller %v)", *c, c.Code, time.Duration(c.said.HandlerNs), time.Duration(c.said.ClientNs))
		srv := byGoid("grpc_request", c.said.ServerGoid)
		slowServer := time.Duration(c.said.HandlerNs) >= slow || c.Downstream != nil
		if !slowServer {
			if len(srv) != 0 {
				t.Errorf("%s: fast, but a grpc_request on its goroutine %d: %+v", name, c.said.ServerGoid, srv)
			}
			continue
		}
		if len(srv) != 1 {
			t.Errorf("%s: %d grpc_request events on goroutine %d, want 1", name, len(srv), c.said.ServerGoid)
			continue
		}
		e := srv[0]
		if e.Service != "gonetscope.test.Echo" || e.Method != "Call" || e.Code == nil || *e.Code != c.Code ||
			e.CodeName != requests.GRPCCodeName(c.Code) {
			t.Errorf("%s: grpc_request %s/%s code %v %q, want gonetscope.test.Echo/Call code %d %q", name, e.Service, e.Method,
				e.Code, e.CodeName, c.Code, requests.GRPCCodeName(c.Code))
		}
		// Between what the handler measured itself and what the caller
		// measured around the whole call.
		if e.DurationNs < c.said.HandlerNs || e.DurationNs > c.said.ClientNs {
			t.Errorf("%s: grpc_request duration %v, want between the handler's own %v and the caller's %v", name,
				time.Duration(e.DurationNs), time.Duration(c.said.HandlerNs), time.Duration(c.said.ClientNs))
		}
		// The connection: the fd the target accepted it on, the test's
		// client's end as the remote one, a loopback round-trip time.
		if e.FD == nil || *e.FD != c.said.ServerFD || net.JoinHostPort(e.Raddr, strconv.Itoa(e.Rport)) != c.said.Local {
			t.Errorf("%s: grpc_request fd %v raddr %s:%d; the target accepted it on fd %d from %s", name, e.FD, e.Raddr, e.Rport,
				c.said.ServerFD, c.said.Local)
		}
		// No retransmission on a quiet host; under qemu at least the
		// handler's count (as for TestHTTPRequests).
		if e.SrttUs == nil || *e.SrttUs <= 0 || *e.SrttUs > 1e6 || e.Retrans == nil || *e.Retrans < c.said.ServerRetrans ||
			c.said.ServerRetrans < 0 || (!causalTiming() && *e.Retrans != 0) {
			t.Errorf("%s: srtt_us %s, retrans %s (the handler saw %d); want a loopback connection's", name,
				optInt(e.SrttUs), optInt(e.Retrans), c.said.ServerRetrans)
		}
		if b := e.Breakdown; b == nil || b.NetworkNs+b.SchedDelayNs+b.OtherNs != e.DurationNs {
			t.Errorf("%s: breakdown %+v does not add up to %d", name, b, e.DurationNs)
		}
		// The caller's: the one on the caller's goroutine whose span
		// holds the server call's (the calls on it are one after
		// another), and no longer than the caller measured.
		cl := byGoid("grpc_client_request", c.said.ClientGoid)
		var mine []grpcEvent
		for _, x := range cl {
			if spans(x, e) && x.DurationNs <= c.said.ClientNs {
				mine = append(mine, x)
			}
		}
		if len(mine) != 1 {
			t.Errorf("%s: %d grpc_client_request on goroutine %d spanning its server call (%v, ended %v) and at most the caller's %v; all on it: %+v",
				name, len(mine), c.said.ClientGoid, time.Duration(e.DurationNs), e.Time, time.Duration(c.said.ClientNs), cl)
			continue
		}
		x := mine[0]
		if x.Service != "gonetscope.test.Echo" || x.Method != "Call" || x.Code == nil || *x.Code != c.Code || x.Target != dialTarget {
			t.Errorf("%s: grpc_client_request %+v, want gonetscope.test.Echo/Call code %d to %s", name, x, c.Code, dialTarget)
		}
		if c.Downstream == nil {
			if b := e.Breakdown; b != nil && (b.GRPCCalls != 0 || b.GRPCSlowest != nil) {
				t.Errorf("%s: made no gRPC call, its breakdown says %d (%+v)", name, b.GRPCCalls, b.GRPCSlowest)
			}
			continue
		}
		// The handler's own call to the downstream: on the handler's
		// goroutine (or the one it started), at least the downstream's
		// sleep, within the call.
		down := byGoid("grpc_client_request", c.said.ServerGoid)
		if c.Fanout {
			down = byGoid("grpc_client_request", c.said.FanoutGoid)
		}
		if len(down) != 1 || down[0].Code == nil || *down[0].Code != 0 || down[0].Method != "Call" ||
			down[0].DurationNs < int64(time.Duration(c.Downstream.SleepMs)*time.Millisecond) || down[0].DurationNs > e.DurationNs {
			t.Errorf("%s: the handler's downstream call: %+v; want one OK Call on goroutine %d of at least %dms and at most its call's %v",
				name, down, c.said.ServerGoid, c.Downstream.SleepMs, time.Duration(e.DurationNs))
			continue
		}
		// The call's breakdown counts that downstream call, to the ns.
		b, d := e.Breakdown, down[0]
		if b == nil || b.GRPCCalls != 1 || b.GRPCNs != d.DurationNs || b.GRPCSlowest == nil ||
			*b.GRPCSlowest != (grpcSlowest{"gonetscope.test.Echo", "Call", dialTarget, d.DurationNs}) {
			t.Errorf("%s: breakdown %+v; want its one downstream call, %v to %s", name, b, time.Duration(d.DurationNs), dialTarget)
		}
	}
}

// checkGRPCStreams: each stream is one grpc_client_request with its code
// on the goroutine that opened it, whichever goroutine ended it, lasting
// between what its server's handler measured (or, for the one cancelled,
// the replies it waited for) and what its caller measured; and each one
// not cancelled a grpc_request with that code on its handler's
// goroutine.
func checkGRPCStreams(t *testing.T, streams []*grpcCall, watches []grpcEvent, dialTarget string) {
	t.Helper()
	if n := countGRPC(watches, "grpc_client_request"); n != len(streams) {
		t.Errorf("%d grpc_client_request events of Watch, want %d (one per stream)", n, len(streams))
	}
	if n := countGRPC(watches, "grpc_request"); n != len(streams) {
		t.Errorf("%d grpc_request events of Watch, want %d (one per stream)", n, len(streams))
	}
	for _, c := range streams {
		name := fmt.Sprintf("stream %+v (code %d, handler %v, caller %v, opened on goroutine %d, read on %d)", *c, c.said.Code,
			time.Duration(c.said.HandlerNs), time.Duration(c.said.ClientNs), c.said.ClientGoid, c.said.ReaderGoid)
		least := c.said.HandlerNs
		if c.CancelAfter > 0 {
			least = int64(c.CancelAfter*c.SleepMs) * 1e6
		}
		var mine []grpcEvent
		for _, e := range watches {
			if e.Event == "grpc_client_request" && e.Goid != nil && *e.Goid == c.said.ClientGoid && e.Code != nil && *e.Code == c.said.Code {
				mine = append(mine, e)
			}
		}
		if len(mine) != 1 {
			t.Errorf("%s: %d grpc_client_request of Watch with code %d on goroutine %d; all of Watch: %+v", name, len(mine),
				c.said.Code, c.said.ClientGoid, watches)
		} else if x := mine[0]; x.Service != "gonetscope.test.Echo" || x.Target != dialTarget || x.DurationNs < least || x.DurationNs > c.said.ClientNs {
			t.Errorf("%s: grpc_client_request %+v, want gonetscope.test.Echo/Watch to %s lasting %v to %v", name, x, dialTarget,
				time.Duration(least), time.Duration(c.said.ClientNs))
		}
		if c.CancelAfter > 0 {
			continue // its trailer, with the handler's goroutine, never came
		}
		var srv []grpcEvent
		for _, e := range watches {
			if e.Event == "grpc_request" && e.Goid != nil && *e.Goid == c.said.ServerGoid {
				srv = append(srv, e)
			}
		}
		if len(srv) != 1 || srv[0].Code == nil || *srv[0].Code != c.said.Code || srv[0].DurationNs < c.said.HandlerNs || srv[0].DurationNs > c.said.ClientNs {
			t.Errorf("%s: grpc_request on goroutine %d: %+v; want one, code %d, between the handler's and the caller's time", name,
				c.said.ServerGoid, srv, c.said.Code)
		}
	}
}

// checkGRPCMethods: the last grpc_methods event (written before
// detached) counts each method's server calls by code exactly as the
// target made them (the held call, begun before the attach, in none).
func checkGRPCMethods(t *testing.T, out string, calls []*grpcCall) {
	t.Helper()
	type method struct {
		Service string            `json:"service"`
		Method  string            `json:"method"`
		Count   uint64            `json:"count"`
		Codes   map[string]uint64 `json:"codes"`
	}
	type methods struct {
		Event   string   `json:"event"`
		Methods []method `json:"methods"`
	}
	var last *methods
	for _, e := range eventsIn[methods](t, out) {
		if e.Event == "grpc_methods" {
			last = &e
		}
	}
	if last == nil {
		t.Errorf("no grpc_methods event")
		return
	}
	want := map[string]uint64{}
	for _, c := range calls {
		m, code := grpcMethod, requests.GRPCCodeName(c.Code)
		if c.Stream > 0 {
			m, code = grpcWatch, requests.GRPCCodeName(c.said.Code)
		}
		want[m+" "+code]++
		if c.Downstream != nil {
			want[m+" OK"]++
		}
	}
	got := map[string]uint64{}
	for _, m := range last.Methods {
		var n uint64
		for code, k := range m.Codes {
			got["/"+m.Service+"/"+m.Method+" "+code] += k
			n += k
		}
		if n != m.Count {
			t.Errorf("grpc_methods: %s/%s count %d, its codes add up to %d", m.Service, m.Method, m.Count, n)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("grpc_methods counts %v, made %v", got, want)
	}
}

func countGRPC(evs []grpcEvent, kind string) int {
	return len(slices.DeleteFunc(slices.Clone(evs), func(e grpcEvent) bool { return e.Event != kind }))
}

// checkGRPCMetrics scrapes the endpoint: the server and client histograms
// count each (method, code) exactly as often as calls were made, the
// client's under the dial target's address; promtool accepts the
// exposition.
func checkGRPCMetrics(t *testing.T, addr string, calls []*grpcCall, dialTarget string, noStart float64) {
	t.Helper()
	body := scrape(t, "http://"+addr+"/metrics")
	promtoolCheck(t, body)
	families := metricFamilies(t, "/metrics", body)
	host, port := requests.GRPCServerAddress(dialTarget)
	method := strings.TrimPrefix(grpcMethod, "/")
	want := map[string]uint64{}
	for _, c := range calls {
		code, method := requests.GRPCCodeName(c.Code), method
		if c.Stream > 0 {
			// The cancelled stream's handler saw its context end.
			code, method = requests.GRPCCodeName(c.said.Code), strings.TrimPrefix(grpcWatch, "/")
		}
		want["server "+method+" "+code]++
		want["client "+method+" "+host+" "+port+" "+code]++
		if c.Downstream != nil {
			want["server "+method+" OK"]++
			want["client "+method+" "+host+" "+port+" OK"]++
		}
	}
	got := map[string]uint64{}
	for kind, name := range map[string]string{"server": "rpc_server_call_duration_seconds", "client": "rpc_client_call_duration_seconds"} {
		f := families[name]
		if f == nil {
			continue
		}
		for _, m := range f.Metric {
			l := map[string]string{}
			for _, lp := range m.Label {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["rpc_system_name"] != "grpc" {
				t.Errorf("%s: rpc_system_name %q", name, l["rpc_system_name"])
			}
			k := kind + " " + l["rpc_method"]
			if kind == "client" {
				k += " " + l["server_address"] + " " + l["server_port"]
			}
			got[k+" "+l["rpc_response_status_code"]] += m.Histogram.GetSampleCount()
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("gRPC histogram counts %v, made %v", got, want)
	}
	// The calls begun before the attach, at each end.
	untracked := map[string]float64{}
	if f := families["gonetscope_http_requests_untracked_total"]; f != nil {
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				if lp.GetName() == "reason" {
					untracked[lp.GetValue()] = m.Counter.GetValue()
				}
			}
		}
	}
	for _, reason := range []string{"grpc_no_start", "grpc_client_no_start"} {
		if n, ok := untracked[reason]; !ok || n != noStart {
			t.Errorf("gonetscope_http_requests_untracked_total{reason=%q} %v (%v), want %v (the calls begun before the attach)", reason, n, ok, noStart)
		}
	}
}

// TestGRPCPrometheus: a real Prometheus server scrapes --metrics-addr
// while the target makes 110 unary calls to itself, 3 of them 300ms
// long and 10 failing with codes.Internal: for the server's and the
// client's histograms, histogram_quantile(0.99) of the method must fall
// within one bucket of the p99 the caller measured itself, and the
// ratio of calls that did not end OK must be exactly what the test sent.
func TestGRPCPrometheus(t *testing.T) {
	target := exec.Command(buildGRPCTarget(t))
	stdin, next := startTarget(t, target)
	next("listening")
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startGonetscopeTo(t, nil, target.Process.Pid, "trace", "--requests", "--output", os.DevNull, "--metrics-addr", maddr)
	query, plog := startPrometheus(t, maddr)

	var measured []time.Duration
	for i := range 110 {
		c := grpcCall{ID: i + 1}
		switch {
		case i >= 100:
			c.Code = 13 // codes.Internal
		case i%33 == 16:
			c.SleepMs = 300
		}
		b, _ := json.Marshal(c)
		if _, err := stdin.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
		said := next("called")
		if int(said["id"].(float64)) != c.ID || int(said["code"].(float64)) != c.Code {
			t.Fatalf("call %+v: the target said %v", c, said)
		}
		measured = append(measured, time.Duration(said["client_ns"].(float64)))
	}
	slices.Sort(measured)
	p99 := measured[108] // nearest rank: the 109th of 110

	deadline := time.Now().Add(30 * time.Second)
	for {
		n, ok := query(`sum(rpc_server_call_duration_seconds_count)`)
		m, ok2 := query(`sum(rpc_client_call_duration_seconds_count)`)
		if ok && ok2 && n == 110 && m == 110 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus never saw the 110 calls at both ends (server %v, client %v)\n%s", n, m, plog)
		}
		time.Sleep(200 * time.Millisecond)
	}
	method := strings.TrimPrefix(grpcMethod, "/")
	for _, side := range []string{"server", "client"} {
		h := "rpc_" + side + "_call_duration_seconds"
		got, ok := query(fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (%s_bucket{rpc_method=%q}))`, h, method))
		if !ok {
			t.Errorf("%s: no histogram_quantile answer", h)
		} else if d := bucketOf(got) - bucketOf(p99.Seconds()); d < -1 || d > 1 {
			t.Errorf("%s: histogram_quantile(0.99) of %s = %gs (bucket %d), the caller measured p99 %v (bucket %d)", h, method, got, bucketOf(got), p99, bucketOf(p99.Seconds()))
		}
		ratio, ok := query(fmt.Sprintf(`sum(%s_count{rpc_response_status_code!="OK"}) / sum(%s_count)`, h, h))
		if !ok || ratio != 10.0/110 {
			t.Errorf("%s: the ratio of calls not OK is %g (%v), sent %g", h, ratio, ok, 10.0/110)
		}
	}
}

// TestGRPCOlderVersion: the same calls against grpc v1.64.1, before
// grpc split its streams into ServerStream and ClientStream (the server's
// is a *transport.Stream, its status written by the exported
// WriteStatus): the sites and layouts come from that version's code.
func TestGRPCOlderVersion(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "grpc")
	os.Mkdir(dir, 0o755)
	src, err := os.ReadFile(filepath.Join("testdata", "grpc", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module grpctarget\n\ngo 1.24\n"), 0o644)
	for _, args := range [][]string{{"get", "google.golang.org/grpc@v1.64.1"}, {"mod", "tidy"}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
	checkGRPC(t, buildGo(t, dir, dir, ".", "-ldflags=-s -w"))
}

// TestGRPCDiagnose: diagnose's request item from a gRPC server: 29 calls
// of Call, 5 of them ending UNAVAILABLE (a server error), 3 NOT_FOUND (the
// caller's, not counted) and one 300ms long: the share of server errors
// is a problem, Call's p99 lies in the slow call's bucket, and the
// evidence is that call, on its handler's goroutine.
func TestGRPCDiagnose(t *testing.T) {
	target := exec.Command(buildGRPCTarget(t))
	stdin, next := startTarget(t, target)
	next("listening")
	r := diagRun{out: t.TempDir()}
	var stdout bytes.Buffer
	_, done, errOut := startGonetscopeTo(t, &stdout, target.Process.Pid, "diagnose", "--json", "--quiet", "--out", r.out,
		"--duration", "3s", "--slow-request", "100ms")
	var calls []grpcCall
	for range 20 {
		calls = append(calls, grpcCall{})
	}
	for range 5 {
		calls = append(calls, grpcCall{Code: 14}) // codes.Unavailable
	}
	for range 3 {
		calls = append(calls, grpcCall{Code: 5}) // codes.NotFound
	}
	calls = append(calls, grpcCall{SleepMs: 300})
	var slowGoid int64
	for i, c := range calls {
		c.ID = i + 1
		b, _ := json.Marshal(c)
		if _, err := stdin.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
		said := next("called")
		if int(said["code"].(float64)) != c.Code {
			t.Fatalf("call %+v: the target said %v", c, said)
		}
		if c.SleepMs > 0 {
			slowGoid = int64(said["server_goid"].(float64))
		}
	}

	finishDiagnose(t, &r, target.Process.Pid, done, &stdout, errOut)
	it := r.item(t, "http_requests")
	wantValue := "gonetscope.test.Echo/Call p99 250ms–500ms (29 calls), gRPC server errors 5 of 29 (17.2%)"
	if it.Status != diagnose.Problem || it.Value != wantValue {
		t.Errorf("http_requests: %s %q; want problem %q", it.Status, it.Value, wantValue)
	}
	if want := "5 of 29 gRPC calls (17.2%) ended in a server error (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS), most on gonetscope.test.Echo/Call."; it.Finding != want {
		t.Errorf("finding %q, want %q", it.Finding, want)
	}
	if len(it.Evidence) != 1 || len(it.Evidence[0].Goids) != 1 || int64(it.Evidence[0].Goids[0]) != slowGoid ||
		!strings.HasPrefix(it.Evidence[0].Text, "gRPC gonetscope.test.Echo/Call took 3") {
		t.Errorf("evidence %+v: want the slow call, on goroutine %d", it.Evidence, slowGoid)
	}
	if r.exit != diagnose.ExitProblems {
		t.Errorf("diagnose exited %d, want %d", r.exit, diagnose.ExitProblems)
	}
}
