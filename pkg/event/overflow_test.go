package event

import (
	"encoding/json"
	"testing"
)

func TestListenOverflowJSON(t *testing.T) {
	ev := &ListenOverflow{
		Header:    Header{Event: "listen_overflow", PID: 4242, TID: 4242, Comm: "srv"},
		ListenFD:  3,
		Addrs:     addrs("::1", 8080, "::", 0),
		MPTCP:     true,
		Overflows: 16, Drops: 17, SkDrops: 18, Backlog: 3, BacklogMax: 2, IntervalNs: 100_000_000,
		Acceptors: []Acceptor{
			{Goid: 21, State: AcceptorRunning, SinceNs: 5, GoStatus: "waiting: sleep", Accepts: 1},
			{Goid: 22, State: AcceptorBlocked, SinceNs: 6, Syscall: "fsync", Accepts: 0, Stack: []Frame{{Func: "main.f", File: "/src/main.go", Line: 7}, {Func: "main.main", File: "/src/main.go", Line: 3}}},
		},
		AcceptRate: 10, SynRate: 250.5, AcceptErrors: 2, AcceptErrno: "EMFILE",
		Verdict: VerdictAcceptorBusy,
	}
	got := jsonOf(t, ev)
	accs, ok := got["acceptors"].([]any)
	if !ok || len(accs) != 2 {
		t.Fatalf("acceptors = %#v, want 2", got["acceptors"])
	}
	a0, a1 := accs[0].(map[string]any), accs[1].(map[string]any)
	if a0["goid"] != json.Number("21") || a0["state"] != "running" || a0["go_status"] != "waiting: sleep" || a0["since_ns"] != json.Number("5") {
		t.Errorf("acceptor 0 = %v", a0)
	}
	if _, has := a0["syscall"]; has {
		t.Errorf("acceptor 0 has a syscall: %v", a0)
	}
	stack, _ := a1["stack"].([]any)
	if a1["state"] != "blocked" || a1["syscall"] != "fsync" || len(stack) != 2 || stack[0].(map[string]any)["func"] != "main.f" || stack[0].(map[string]any)["line"] != json.Number("7") {
		t.Errorf("acceptor 1 = %v", a1)
	}
	delete(got, "acceptors")
	checkJSON(t, got, fields(ev.Header, "listen_overflow", map[string]any{
		"listen_fd": 3, "laddr": "::1", "lport": 8080, "mptcp": true,
		"overflows": 16, "drops": 17, "sk_drops": 18, "backlog": 3, "backlog_max": 2, "interval_ns": 100_000_000,
		"accept_rate": 10, "syn_rate": 250.5, "accept_errors": 2, "accept_errno": "EMFILE",
		"verdict": "acceptor_busy",
	}))
}
