package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// contentionBy sums a mutex or block profile's two values (contentions,
// delay ns) by the innermost function of the program's own code in each
// stack (above sync and the runtime).
func contentionBy(t *testing.T, path string) map[string][2]int64 {
	t.Helper()
	p := readProfile(t, path)
	if len(p.SampleType) < 2 || p.SampleType[0].Type != "contentions" || p.SampleType[1].Type != "delay" || p.SampleType[1].Unit != "nanoseconds" {
		t.Errorf("%s: sample types %v", path, p.SampleType)
	}
	out := map[string][2]int64{}
	for _, s := range p.Sample {
		fn := "?"
	stack:
		for _, l := range s.Location {
			for _, ln := range l.Line {
				if name := ln.Function.Name; strings.HasPrefix(name, "main.") {
					fn = name
					break stack
				}
			}
		}
		v := out[fn]
		v[0] += s.Value[0]
		v[1] += s.Value[1]
		out[fn] = v
	}
	return out
}

// TestContentionProfiles: mutextarget turns the runtime's mutex and block
// profiles on, contends a mutex in main.contend and waits on a channel in
// main.waitChan, then stops; gonetscope profile --kind mutex and --kind
// block read the records from its memory, and then the target writes its
// own pprof profiles. For main.contend (and main.waitChan in the block
// profile) the contentions must be equal and the delay within 1% (the same
// cycles, converted at the rate the target's runtime measured); the top
// function the same, and main.contend for the mutex profile. Stripped
// PIE, built with this Go and with Go 1.22, in parallel. A target that
// never turned them on gets one line saying so.
func TestContentionProfiles(t *testing.T) {
	t.Run("stripped-pie", func(t *testing.T) {
		t.Parallel()
		checkContention(t, buildTarget(t, "mutextarget", "-ldflags=-s -w", "-buildmode=pie"))
	})
	t.Run("go1.22-stripped-pie", func(t *testing.T) {
		t.Parallel()
		checkContention(t, buildTargetWith(t, "mutextarget", "go1.22.12", "-ldflags=-s -w", "-buildmode=pie"))
	})
	// The runtime has not measured its tick rate yet (nothing called for
	// it before gonetscope reads): gonetscope measures it from the
	// runtime's start marks and the TSC; the target's own profile, written
	// after, measures its own. Within 2%.
	t.Run("ticks-unmeasured", func(t *testing.T) {
		t.Parallel()
		checkContention(t, buildTarget(t, "mutextarget", "-ldflags=-s -w", "-buildmode=pie"), "-mutex-only")
	})
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		_, next := startTarget(t, exec.Command(buildTarget(t, "heaptarget")))
		pid := fmt.Sprint(int(next("ready")["pid"].(float64)))
		out, err := exec.Command(gonetscopeBin, "profile", "--pid", pid, "--kind", "mutex", "-o", filepath.Join(t.TempDir(), "m.pb.gz")).CombinedOutput()
		if _, ok := err.(*exec.ExitError); !ok || !strings.Contains(string(out), "no mutex profile: the program records no such profile") {
			t.Errorf("profile --kind mutex of a program without it: %v\n%s", err, out)
		}
	})
}

func checkContention(t *testing.T, bin string, args ...string) {
	stdin, next := startTarget(t, exec.Command(bin, args...))
	mutexOnly := len(args) > 0
	pid := fmt.Sprint(int(next("ready")["pid"].(float64)))
	io.WriteString(stdin, "go\n")
	next("contended")
	dir := t.TempDir()
	kinds, tolerance := []string{"mutex", "block"}, 0.01
	if mutexOnly {
		kinds, tolerance = []string{"mutex"}, 0.02
	}
	for _, kind := range kinds {
		// Ours first: the target's own profile has its runtime measure
		// its tick rate.
		ours := filepath.Join(dir, kind+".pb.gz")
		if b, err := exec.Command(gonetscopeBin, "profile", "--pid", pid, "--kind", kind, "-o", ours).CombinedOutput(); err != nil {
			t.Fatalf("gonetscope profile --kind %s: %v\n%s", kind, err, b)
		}
		own := filepath.Join(dir, kind+"-own.pb.gz")
		fmt.Fprintf(stdin, "profile %s %s\n", kind, own)
		if f := next("profile"); f["err"] != "<nil>" {
			t.Fatalf("the target's own %s profile: %v", kind, f["err"])
		}
		got, want := contentionBy(t, ours), contentionBy(t, own)
		t.Logf("%s: ours %v, the target's %v", kind, got, want)
		top := func(m map[string][2]int64) (best string) {
			for fn, v := range m {
				if best == "" || v[1] > m[best][1] {
					best = fn
				}
			}
			return best
		}
		if top(got) != top(want) || (kind == "mutex" && top(got) != "main.contend") {
			t.Errorf("%s: top function ours %q, the target's %q (mutex: want main.contend)", kind, top(got), top(want))
		}
		// The functions that contended while the target worked; its
		// main goroutine may add a contention of its own while it
		// answers the profile command, between the two reads.
		fns := []string{"main.contend"}
		if kind == "block" {
			fns = append(fns, "main.waitChan")
		}
		for _, fn := range fns {
			g, w := got[fn], want[fn]
			if w[0] == 0 || g[0] != w[0] || math.Abs(float64(g[1]-w[1])) > tolerance*float64(w[1]) {
				t.Errorf("%s profile, %s: ours %d contentions, %d ns; the target's %d, %d ns", kind, fn, g[0], g[1], w[0], w[1])
			}
		}
	}
}

// TestContentionProbes: profile --kind block --contention measures, with
// uprobes, the same blocking the target's own block profile records:
// mutextarget contends a mutex in main.contend and waits on a channel in
// main.waitChan while gonetscope profiles it, then writes its own block
// profile (every event: SetBlockProfileRate(1)). The top function by
// delay must be the same (main.contend), each function's delay within
// 10% (the runtime stamps a waiter when it is made runnable, as the ready
// probe does), and main.waitChan's contentions equal. Stripped PIE, built
// with this Go and with Go 1.22, in parallel. With the target's own
// profiles off (-mutex-only: no block profile), the probes still see both
// functions.
//
// The targets are built in parallel but measured one at a time. The
// runtime times a sync.Mutex wait from its semacquire call to the last
// wake-up, and we time each park to its wake-up: when a woken waiter
// finds the semaphore taken again and parks a second time in the same
// call, the runtime counts the time it spent waiting for a CPU in
// between and we do not. Three spinning targets on two CPUs made that
// time 10% of the total.
func TestContentionProbes(t *testing.T) {
	var measuring sync.Mutex
	check := func(t *testing.T, bin string, args ...string) {
		measuring.Lock()
		defer measuring.Unlock()
		checkContentionProbes(t, bin, args...)
	}
	t.Run("stripped-pie", func(t *testing.T) {
		t.Parallel()
		check(t, buildTarget(t, "mutextarget", "-ldflags=-s -w", "-buildmode=pie"))
	})
	t.Run("go1.22-stripped-pie", func(t *testing.T) {
		t.Parallel()
		check(t, buildTargetWith(t, "mutextarget", "go1.22.12", "-ldflags=-s -w", "-buildmode=pie"))
	})
	t.Run("block-profile-off", func(t *testing.T) {
		t.Parallel()
		check(t, buildTarget(t, "mutextarget"), "-mutex-only")
	})
}

func checkContentionProbes(t *testing.T, bin string, args ...string) {
	stdin, next := startTarget(t, exec.Command(bin, args...))
	pid := fmt.Sprint(int(next("ready")["pid"].(float64)))
	dir := t.TempDir()
	ours, ready := filepath.Join(dir, "block.pb.gz"), filepath.Join(dir, "ready")
	prof := exec.Command(gonetscopeBin, "profile", "--pid", pid, "--kind", "block", "--contention", "--duration", "5m", "--ready-file", ready, "-o", ours)
	var stderr strings.Builder
	prof.Stderr = &stderr
	if err := prof.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- prof.Wait() }()
	t.Cleanup(func() { prof.Process.Kill() })
	for deadline := time.Now().Add(readyTimeout()); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("gonetscope profile --contention: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gonetscope profile --contention not ready after %v\n%s", readyTimeout(), stderr.String())
		}
	}
	io.WriteString(stdin, "go\n")
	next("contended")
	prof.Process.Signal(os.Interrupt)
	if err := <-exited; err != nil {
		t.Fatalf("gonetscope profile --contention: %v\n%s", err, stderr.String())
	}
	got := contentionBy(t, ours)
	t.Logf("ours: %v", got)
	if len(args) > 0 {
		for _, fn := range []string{"main.contend", "main.waitChan"} {
			if got[fn][0] == 0 || got[fn][1] == 0 {
				t.Errorf("%s: no blocking seen, with the target's block profile off: %v", fn, got)
			}
		}
		return
	}
	own := filepath.Join(dir, "block-own.pb.gz")
	fmt.Fprintf(stdin, "profile block %s\n", own)
	if f := next("profile"); f["err"] != "<nil>" {
		t.Fatalf("the target's own block profile: %v", f["err"])
	}
	want := contentionBy(t, own)
	t.Logf("the target's: %v", want)
	top := func(m map[string][2]int64) (best string) {
		for fn, v := range m {
			if best == "" || v[1] > m[best][1] {
				best = fn
			}
		}
		return best
	}
	if top(got) != "main.contend" || top(want) != "main.contend" {
		t.Errorf("top function by delay: ours %q, the target's %q, want main.contend", top(got), top(want))
	}
	for _, fn := range []string{"main.contend", "main.waitChan"} {
		g, w := got[fn], want[fn]
		if w[1] == 0 || math.Abs(float64(g[1]-w[1])) > 0.10*float64(w[1]) {
			t.Errorf("%s: ours %d ns, the target's %d ns: more than 10%% apart", fn, g[1], w[1])
		}
	}
	if g, w := got["main.waitChan"][0], want["main.waitChan"][0]; g != w {
		t.Errorf("main.waitChan: ours %d contentions, the target's %d", g, w)
	}
}

// contentionEv is a contention event.
type contentionEv struct {
	Event        string `json:"event"`
	Goid         uint64 `json:"goid"`
	WaitReason   string `json:"wait_reason"`
	DelayNs      int64  `json:"delay_ns"`
	SchedDelayNs int64  `json:"sched_delay_ns"`
	Stack        []struct {
		Func string `json:"func"`
	} `json:"stack"`
}

// TestContentionEvents: trace --contention --min-block 50ms on
// mutextarget writes exactly one contention event: its main goroutine
// (goid 1) waiting in main.main for the contending goroutines
// (sync.WaitGroup.Wait, about 100 ms; every other block there is shorter),
// with a delay within 5% of what the target's own block profile records
// for main.main (that wait and a receive of a few µs).
func TestContentionEvents(t *testing.T) {
	stdin, next := startTarget(t, exec.Command(buildTarget(t, "mutextarget")))
	pid := int(next("ready")["pid"].(float64))
	out := filepath.Join(t.TempDir(), "events")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	tracer, done, errOut := startGonetscopeTo(t, f, pid, "trace", "--contention", "--min-block", "50ms")
	io.WriteString(stdin, "go\n")
	next("contended")
	own := filepath.Join(t.TempDir(), "block-own.pb.gz")
	fmt.Fprintf(stdin, "profile block %s\n", own)
	if f := next("profile"); f["err"] != "<nil>" {
		t.Fatalf("the target's own block profile: %v", f["err"])
	}
	evs := waitEvents(t, out, func(evs []contentionEv) bool {
		return slices.ContainsFunc(evs, func(e contentionEv) bool { return e.Event == "contention" })
	})
	time.Sleep(200 * time.Millisecond) // a second one would be out by now
	stopGonetscope(t, tracer, done, errOut, os.Interrupt, 10*time.Second)
	evs = slices.DeleteFunc(eventsIn[contentionEv](t, out), func(e contentionEv) bool { return e.Event != "contention" })
	want := contentionBy(t, own)["main.main"]
	t.Logf("contention events %+v; the target's block profile for main.main: %v", evs, want)
	if len(evs) != 1 {
		t.Fatalf("%d contention events, want 1", len(evs))
	}
	e := evs[0]
	inMain := slices.ContainsFunc(e.Stack, func(f struct {
		Func string `json:"func"`
	}) bool {
		return f.Func == "main.main"
	})
	if e.Goid != 1 || !inMain || (e.WaitReason != "sync.WaitGroup.Wait" && e.WaitReason != "semacquire") {
		t.Errorf("contention event %+v: want goid 1 in main.main, waiting in sync.WaitGroup.Wait", e)
	}
	if math.Abs(float64(e.DelayNs-want[1])) > 0.05*float64(want[1]) {
		t.Errorf("delay %d ns, the target's own block profile %d ns for main.main: more than 5%% apart", e.DelayNs, want[1])
	}
}
