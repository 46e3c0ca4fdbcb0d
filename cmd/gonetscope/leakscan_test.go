package main

import (
	"bytes"
	"io"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scanCounts is what scantarget reports of itself.
type scanCounts struct {
	Op           string `json:"op"`
	PID          int    `json:"pid"`
	NumGoroutine int64  `json:"num_goroutine"`
	Pre, Leaked  int64
	PreAt        string `json:"pre_at"`
	LeakAt       string `json:"leak_at"`
	OldestLeaked uint64 `json:"oldest_leaked_goid"`
}

// TestLeakScan: scantarget parks 20,000 goroutines (go parkedPre(i))
// before gonetscope attaches, then leaks 10 per 100 ms (go leaked(i, wg))
// for 1.6 s and reports its own counts from runtime.NumGoroutine and its
// goroutine profile, and stays idle. gonetscope trace, without
// --goroutines (no uprobe), scans the goroutine list every 200 ms. Its
// last goroutines event (taken at its end, the target idle) must count
// exactly what the target counts: live = NumGoroutine, the 20,000 and the
// leaked per site, each site named by the function its go statement
// started (not the compiler's gowrap closure) with the statement's
// file:line. goroutine_leak must name the leaking site only, with the
// target's oldest leaked goroutine first and its stack. Stripped PIE.
func TestLeakScan(t *testing.T) {
	bin := buildTarget(t, "scantarget", "-ldflags=-s -w", "-buildmode=pie")
	stdin, next := startTargetOf[scanCounts](t, exec.Command(bin, "-pre", "20000"))
	ready := next()
	var out bytes.Buffer
	tr, done, errOut := startGonetscopeTo(t, &out, ready.PID, "trace", "--events", "goroutines,goroutine_leak",
		"--goroutine-interval", "200ms", "--summary-interval", "0")
	io.WriteString(stdin, "go\n")
	own := next()
	if own.Op != "counts" || own.Pre != 20000 || own.Leaked != 160 {
		t.Fatalf("the target said %+v", own)
	}
	stopGonetscope(t, tr, done, errOut, syscall.SIGTERM, 20*time.Second)
	var counts, leaks []ev
	for _, e := range parseEvents[ev](t, out.Bytes()) {
		switch e.Event {
		case "goroutines":
			counts = append(counts, e)
		case "goroutine_leak":
			leaks = append(leaks, e)
		}
	}
	if len(counts) < 2 {
		t.Fatalf("%d goroutines events", len(counts))
	}
	for _, c := range counts {
		t.Logf("goroutines: live %d system %d, scan %v", c.Live, c.System, time.Duration(c.ScanNs))
	}
	// The first scan, right after the attach, sees the 20,000 already.
	site := func(e ev, fn string) gsite {
		i := slices.IndexFunc(e.Sites, func(s gsite) bool { return s.Site == fn })
		if i < 0 {
			t.Fatalf("no site %s in %+v", fn, e.Sites)
		}
		return e.Sites[i]
	}
	if s := site(counts[0], "main.parkedPre"); s.Live != 20000 || s.CreatedAt != own.PreAt || s.CreatedBy != "main.main" {
		t.Errorf("first scan: %+v, want 20000 live created at %s by main.main", s, own.PreAt)
	}
	last := counts[len(counts)-1]
	if last.Live != own.NumGoroutine {
		t.Errorf("last goroutines event: live %d, the target's NumGoroutine %d", last.Live, own.NumGoroutine)
	}
	if s := site(last, "main.parkedPre"); s.Live != own.Pre || s.CreatedAt != own.PreAt {
		t.Errorf("last scan: %+v, the target's profile: %d at %s", s, own.Pre, own.PreAt)
	}
	if s := site(last, "main.leaked"); s.Live != own.Leaked || s.CreatedAt != own.LeakAt || s.CreatedBy != "main.leakLoop" {
		t.Errorf("last scan: %+v, the target's profile: %d at %s by main.leakLoop", s, own.Leaked, own.LeakAt)
	}
	for _, e := range append(counts, leaks...) {
		for _, s := range append(e.Sites, gsite{Site: e.Site}) {
			if strings.Contains(s.Site, "gowrap") {
				t.Errorf("a site named by its wrapper: %+v", s)
			}
		}
		if e.Created != nil || slices.ContainsFunc(e.Sites, func(s gsite) bool { return s.Created != 0 }) {
			t.Errorf("lifecycle counts without --goroutines: %+v", e)
		}
	}
	if len(leaks) == 0 {
		t.Fatalf("no goroutine_leak")
	}
	for _, l := range leaks {
		if l.Site != "main.leaked" || l.CreatedAt != own.LeakAt || len(l.OldestGoids) != 5 || l.OldestGoids[0] != own.OldestLeaked ||
			l.Goid == nil || *l.Goid != own.OldestLeaked || len(l.Growth) != 3 {
			t.Errorf("goroutine_leak %+v; the target leaked at %s, its oldest leaked goroutine %d", l, own.LeakAt, own.OldestLeaked)
		}
		if !slices.ContainsFunc(l.Stack, func(f frame) bool { return f.Func == "main.leaked" }) || slices.ContainsFunc(l.ParkedOn, func(p string) bool { return p != "chan receive" }) {
			t.Errorf("goroutine_leak stack %+v parked on %q: want main.leaked's, on chan receive", l.Stack, l.ParkedOn)
		}
	}
}
