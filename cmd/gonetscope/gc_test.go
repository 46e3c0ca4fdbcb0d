package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"testing"
)

// TestGCStats: heaptarget sets GOGC 137 and a 3 GiB memory limit, runs N
// runtime.GC(), reports its own runtime.ReadMemStats and waits on its
// stdin; gonetscope gc reads the GC's records from outside meanwhile.
// The target is stopped in a known state, so the cycle count, forced
// cycles, total pause, the pause ring (durations and end times), GOGC and
// the memory limit must be equal, exactly; the heap goal must be the
// target's NextGC (no memory limit binds, no runway applies after a
// forced GC). Twice: after 3 and after 5 more cycles. Built plain,
// stripped PIE, with Go 1.27 and Go 1.22 stripped PIE and with Go 1.21;
// and stripped PIE with each of GONETSCOPE_TEST_TOOLCHAINS.
func TestGCStats(t *testing.T) {
	for _, tc := range heaptargetBuilds() {
		t.Run(tc.name, func(t *testing.T) { checkGCStats(t, tc.build(t)) })
	}
}

// memStats is what heaptarget reports of its runtime.ReadMemStats.
type memStats struct {
	Op           string      `json:"op"`
	PID          int         `json:"pid"`
	NumGC        uint32      `json:"num_gc"`
	NumForcedGC  uint32      `json:"num_forced_gc"`
	PauseTotalNs uint64      `json:"pause_total_ns"`
	PauseNs      [256]uint64 `json:"pause_ns"`
	PauseEnd     [256]uint64 `json:"pause_end"`
	NextGC       uint64      `json:"next_gc"`
	HeapAlloc    uint64      `json:"heap_alloc"`
	GOGC         int32       `json:"gogc"`
	MemoryLimit  int64       `json:"memory_limit"`
}

func checkGCStats(t *testing.T, bin string) {
	stdin, next := startTargetOf[memStats](t, exec.Command(bin))
	ready := next()
	for _, n := range []int{3, 5} {
		fmt.Fprintf(stdin, "gc %d\n", n)
		own := next()
		if own.Op != "gc" {
			t.Fatalf("the target said %+v, want op gc", own)
		}
		cmd := exec.Command(gonetscopeBin, "gc", "--pid", fmt.Sprint(ready.PID), "--json", "--pauses", "256")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gonetscope gc: %v\n%s", err, stderr.String())
		}
		var ours gcJSON
		if err := json.Unmarshal(out, &ours); err != nil {
			t.Fatalf("gonetscope gc --json: %v\n%s", err, out)
		}
		t.Logf("after %d more: ours num_gc %d pause_total_ns %d gogc %d memory_limit %d heap_goal %d heap_marked %d; the target's %d %d %d %d NextGC %d HeapAlloc %d",
			n, ours.NumGC, ours.PauseTotalNs, ours.GOGC, ours.MemoryLimit, ours.HeapGoal, ours.HeapMarked,
			own.NumGC, own.PauseTotalNs, own.GOGC, own.MemoryLimit, own.NextGC, own.HeapAlloc)
		check := func(what string, got, want any) {
			if got != want {
				t.Errorf("%s: ours %v, the target's %v", what, got, want)
			}
		}
		check("num_gc", ours.NumGC, own.NumGC)
		check("num_forced_gc", ours.NumForcedGC, own.NumForcedGC)
		check("pause_total_ns", ours.PauseTotalNs, own.PauseTotalNs)
		check("gogc", ours.GOGC, own.GOGC)
		check("memory_limit", ours.MemoryLimit, own.MemoryLimit)
		check("heap_goal (NextGC)", ours.HeapGoal, own.NextGC)
		check("pauses", len(ours.Pauses), int(min(own.NumGC, 256)))
		var sum uint64
		for i, p := range ours.Pauses {
			at := (own.NumGC - 1 - uint32(i)) % 256
			sum += p.Ns
			if p.Ns != own.PauseNs[at] || p.EndUnixNs != own.PauseEnd[at] {
				t.Errorf("pause %d (PauseNs[%d]): ours %+v, the target's %d ending %d", i, at, p, own.PauseNs[at], own.PauseEnd[at])
			}
		}
		if own.NumGC <= 256 {
			check("sum of the pauses", sum, own.PauseTotalNs)
		}
		// HeapAlloc is summed from per-P counters; after a forced GC
		// it is the marked heap give or take what was allocated since.
		if d := math.Abs(float64(ours.HeapMarked) - float64(own.HeapAlloc)); d > 0.05*float64(own.HeapAlloc) {
			t.Errorf("heap_marked %d, the target's HeapAlloc %d: more than 5%% apart", ours.HeapMarked, own.HeapAlloc)
		}
	}
}

// TestGCText: gc without --json names what it shows.
func TestGCText(t *testing.T) {
	_, next := startTarget(t, exec.Command(buildTarget(t, "heaptarget")))
	ready := next("ready")
	out, err := exec.Command(gonetscopeBin, "gc", "--pid", fmt.Sprint(int(ready["pid"].(float64)))).CombinedOutput()
	if err != nil {
		t.Fatalf("gonetscope gc: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	for _, want := range []string{"GC cycles ", "pause total ", "GOGC           137", "memory limit   3221225472 bytes", "heap goal "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}
