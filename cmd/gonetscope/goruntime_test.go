package main

import "testing"

// TestAcceptorStatusStripped: the acceptor's go_status in listen_overflow
// is read from the target's goroutine table; for a stripped PIE target the
// offsets come from the version table and runtime.allgs from the code.
// The stalled acceptor sleeps: "waiting: sleep".
func TestAcceptorStatusStripped(t *testing.T) {
	bin := buildTarget(t, "listentarget", "-ldflags=-s -w", "-buildmode=pie")
	r := runListentarget(t, bin, 2, "-mode", "stall", "-net", "tcp4")
	start, end := r.fact(t, "stall_start"), r.fact(t, "stall_end")
	seen := 0
	for _, e := range overflowsOf(r.events) {
		if at := e.when(t).UnixNano(); at < start.TimeNs || at > end.TimeNs {
			continue
		}
		for _, a := range e.Acceptors {
			seen++
			if a.Goid != start.Goid || a.GoStatus != "waiting: sleep" {
				t.Errorf("acceptor during the stall: goroutine %d go_status %q, want %d \"waiting: sleep\"", a.Goid, a.GoStatus, start.Goid)
			}
		}
	}
	if seen == 0 {
		t.Errorf("no acceptor in a listen_overflow during the stall")
	}
}
