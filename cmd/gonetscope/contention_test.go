package main

import (
	"fmt"
	"io"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// contentionBy sums a mutex or block profile's two values (contentions,
// delay ns) by the innermost function of the program's own code in each
// stack (above sync and the runtime).
func contentionBy(t *testing.T, path string) map[string][2]int64 {
	t.Helper()
	p := readProfile(t, path)
	if len(p.SampleType) != 2 || p.SampleType[0].Type != "contentions" || p.SampleType[1].Type != "delay" || p.SampleType[1].Unit != "nanoseconds" {
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
