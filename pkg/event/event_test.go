package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// jsonOf writes ev as gonetscope does and reads the line back, keeping
// numbers exact (json.Number) and refusing duplicate keys.
func jsonOf(t *testing.T, ev Event) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Log().EmbedObject(ev).Send()
	line := buf.Bytes()
	if bytes.Count(line, []byte("\n")) != 1 || !bytes.HasSuffix(line, []byte("\n")) {
		t.Fatalf("not one line: %q", line)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %q", line)
	}
	m := map[string]any{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatalf("%v in %s", err, line)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%v in %s", err, line)
		}
		if _, dup := m[k.(string)]; dup {
			t.Errorf("key %q twice in %s", k, line)
		}
		m[k.(string)] = v
	}
	return m
}

// same compares a decoded JSON value with an expected Go value: numbers must
// be JSON numbers, strings strings, objects objects.
func same(got, want any) bool {
	switch w := want.(type) {
	case string:
		return got == w
	case bool:
		return got == w
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k := range w {
			if !same(g[k], w[k]) {
				return false
			}
		}
		return true
	default: // an integer
		n, ok := got.(json.Number)
		return ok && n.String() == fmt.Sprint(w)
	}
}

// checkJSON compares every key of got but "time" with want.
func checkJSON(t *testing.T, got, want map[string]any) {
	t.Helper()
	delete(got, "time")
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s missing, want %v", k, v)
		} else if !same(g, v) {
			t.Errorf("%s = %#v, want %#v", k, g, v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s = %v", k, v)
		}
	}
}

var (
	withGoid = Header{Event: "x", PID: 4242, TID: 4243, Comm: "my prog", Goid: 1<<62 + 1, HasGoid: true}
	noGoid   = Header{Event: "x", PID: 4242, TID: 4244, Comm: "my prog", Goid: 99}
)

// fields is what every event carries for h, plus more.
func fields(h Header, event string, more map[string]any) map[string]any {
	m := map[string]any{"event": event, "pid": h.PID, "tid": h.TID, "comm": h.Comm}
	if h.HasGoid {
		m["goid"] = h.Goid
	}
	for k, v := range more {
		m[k] = v
	}
	return m
}

func hdr(h Header, event string) Header {
	h.Event = event
	return h
}

func addrs(local string, lport uint16, remote string, rport uint16) Addrs {
	return Addrs{Local: netip.MustParseAddr(local), LocalPort: lport, Remote: netip.MustParseAddr(remote), RemotePort: rport}
}

func TestJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   Event
		want map[string]any
	}{
		{
			"tcp_connect",
			&TCPConnect{Header: hdr(withGoid, "tcp_connect"), FD: 7, Addrs: addrs("10.0.0.1", 40000, "10.0.0.2", 443), HandshakeNs: 150_000, Result: "ok"},
			fields(withGoid, "tcp_connect", map[string]any{
				"fd": 7, "laddr": "10.0.0.1", "lport": 40000, "raddr": "10.0.0.2", "rport": 443,
				"handshake_ns": 150_000, "result": "ok",
			}),
		},
		{
			"tcp_connect IPv6 without fd or goid",
			&TCPConnect{Header: hdr(noGoid, "tcp_connect"), FD: -1, Addrs: addrs("2001:db8::1", 40001, "2001:db8::2", 80), HandshakeNs: 1 << 40, Result: "ECONNREFUSED"},
			fields(noGoid, "tcp_connect", map[string]any{
				"fd": -1, "laddr": "2001:db8::1", "lport": 40001, "raddr": "2001:db8::2", "rport": 80,
				"handshake_ns": uint64(1 << 40), "result": "ECONNREFUSED",
			}),
		},
		{
			"tcp_accept",
			&TCPAccept{Header: hdr(withGoid, "tcp_accept"), FD: 12, ListenFD: 3, Addrs: addrs("127.0.0.1", 8080, "127.0.0.1", 51000),
				QueueWaitNs: 2_500, QueueWaitKnown: true, Backlog: 5, BacklogMax: 4096},
			fields(withGoid, "tcp_accept", map[string]any{
				"fd": 12, "listen_fd": 3, "laddr": "127.0.0.1", "lport": 8080, "raddr": "127.0.0.1", "rport": 51000,
				"queue_wait_ns": 2_500, "backlog": 5, "backlog_max": 4096,
			}),
		},
		{
			"tcp_accept without queue wait",
			&TCPAccept{Header: hdr(withGoid, "tcp_accept"), FD: 12, ListenFD: 3, Addrs: addrs("127.0.0.1", 8080, "127.0.0.1", 51000),
				QueueWaitNs: 2_500, Backlog: 0, BacklogMax: 128},
			fields(withGoid, "tcp_accept", map[string]any{
				"fd": 12, "listen_fd": 3, "laddr": "127.0.0.1", "lport": 8080, "raddr": "127.0.0.1", "rport": 51000,
				"backlog": 0, "backlog_max": 128,
			}),
		},
		{
			"netpoll_wait",
			&NetpollWait{Header: hdr(withGoid, "netpoll_wait"), FD: 9, Mode: "read", Kind: "in_request", Addrs: addrs("10.1.1.1", 8080, "10.1.1.2", 60000),
				WaitNs: 3_000_123, IoWaitNs: 3_000_000, SchedDelayNs: 123, ReadySeen: true, ParkTID: 4245},
			fields(withGoid, "netpoll_wait", map[string]any{
				"fd": 9, "mode": "read", "kind": "in_request", "laddr": "10.1.1.1", "lport": 8080, "raddr": "10.1.1.2", "rport": 60000,
				"wait_ns": 3_000_123, "io_wait_ns": 3_000_000, "sched_delay_ns": 123, "ready_seen": true, "park_tid": 4245,
			}),
		},
		{
			"netpoll_wait without addresses, woken by a deadline",
			&NetpollWait{Header: hdr(noGoid, "netpoll_wait"), FD: 10, Mode: "write", WaitNs: 500, IoWaitNs: 500, ParkTID: 1},
			fields(noGoid, "netpoll_wait", map[string]any{
				"fd": 10, "mode": "write",
				"wait_ns": 500, "io_wait_ns": 500, "sched_delay_ns": 0, "ready_seen": false, "park_tid": 1,
			}),
		},
		{
			"epoll_wait",
			&EpollWait{Header: hdr(noGoid, "epoll_wait"), BlockNs: 250_000_000, Ready: 2, TimeoutMs: -1, EpFD: 4},
			fields(noGoid, "epoll_wait", map[string]any{"block_ns": 250_000_000, "ready": 2, "timeout_ms": -1, "epfd": 4}),
		},
		{
			"accept_error on an IPv4 listener",
			&AcceptError{Header: hdr(withGoid, "accept_error"), ListenFD: 3, Addrs: addrs("0.0.0.0", 8080, "0.0.0.0", 0),
				Errno: "EMFILE", OpenFDs: 1024, FDLimit: 1024},
			fields(withGoid, "accept_error", map[string]any{
				"listen_fd": 3, "laddr": "0.0.0.0", "lport": 8080, "errno": "EMFILE", "open_fds": 1024, "fd_limit": 1024,
			}),
		},
		{
			"accept_error on an IPv6 listener, process gone",
			&AcceptError{Header: hdr(withGoid, "accept_error"), ListenFD: 5, Addrs: addrs("::", 9090, "::", 0),
				Errno: "ENFILE", OpenFDs: -1, FDLimit: 0},
			fields(withGoid, "accept_error", map[string]any{
				"listen_fd": 5, "laddr": "::", "lport": 9090, "errno": "ENFILE", "open_fds": -1, "fd_limit": 0,
			}),
		},
		{
			"attached",
			&Attached{Header: hdr(noGoid, "attached"), Exe: "/usr/bin/my prog", GoVersion: "go1.26.8", OffsetsFrom: "dwarf",
				Hooks: map[string]string{"tcp_connect": "fentry", "inet_csk_accept": "tracepoint"}, MinWaitNs: 1_000_000},
			fields(noGoid, "attached", map[string]any{
				"exe": "/usr/bin/my prog", "go_version": "go1.26.8", "offsets_from": "dwarf",
				"hooks":       map[string]any{"tcp_connect": "fentry", "inet_csk_accept": "tracepoint"},
				"min_wait_ns": 1_000_000,
			}),
		},
		{
			"detached",
			&Detached{Header: hdr(noGoid, "detached"), Reason: ReasonTargetExited},
			fields(noGoid, "detached", map[string]any{"reason": "target_exited"}),
		},
		{
			"lost",
			&Lost{Header: Header{Event: "lost"}, Count: 1<<64 - 1, Stream: "queue", LostEvent: "netpoll_wait"},
			fields(Header{}, "lost", map[string]any{"count": uint64(1<<64 - 1), "stream": "queue", "lost_event": "netpoll_wait"}),
		},
		{
			"lost undecodable",
			&Lost{Header: Header{Event: "lost"}, Count: 1, Stream: "tcp", LostEvent: "undecodable"},
			fields(Header{}, "lost", map[string]any{"count": 1, "stream": "tcp", "lost_event": "undecodable"}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkJSON(t, jsonOf(t, tc.ev), tc.want)
		})
	}
}

// The remote half is left out only when both address and port are zero.
func TestJSONRemoteHalf(t *testing.T) {
	for _, tc := range []struct {
		a          Addrs
		wantRemote bool
	}{
		{addrs("0.0.0.0", 80, "0.0.0.0", 0), false},
		{addrs("::", 80, "::", 0), false},
		{addrs("10.0.0.1", 80, "10.0.0.2", 0), true},
		{addrs("10.0.0.1", 80, "0.0.0.0", 5), true},
		{Addrs{Local: netip.MustParseAddr("10.0.0.1"), LocalPort: 80}, false}, // no remote at all
	} {
		m := jsonOf(t, &AcceptError{Header: Header{Event: "accept_error"}, Addrs: tc.a})
		_, raddr := m["raddr"]
		_, rport := m["rport"]
		if raddr != tc.wantRemote || rport != tc.wantRemote {
			t.Errorf("%+v: raddr present %v, rport present %v, want %v", tc.a, raddr, rport, tc.wantRemote)
		}
		if !same(m["laddr"], tc.a.Local.String()) || !same(m["lport"], tc.a.LocalPort) {
			t.Errorf("%+v: laddr, lport = %v, %v", tc.a, m["laddr"], m["lport"])
		}
	}
}

func TestJSONTime(t *testing.T) {
	fixed := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)$`)
	for _, tc := range []struct {
		in   time.Time
		want string // "" when it depends on the local zone
	}{
		{time.Date(2026, 11, 27, 13, 5, 9, 120_000_000, time.UTC), "2026-11-27T13:05:09.120000000Z"},
		{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "2026-01-02T03:04:05.000000000Z"},
		{time.Date(2026, 1, 2, 3, 4, 5, 7, time.FixedZone("", 5*3600+1800)), "2026-01-02T03:04:05.000000007+05:30"},
		{time.Unix(1_800_000_000, 999_999_999), ""},
	} {
		m := jsonOf(t, &Detached{Header: Header{Time: tc.in, Event: "detached"}})
		s, _ := m["time"].(string)
		if !fixed.MatchString(s) {
			t.Errorf("time %q is not RFC 3339 with 9 fractional digits", s)
		}
		if tc.want != "" && s != tc.want {
			t.Errorf("time = %q, want %q", s, tc.want)
		}
		if back, err := time.Parse(time.RFC3339Nano, s); err != nil || !back.Equal(tc.in) {
			t.Errorf("time.Parse(RFC3339Nano, %q) = %v, %v, want %v", s, back, err, tc.in)
		}
	}
}

func TestJSONHooksSorted(t *testing.T) {
	// A JSON object has no order, but a stable line is easier to diff.
	hooks := map[string]string{"c": "3", "a": "1", "d": "4", "b": "2"}
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Log().EmbedObject(&Attached{Hooks: hooks}).Send()
	want := `"hooks":{"a":"1","b":"2","c":"3","d":"4"}`
	if !bytes.Contains(buf.Bytes(), []byte(want)) {
		t.Errorf("%s does not contain %s", buf.Bytes(), want)
	}
}

func TestErrnoName(t *testing.T) {
	for _, tc := range []struct {
		n    int32
		want string
	}{
		{int32(unix.ECONNREFUSED), "ECONNREFUSED"},
		{int32(unix.ETIMEDOUT), "ETIMEDOUT"},
		{int32(unix.EMFILE), "EMFILE"},
		{int32(unix.ENFILE), "ENFILE"},
		{0, "errno 0"},
		{4095, "errno 4095"},
		{-111, "errno -111"},
	} {
		if got := ErrnoName(tc.n); got != tc.want {
			t.Errorf("ErrnoName(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestJSONContainer: a target in a PID namespace of its own adds ns_pid and
// ns_tid (ns_tid only when read), and attached names its namespaces and
// container.
func TestJSONContainer(t *testing.T) {
	h := withGoid
	h.NsPID, h.NsTID = 1, 7
	got := jsonOf(t, &Detached{Header: hdr(h, "detached"), Reason: ReasonRequested})
	checkJSON(t, got, fields(withGoid, "detached", map[string]any{"ns_pid": 1, "ns_tid": 7, "reason": "requested"}))

	h.NsTID = 0
	got = jsonOf(t, &Detached{Header: hdr(h, "detached"), Reason: ReasonRequested})
	checkJSON(t, got, fields(withGoid, "detached", map[string]any{"ns_pid": 1, "reason": "requested"}))

	a := &Attached{
		Header:      hdr(Header{PID: 4242, TID: 4242, Comm: "srv", NsPID: 1, NsTID: 1}, "attached"),
		Namespaces:  map[string]uint64{"pid": 4026532178, "net": 4026532179},
		ContainerID: "3f4e1c0d9b8a7f6e5d4c3b2a1908f7e6d5c4b3a291807f6e5d4c3b2a1908f7e6",
		Exe:         "/srv", GoVersion: "go1.26.8", OffsetsFrom: "dwarf", Hooks: map[string]string{}, MinWaitNs: 1,
	}
	got = jsonOf(t, a)
	checkJSON(t, got, map[string]any{
		"event": "attached", "pid": 4242, "tid": 4242, "comm": "srv", "ns_pid": 1, "ns_tid": 1,
		"namespaces":   map[string]any{"pid": uint64(4026532178), "net": uint64(4026532179)},
		"container_id": a.ContainerID, "exe": "/srv", "go_version": "go1.26.8", "offsets_from": "dwarf",
		"hooks": map[string]any{}, "min_wait_ns": 1,
	})
}

// AppendTime writes what time.Format does, across seconds, zones and
// nanoseconds with leading zeros, from its cache and without it.
func TestAppendTime(t *testing.T) {
	east := time.FixedZone("east", 5*3600+30*60)
	base := time.Date(2026, 12, 1, 23, 59, 58, 7, time.UTC)
	for _, tm := range []time.Time{
		base, base.Add(time.Nanosecond), base.Add(999_999_992), base.Add(time.Second + 5),
		base.In(east), base.Add(2 * time.Second).In(east), base.Local(), base.Add(123_456_789),
		time.Date(1999, 1, 2, 3, 4, 5, 0, time.UTC),
	} {
		for range 2 { // the second call hits the cache
			if got, want := string(AppendTime([]byte("x"), tm)), "x"+tm.Format(TimeFormat); got != want {
				t.Errorf("AppendTime(%v) = %q, want %q", tm, got, want)
			}
		}
	}
}
