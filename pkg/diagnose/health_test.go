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

// heap from a trace stream (gc events only): the first and last cycle's
// live heap, which must grow by ×1.5 and 8 MiB and end at its largest;
// from heap profiles, their in-use totals, with the sites that grew.
func TestHeapItem(t *testing.T) {
	gc := func(num uint32, after uint64) Event {
		return Event{Event: "gc", PID: 7, NumGC: num, Cycles: 1, HeapAfter: &after}
	}
	const mb = 1 << 20
	for _, c := range []struct {
		evs  []Event
		want string
	}{
		{[]Event{gc(1, 10*mb), gc(2, 20*mb), gc(3, 30*mb)}, Problem},
		{[]Event{gc(1, 10*mb), gc(2, 40*mb), gc(3, 30*mb)}, OK}, // not at its largest at the end
		{[]Event{gc(1, 1*mb), gc(2, 2*mb), gc(3, 5*mb)}, OK},    // ×5, but 4 MiB
		{[]Event{gc(1, 30*mb), gc(1, 30*mb), gc(2, 40*mb)}, OK}, // ×1.33
		{[]Event{gc(1, 10*mb), gc(1, 10*mb), gc(1, 10*mb)}, NA}, // one cycle
	} {
		r, err := Analyze(append([]Event{withReads(attached(7))}, c.evs...), 7, Defaults())
		if err != nil {
			t.Fatal(err)
		}
		if it := itemOf(t, r, "heap"); it.Status != c.want {
			t.Errorf("%+v: %s %q %q, want %s", c.evs, it.Status, it.Value, it.Why, c.want)
		}
	}
	rate := int64(512 << 10)
	prof := func(total int64, sites ...GoroutineSite) Event {
		return Event{Event: "heap_profile", PID: 7, MemProfileRate: &rate, InuseBytes: total, Sites: sites}
	}
	site := func(fn string, inuse int64) GoroutineSite {
		return GoroutineSite{Func: fn, File: "/src/x.go", Line: 3, InuseBytes: inuse}
	}
	r, _ := Analyze([]Event{withReads(attached(7)),
		prof(4*mb, site("main.a", 3*mb), site("main.b", 1*mb)),
		prof(40*mb, site("main.b", 30*mb), site("main.a", 3*mb), site("main.c", 7*mb))}, 7, Defaults())
	it := itemOf(t, r, "heap")
	if it.Status != Problem || len(it.Evidence) != 2 || it.Evidence[0].Site != "main.b" || it.Evidence[0].Bytes != 29*mb ||
		it.Evidence[1].Site != "main.c" || it.Evidence[1].Bytes != 7*mb {
		t.Errorf("heap from profiles: %s %q %+v; want a problem naming main.b (+29 MiB) and main.c (+7 MiB)", it.Status, it.Value, it.Evidence)
	}
}

// lock_contention: the mutex profile's delay gained per second between the
// first and last reads, against 100ms; n/a when the program records none.
func TestLockContentionItem(t *testing.T) {
	rate := int64(1)
	mutex := func(sec int64, delay int64, sites ...GoroutineSite) Event {
		return Event{Event: "contention_profile", PID: 7, Kind: "mutex", Time: time.Unix(100+sec, 0), Rate: &rate, DelayNs: delay, Sites: sites}
	}
	holder := func(delay int64) GoroutineSite {
		return GoroutineSite{Func: "main.hold", File: "/src/x.go", Line: 9, DelayNs: delay, Contentions: delay / 1e6}
	}
	for _, c := range []struct {
		evs  []Event
		want string
	}{
		{[]Event{mutex(0, 5e9, holder(5e9)), mutex(10, 5e9+2e9, holder(5e9+2e9))}, Problem}, // 200ms/s
		{[]Event{mutex(0, 5e9, holder(5e9)), mutex(10, 5e9+5e8, holder(5e9+5e8))}, OK},      // 50ms/s
		{[]Event{mutex(0, 0)}, NA},
		{[]Event{{Event: "contention_profile", PID: 7, Kind: "mutex", Unreadable: "the program records no such profile"}}, NA},
	} {
		r, _ := Analyze(append([]Event{withReads(attached(7))}, c.evs...), 7, Defaults())
		it := itemOf(t, r, "lock_contention")
		if it.Status != c.want {
			t.Errorf("%+v: %s %q %q, want %s", c.evs, it.Status, it.Value, it.Why, c.want)
		}
		if it.Status == Problem && (len(it.Evidence) != 1 || it.Evidence[0].Site != "main.hold" || it.Evidence[0].ValueNs != 2e9 || it.Evidence[0].Count != 2000) {
			t.Errorf("lock_contention evidence %+v, want main.hold with 2s over 2000 contentions", it.Evidence)
		}
	}
}
