package main

import (
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

type deadlineReader struct {
	Goid        uint64 `json:"goid"`
	FD          int    `json:"fd"`
	Lport       int    `json:"lport"`
	Rport       int    `json:"rport"`
	CreatedAt   string `json:"created_at"`
	HasDeadline bool   `json:"has_deadline"`
}

// TestNoDeadline: deadlinetarget parks one goroutine reading a connection
// with no deadline and another reading one with a deadline an hour away
// (their peers never send), and a third in Accept on the listener, which
// has no deadline either. With --no-deadline-after 2s, gonetscope must
// write exactly one no_deadline, for the first: the goroutine id, fd and
// ports the target reports, mode read, parked at least 2 s, its stack
// through main.readNoDeadline and the go statement that started it; and
// none for the second or the accept loop, over several more checks.
// Stripped PIE, so the pollDesc layout comes from the version table: built
// with this Go, with Go 1.27, and with Go 1.21 (the first with a tagged
// epoll data, 19 tag bits), in parallel; and with each of
// GONETSCOPE_TEST_TOOLCHAINS.
func TestNoDeadline(t *testing.T) {
	cases := []struct{ name, toolchain string }{{"stripped-pie", ""}, {"go1.27-stripped-pie", "go1.27.3"}, {"go1.21-stripped-pie", "go1.21.13"}}
	for _, v := range extraToolchains() { // GONETSCOPE_TEST_TOOLCHAINS, by hand
		cases = append(cases, struct{ name, toolchain string }{v + "-stripped-pie", v})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.toolchain == "" {
				checkNoDeadline(t, buildTarget(t, "deadlinetarget", "-ldflags=-s -w", "-buildmode=pie"))
			} else {
				checkNoDeadline(t, buildTargetWith(t, "deadlinetarget", tc.toolchain, "-ldflags=-s -w", "-buildmode=pie"))
			}
		})
	}
}

func checkNoDeadline(t *testing.T, bin string) {
	stdin, next := startTarget(t, exec.Command(bin))
	pid := int(next("ready")["pid"].(float64))
	out := filepath.Join(t.TempDir(), "events.jsonl")
	tr, done, errOut := startGonetscopeTo(t, nil, pid, "trace", "--output", out, "--events", "no_deadline",
		"--no-deadline-after", "2s", "--summary-interval", "300ms")
	io.WriteString(stdin, "go\n")
	var readers []deadlineReader
	for {
		f := next("")
		if f["op"] == "parked" {
			break
		}
		r := f["reader"].(map[string]any)
		readers = append(readers, deadlineReader{Goid: uint64(r["goid"].(float64)), FD: int(r["fd"].(float64)),
			Lport: int(r["lport"].(float64)), Rport: int(r["rport"].(float64)), CreatedAt: r["created_at"].(string), HasDeadline: r["has_deadline"].(bool)})
	}
	if len(readers) != 2 || readers[0].HasDeadline || !readers[1].HasDeadline {
		t.Fatalf("the target said %+v", readers)
	}
	no := readers[0]
	count := func(evs []ev, kind string) (n int) {
		for _, e := range evs {
			if e.Event == kind {
				n++
			}
		}
		return n
	}
	evs := waitEvents(t, out, func(evs []ev) bool { return count(evs, "no_deadline") > 0 })
	// Five more summaries (1.5 s): at least two more checks (every 500 ms).
	after := count(evs, "summary") + 5
	evs = waitEvents(t, out, func(evs []ev) bool { return count(evs, "summary") >= after })
	stopGonetscope(t, tr, done, errOut, syscall.SIGTERM, 20*time.Second)
	evs = eventsIn[ev](t, out)
	var nd []ev
	for _, e := range evs {
		if e.Event == "no_deadline" {
			nd = append(nd, e)
		}
	}
	if len(nd) != 1 {
		t.Fatalf("%d no_deadline events, want 1 (goroutine %d): %+v", len(nd), no.Goid, nd)
	}
	e := nd[0]
	if e.Goid == nil || *e.Goid != no.Goid || int(e.FD) != no.FD || e.Mode != "read" || int(e.LPort) != no.Lport || int(e.RPort) != no.Rport ||
		e.LAddr != "127.0.0.1" || e.RAddr != "127.0.0.1" || e.ParkedNs < uint64(2*time.Second) {
		t.Errorf("no_deadline %+v; the target's reader without a deadline: %+v", e, no)
	}
	if e.Func != "main.readNoDeadline" || e.CreatedAt != no.CreatedAt || e.CreatedBy != "main.main" {
		t.Errorf("no_deadline func %q created at %q by %q; want main.readNoDeadline, %s, main.main", e.Func, e.CreatedAt, e.CreatedBy, no.CreatedAt)
	}
	for _, fn := range []string{"internal/poll.(*FD).Read", "main.readNoDeadline"} {
		if !slices.ContainsFunc(e.Stack, func(f frame) bool { return f.Func == fn }) {
			t.Errorf("no_deadline stack lacks %s: %+v", fn, e.Stack)
		}
	}
	fmt.Fprintln(stdin)
}
