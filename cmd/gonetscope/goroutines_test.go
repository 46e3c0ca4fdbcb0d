package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestGoroutineLeak: a target leaks goroutines at one go statement while it
// churns many short-lived ones at another. goroutine_leak names the leaking
// function and the file:line of its go statement, exactly as the target
// reports them, and never the churning site; the last goroutines event
// counts exactly the goroutines the target leaked, and none of the churned.
// The target is built stripped and position-independent, as production
// binaries are.
func TestGoroutineLeak(t *testing.T) {
	bin := buildTarget(t, "leaktarget", "-ldflags=-s -w", "-buildmode=pie")
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) { checkGoroutineLeak(t, iso, bin) })
	}
}

func checkGoroutineLeak(t *testing.T, iso isolation, bin string) {
	r := traceRunOpts(t, []string{bin, "-leak", "20", "-churn", "500", "-tick", "100ms", "-duration", "2500ms"}, nil,
		[]string{"--goroutines", "--goroutine-interval", "300ms"}, traceOpts{target: iso})
	if a := r.of("attached"); len(a) != 1 || len(featureLimits(a[0].Limits)) != 0 || a[0].Hooks["goroutines"] != "uprobe" {
		t.Fatalf("attached: %+v", a)
	}
	sites := r.factsOf("sites")
	if len(sites) != 1 {
		t.Fatalf("target reported %+v", r.facts)
	}
	f := sites[0]
	leaks := r.of("goroutine_leak")
	if len(leaks) == 0 {
		t.Fatalf("no goroutine_leak event; goroutines events: %+v", r.of("goroutines"))
	}
	for _, l := range leaks {
		if l.Site != f.LeakSite || l.CreatedAt != f.LeakAt || l.CreatedBy != "main.main" {
			t.Errorf("goroutine_leak site %q created at %q by %q, want %q at %q by main.main", l.Site, l.CreatedAt, l.CreatedBy, f.LeakSite, f.LeakAt)
		}
		if len(l.Growth) != 3 || len(l.OldestGoids) != 5 || l.Live <= 0 {
			t.Errorf("goroutine_leak: %+v", l)
		}
		// They block in <-never.
		if len(l.ParkedOn) != 5 || slices.ContainsFunc(l.ParkedOn, func(p string) bool { return p != "chan receive" }) {
			t.Errorf("goroutine_leak parked_on %q, want chan receive for each", l.ParkedOn)
		}
	}
	g := r.of("goroutines")
	if len(g) < 4 {
		t.Fatalf("%d goroutines events in 2.5s at a 300ms interval", len(g))
	}
	last := g[len(g)-1]
	i := slices.IndexFunc(last.Sites, func(s gsite) bool { return s.Site == f.LeakSite })
	j := slices.IndexFunc(last.Sites, func(s gsite) bool { return s.Site == f.ChurnSite })
	if i < 0 || j < 0 {
		t.Fatalf("last goroutines event lacks the sites: %+v", last)
	}
	if s := last.Sites[i]; s.Live != int64(f.Leaked) || s.Created != f.Leaked || s.Exited != 0 || s.CreatedAt != f.LeakAt {
		t.Errorf("leak site %+v, the target leaked %d at %s", s, f.Leaked, f.LeakAt)
	}
	if s := last.Sites[j]; s.Live != 0 || s.Created != f.Churned || s.Exited != f.Churned || s.CreatedAt != f.ChurnAt {
		t.Errorf("churn site %+v, the target ran %d to completion at %s", s, f.Churned, f.ChurnAt)
	}
}

// TestGoroutinesSteady: many short-lived goroutines (up to 300ms each,
// thousands alive at a time, their number going up and down) and no leak:
// no goroutine_leak event, and the churn is counted exactly.
func TestGoroutinesSteady(t *testing.T) {
	bin := buildTarget(t, "leaktarget")
	r := traceCommand(t, []string{bin, "-churn", "200", "-life", "300ms", "-tick", "20ms", "-duration", "2500ms"}, nil,
		[]string{"--goroutines", "--goroutine-interval", "250ms"})
	if l := r.of("goroutine_leak"); len(l) != 0 {
		t.Errorf("goroutine_leak on a steady target: %+v", l)
	}
	f := r.factsOf("sites")[0]
	g := r.of("goroutines")
	last := g[len(g)-1]
	if j := slices.IndexFunc(last.Sites, func(s gsite) bool { return s.Site == f.ChurnSite }); j < 0 || last.Sites[j].Created != f.Churned {
		t.Errorf("last goroutines event %+v, the target churned %d at %s", last, f.Churned, f.ChurnAt)
	}
}

// BenchmarkGoroutineCreation measures what a goroutine creation (and its
// exit) costs the target: untraced, traced without --goroutines, and
// traced with it, interleaved in one run. Reported as ns/goroutine per mode.
//
//	go test -c -o /tmp/g.test ./cmd/gonetscope && /tmp/g.test -test.run '^$' -test.bench GoroutineCreation -test.benchtime 3x
func BenchmarkGoroutineCreation(b *testing.B) {
	bin := buildTarget(b, "leaktarget")
	modes := []struct {
		name  string
		trace []string // nil: untraced
	}{
		{"untraced", nil},
		{"traced", []string{}},
		{"traced-goroutines", []string{"--goroutines"}},
	}
	sums := make([]float64, len(modes))
	for i := 0; i < b.N; i++ {
		for m, mode := range modes {
			sums[m] += float64(benchGoroutines(b, bin, mode.trace))
		}
	}
	for m, mode := range modes {
		b.ReportMetric(sums[m]/float64(b.N), "ns/goroutine-"+mode.name)
	}
}

func benchGoroutines(b *testing.B, bin string, trace []string) int64 {
	target := exec.Command(bin, "-bench", "300000")
	stdin, _ := target.StdinPipe()
	stdout, _ := target.StdoutPipe()
	if err := target.Start(); err != nil {
		b.Fatal(err)
	}
	defer target.Wait()
	dec := json.NewDecoder(stdout)
	var ready struct{ PID int }
	if err := dec.Decode(&ready); err != nil {
		b.Fatal(err)
	}
	if trace != nil {
		defer benchTracer(b, ready.PID, trace...)()
	}
	io.WriteString(stdin, "go\n")
	var res struct {
		NsPerGoroutine int64 `json:"ns_per_goroutine"`
	}
	if err := dec.Decode(&res); err != nil {
		b.Fatal(err)
	}
	return res.NsPerGoroutine
}

// benchTracer starts `gonetscope trace` on pid with its events discarded,
// for a benchmark, and returns what stops it.
func benchTracer(b *testing.B, pid int, args ...string) (stop func()) {
	readyFile := filepath.Join(b.TempDir(), "ready")
	tr := exec.Command(gonetscopeBin, append([]string{"trace", "--pid", fmt.Sprint(pid), "--ready-file", readyFile, "--output", os.DevNull}, args...)...)
	if err := tr.Start(); err != nil {
		b.Fatal(err)
	}
	stop = func() { tr.Process.Signal(syscall.SIGTERM); tr.Wait() }
	for deadline := time.Now().Add(readyTimeout()); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(readyFile); err == nil {
			return stop
		}
		if time.Now().After(deadline) {
			stop()
			b.Fatalf("gonetscope not ready after %v", readyTimeout())
		}
	}
}
