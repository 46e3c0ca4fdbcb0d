package main

import (
	"bytes"
	"fmt"
	goversion "go/version"
	"math"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gonetscope/gonetscope/pkg/metrics"
)

// gcEv is a gc event as gonetscope writes it.
type gcEv struct {
	Event        string   `json:"event"`
	PID          int      `json:"pid"`
	NumGC        uint32   `json:"num_gc"`
	NumForcedGC  uint32   `json:"num_forced_gc"`
	PauseTotalNs uint64   `json:"pause_total_ns"`
	Cycles       uint32   `json:"cycles"`
	PausesNs     []uint64 `json:"pauses_ns"`
	PausesMissed uint32   `json:"pauses_missed"`
	HeapBefore   *uint64  `json:"heap_before"`
	HeapAfter    *uint64  `json:"heap_after"`
	HeapGoal     uint64   `json:"heap_goal"`
	GOGC         int32    `json:"gogc"`
	MemoryLimit  int64    `json:"memory_limit"`
	TotalAlloc   uint64   `json:"total_alloc"`
}

// TestGCEvents: gonetscope trace attaches to heaptarget (GOGC 137, a 3
// GiB memory limit), which then runs 3 and then 5 runtime.GC() and
// reports its own runtime.ReadMemStats each time, before and after. Over
// the window, the gc events must list every cycle the target ran exactly
// once, each with the pause the target's own PauseNs ring holds for it,
// and the last one's num_gc and pause_total_ns must be the target's
// NumGC and PauseTotalNs; the sum of the pauses listed must be the rise of
// PauseTotalNs. go_gc_duration_seconds scraped meanwhile has the target's
// count, sum and pause quantiles exactly. The target is idle between its
// commands, so nothing else runs a cycle. Plain and stripped PIE.
func TestGCEvents(t *testing.T) {
	for i, tc := range heaptargetBuilds()[:2] {
		// One gc event per read that saw cycles (a summary interval of 0
		// leaves the health interval), or gathered over an hour: then
		// the first read that sees cycles writes them at once, and
		// gonetscope's end the rest.
		every := []string{"0", "1h"}[i]
		t.Run(tc.name+"-every-"+every, func(t *testing.T) { checkGCEvents(t, tc.build(t), every) })
	}
}

func checkGCEvents(t *testing.T, bin, every string) {
	stdin, next := startTargetOf[memStats](t, exec.Command(bin))
	pid := next().PID
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var out bytes.Buffer
	tr, done, errOut := startGonetscopeTo(t, &out, pid, "trace", "--events", "gc", "--health-interval", "50ms",
		"--summary-interval", every, "--metrics-addr", addr)
	ask := func(cmd string) memStats {
		fmt.Fprintln(stdin, cmd)
		own := next()
		if own.Op != "gc" {
			t.Fatalf("the target said %+v, want op gc", own)
		}
		return own
	}
	before := ask("gc 0")
	ask("gc 3")
	// Let a poll see the first three on their own.
	time.Sleep(200 * time.Millisecond)
	own := ask("gc 5")

	// The metrics, read while the target waits.
	families := metricFamilies(t, "/metrics", scrape(t, "http://"+addr+"/metrics"))
	var pauses []float64
	for i := range min(own.NumGC, 256) {
		pauses = append(pauses, float64(own.PauseNs[i])/1e9)
	}
	want := metrics.PauseQuantiles(pauses)
	found := false
	for _, m := range families["gonetscope_go_gc_duration_seconds"].GetMetric() {
		if !matches(m, map[string]string{"pid": fmt.Sprint(pid)}) {
			continue
		}
		found = true
		s := m.GetSummary()
		if s.GetSampleCount() != uint64(own.NumGC) || s.GetSampleSum() != float64(own.PauseTotalNs)/1e9 {
			t.Errorf("go_gc_duration_seconds count %d sum %v; the target's NumGC %d PauseTotalNs %d", s.GetSampleCount(), s.GetSampleSum(), own.NumGC, own.PauseTotalNs)
		}
		for _, q := range s.GetQuantile() {
			if q.GetValue() != want[q.GetQuantile()] {
				t.Errorf("go_gc_duration_seconds{quantile=%v} = %v, the target's pauses say %v", q.GetQuantile(), q.GetValue(), want[q.GetQuantile()])
			}
		}
		if len(s.GetQuantile()) != 5 {
			t.Errorf("go_gc_duration_seconds has %d quantiles, want 5", len(s.GetQuantile()))
		}
	}
	if !found {
		t.Errorf("no gonetscope_go_gc_duration_seconds for PID %d", pid)
	}
	for name, v := range map[string]float64{"gonetscope_go_gogc": float64(own.GOGC), "gonetscope_go_memory_limit_bytes": float64(own.MemoryLimit),
		"gonetscope_go_heap_goal_bytes": float64(own.NextGC)} {
		ms := families[name].GetMetric()
		if len(ms) != 1 || ms[0].GetGauge().GetValue() != v {
			t.Errorf("%s: %v, the target's %v", name, ms, v)
		}
	}

	// gonetscope's last read is at its end, with the target still there.
	stopGonetscope(t, tr, done, errOut, syscall.SIGTERM, 20*time.Second)
	var evs []gcEv
	for _, e := range parseEvents[gcEv](t, out.Bytes()) {
		if e.Event == "gc" {
			evs = append(evs, e)
		}
	}
	// Gathered over an hour: the first read that saw cycles writes them
	// at once (the first burst, if a read came between the bursts), the
	// rest wait for the end.
	if len(evs) == 0 || (every == "1h" && (len(evs) > 2 || (len(evs) == 2 && evs[0].NumGC != before.NumGC+3))) {
		t.Fatalf("%d gc events for 8 cycles in bursts of 3 and 5, one at most per %s: %+v", len(evs), every, evs)
	}
	t.Logf("%d gc events; the target: NumGC %d -> %d, PauseTotalNs %d -> %d", len(evs), before.NumGC, own.NumGC, before.PauseTotalNs, own.PauseTotalNs)
	wantC := before.NumGC + 1 // the want cycle an event must list
	var sum uint64
	for _, e := range evs {
		if e.PausesMissed != 0 || int(e.Cycles) != len(e.PausesNs) || e.NumGC != wantC-1+e.Cycles {
			t.Errorf("gc event %+v: wantC the cycles from %d on, each with its pause", e, wantC)
		}
		for i, ns := range e.PausesNs {
			c := wantC + uint32(i) // its cycle, 1-based: the runtime's PauseNs[(c-1)%256]
			if ns != own.PauseNs[(c-1)%256] {
				t.Errorf("cycle %d: pause %d ns, the target's PauseNs %d", c, ns, own.PauseNs[(c-1)%256])
			}
			sum += ns
		}
		wantC = e.NumGC + 1
		if e.GOGC != 137 || e.MemoryLimit != 3<<30 || e.TotalAlloc == 0 {
			t.Errorf("gc event gogc %d memory_limit %d total_alloc %d; the target set 137, %d", e.GOGC, e.MemoryLimit, e.TotalAlloc, int64(3<<30))
		}
	}
	last := evs[len(evs)-1]
	if last.NumGC != own.NumGC || last.NumForcedGC != own.NumForcedGC || last.PauseTotalNs != own.PauseTotalNs {
		t.Errorf("last gc event num_gc %d num_forced_gc %d pause_total_ns %d; the target's %d %d %d",
			last.NumGC, last.NumForcedGC, last.PauseTotalNs, own.NumGC, own.NumForcedGC, own.PauseTotalNs)
	}
	if sum != own.PauseTotalNs-before.PauseTotalNs {
		t.Errorf("the pauses listed sum to %d ns, the target's PauseTotalNs rose by %d", sum, own.PauseTotalNs-before.PauseTotalNs)
	}
	if last.HeapGoal != own.NextGC {
		t.Errorf("last heap_goal %d, the target's NextGC %d", last.HeapGoal, own.NextGC)
	}
	// After a forced GC the marked heap is HeapAlloc, give or take what
	// was allocated since.
	if last.HeapAfter == nil || last.HeapBefore == nil || math.Abs(float64(*last.HeapAfter)-float64(own.HeapAlloc)) > 0.05*float64(own.HeapAlloc) {
		t.Errorf("last heap_before %v heap_after %v; the target's HeapAlloc %d", last.HeapBefore, last.HeapAfter, own.HeapAlloc)
	}
	if !slices.IsSortedFunc(evs, func(a, b gcEv) int { return int(a.NumGC) - int(b.NumGC) }) {
		t.Errorf("gc events out of order: %+v", evs)
	}
}

// withoutOldGC leaves out of limits the notes that the runtime reads (gc
// events, the goroutine scan, no_deadline) are off for a Go version before
// 1.20, whose symbol table or GC records gonetscope does not read without
// DWARF and symbols: expected there (see the README's Go versions).
func withoutOldGC(goVersion string, limits []string) []string {
	if goversion.Compare(goversion.Lang(goVersion), "go1.20") >= 0 {
		return limits
	}
	return slices.DeleteFunc(slices.Clone(limits), func(l string) bool {
		return strings.HasPrefix(l, "no gc events") || strings.HasPrefix(l, "no goroutine scan") || strings.HasPrefix(l, "no no_deadline")
	})
}
