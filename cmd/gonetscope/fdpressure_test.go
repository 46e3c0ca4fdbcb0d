package main

import (
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// fdEv is an fd_pressure or summary event as gonetscope writes it.
type fdEv struct {
	Event     string         `json:"event"`
	Open      int            `json:"open"`
	Limit     uint64         `json:"limit"`
	TCPStates map[string]int `json:"tcp_states"`
	Ratio     float64        `json:"ratio"`
	FDs       *struct {
		Open      int            `json:"open"`
		Limit     uint64         `json:"limit"`
		TCPStates map[string]int `json:"tcp_states"`
	} `json:"fds"`
}

// fdReport is what fdtarget says of itself.
type fdReport struct {
	Op        string         `json:"op"`
	PID       int            `json:"pid"`
	Open      int            `json:"open"`
	Limit     uint64         `json:"limit"`
	TCPStates map[string]int `json:"tcp_states"`
}

// TestFDPressure: fdtarget sets its soft RLIMIT_NOFILE to 64 and holds a
// listener and a connection to itself. It opens fds up to 56 (87.5%):
// one fd_pressure with its own count, limit and sockets by state; up to 60
// and back down to 40, below 85%, with summaries in between: no other;
// up to 58 again: a second one, with 58. Each summary carries the fds
// the target reports at that time.
func TestFDPressure(t *testing.T) {
	stdin, next := startTargetOf[fdReport](t, exec.Command(buildTarget(t, "fdtarget"), "-limit", "64"))
	pid := next().PID
	out := filepath.Join(t.TempDir(), "events.jsonl")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	tr, done, errOut := startGonetscopeTo(t, nil, pid, "trace", "--output", out, "--events", "fd_pressure",
		"--health-interval", "50ms", "--summary-interval", "200ms", "--metrics-addr", addr)
	ask := func(cmd string) fdReport {
		t.Helper()
		fmt.Fprintln(stdin, cmd)
		r := next()
		if r.Limit != 64 {
			t.Fatalf("the target says %+v", r)
		}
		return r
	}
	pressure := func(evs []fdEv) (n int) {
		for _, e := range evs {
			if e.Event == "fd_pressure" {
				n++
			}
		}
		return n
	}
	// summariesWith waits for two summaries saying r's open count (the
	// second one is written after the fd check saw it too).
	summariesWith := func(r fdReport) {
		t.Helper()
		waitEvents(t, out, func(evs []fdEv) bool {
			n := 0
			for _, e := range evs {
				if e.Event == "summary" && e.FDs != nil && e.FDs.Open == r.Open {
					if e.FDs.Limit != r.Limit || !maps.Equal(e.FDs.TCPStates, r.TCPStates) {
						t.Fatalf("summary fds %+v; the target says %+v", *e.FDs, r)
					}
					n++
				}
			}
			return n >= 2
		})
	}
	check := func(e fdEv, r fdReport) {
		t.Helper()
		if e.Open != r.Open || e.Limit != r.Limit || !maps.Equal(e.TCPStates, r.TCPStates) || e.Ratio != float64(r.Open)/float64(r.Limit) {
			t.Errorf("fd_pressure %+v; the target says %+v", e, r)
		}
	}
	last := func(evs []fdEv) fdEv {
		var l fdEv
		for _, e := range evs {
			if e.Event == "fd_pressure" {
				l = e
			}
		}
		return l
	}

	r := ask("open 56")
	check(last(waitEvents(t, out, func(evs []fdEv) bool { return pressure(evs) == 1 })), r)
	r = ask("open 60")
	summariesWith(r)
	// The gauges, read while the target waits.
	families := metricFamilies(t, "/metrics", scrape(t, "http://"+addr+"/metrics"))
	gauge := func(name string, labels map[string]string) float64 {
		for _, m := range families[name].GetMetric() {
			if matches(m, labels) {
				return m.GetGauge().GetValue()
			}
		}
		return -1
	}
	p := map[string]string{"pid": fmt.Sprint(pid)}
	if o, l := gauge("gonetscope_open_fds", p), gauge("gonetscope_fd_limit", p); o != float64(r.Open) || l != float64(r.Limit) {
		t.Errorf("gonetscope_open_fds %v, gonetscope_fd_limit %v; the target says %+v", o, l, r)
	}
	for st, n := range r.TCPStates {
		if g := gauge("gonetscope_tcp_sockets", map[string]string{"pid": fmt.Sprint(pid), "state": st}); g != float64(n) {
			t.Errorf("gonetscope_tcp_sockets{state=%s} %v, the target has %d", st, g, n)
		}
	}
	summariesWith(ask("close 40"))
	if n := pressure(eventsIn[fdEv](t, out)); n != 1 {
		t.Errorf("%d fd_pressure events while the target stayed over 85%%, want 1", n)
	}
	r = ask("open 58")
	check(last(waitEvents(t, out, func(evs []fdEv) bool { return pressure(evs) == 2 })), r)
	summariesWith(r)

	stopGonetscope(t, tr, done, errOut, syscall.SIGTERM, 20*time.Second)
	if n := pressure(eventsIn[fdEv](t, out)); n != 2 {
		t.Errorf("%d fd_pressure events for two crossings, want 2", n)
	}
}
