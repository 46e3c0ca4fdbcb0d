package diagnose

import (
	"strings"
	"testing"
	"time"
)

func withReads(e Event) Event {
	e.Hooks = map[string]string{"netpoll": "tp_btf", "runtime_reads": "proc_mem"}
	return e
}

// gc_pauses: the nearest-rank p99 of every pause the gc events list,
// against 5ms; n/a for a stream without runtime reads or with its limit.
func TestGCPausesItem(t *testing.T) {
	gc := func(pauses ...uint64) Event {
		return Event{Event: "gc", PID: 7, Cycles: uint32(len(pauses)), PausesNs: pauses}
	}
	for _, c := range []struct {
		evs  []Event
		want string
		p99  float64
	}{
		{[]Event{gc(100e3, 200e3), gc(4e6)}, OK, 4e6},
		{[]Event{gc(100e3, 200e3), gc(6e6)}, Problem, 6e6},
		{nil, OK, 0},
	} {
		r, err := Analyze(append([]Event{withReads(attached(7))}, c.evs...), 7, Defaults())
		if err != nil {
			t.Fatal(err)
		}
		it := itemOf(t, r, "gc_pauses")
		if it.Status != c.want || it.Measured == nil || *it.Measured != c.p99 {
			t.Errorf("%+v: %s %v %q, want %s p99 %v", c.evs, it.Status, it.Measured, it.Value, c.want, c.p99)
		}
	}
	r, _ := Analyze([]Event{attached(7), gc(6e6)}, 7, Defaults())
	if it := itemOf(t, r, "gc_pauses"); it.Status != NA {
		t.Errorf("a stream without runtime reads: %s", it.Status)
	}
	a := withReads(attached(7))
	a.Limits = []string{"no gc events: the layout of runtime.mstats of go1.19.8 is not known"}
	r, _ = Analyze([]Event{a}, 7, Defaults())
	if it := itemOf(t, r, "gc_pauses"); it.Status != NA || !strings.Contains(it.Why, "mstats") {
		t.Errorf("gc events off: %s %q", it.Status, it.Why)
	}
}

// fd_usage from a trace stream: the summaries' fds and fd_pressure.
func TestFDUsageFromTrace(t *testing.T) {
	open := 60
	for _, c := range []struct {
		ev   Event
		want string
	}{
		{Event{Event: "summary", PID: 7, FDs: &FDs{Open: 10, Limit: 64}}, OK},
		{Event{Event: "fd_pressure", PID: 7, Open: &open, Limit: 64, Time: time.Unix(101, 0)}, Problem},
	} {
		r, _ := Analyze([]Event{withReads(attached(7)), c.ev}, 7, Defaults())
		if it := itemOf(t, r, "fd_usage"); it.Status != c.want {
			t.Errorf("%+v: %s %q, want %s", c.ev, it.Status, it.Value, c.want)
		}
	}
}
