package main

import (
	"fmt"
	"os"
	"testing"
)

// TestListenOverflowFinalACK: overflows on the handshake's final ACK (the
// clients' connects all succeed; see testdata/ackoverflow). The kernel adds
// such an overflow to the listener's sk_drops twice (tcp_listendrop, then
// discard_and_relse in tcp_v4_rcv) and a deferred bare ACK once, so
// sk_drops rises faster than the namespace's counters; the reported
// overflows and drops must still add up to TcpExtListenOverflows and
// TcpExtListenDrops exactly, on the sampled path and with the drop hook
// (make test-kernels).
func TestListenOverflowFinalACK(t *testing.T) {
	const somaxconn, clients = 4, 2*4 + 1
	bin := os.Getenv("GONETSCOPE_ACKOVERFLOW") // prebuilt, for make test-kernels
	if bin == "" {
		bin = buildGo(t, t.TempDir(), "", "github.com/gonetscope/gonetscope/cmd/gonetscope/testdata/ackoverflow")
	}
	r := runListentarget(t, bin, somaxconn, "-clients", fmt.Sprint(clients))
	if r.burst.OK != clients || r.burst.Failed != 0 {
		t.Fatalf("%d of %d connects succeeded, %d failed: a SYN was dropped", r.burst.OK, clients, r.burst.Failed)
	}
	if r.overflows == 0 {
		t.Fatalf("no overflow (ListenOverflows +0): the test did not test")
	}
	var overflows, drops, skDrops uint64
	for _, e := range overflowsOf(r.events) {
		overflows += e.Overflows
		drops += e.Drops
		skDrops += e.SkDrops
		if e.PID != r.ready.PID || e.ListenFD != r.ready.ListenFD || e.LPort != r.ready.Port || e.MPTCP {
			t.Errorf("listen_overflow for pid %d fd %d port %d mptcp %v, want pid %d fd %d port %d, plain TCP",
				e.PID, e.ListenFD, e.LPort, e.MPTCP, r.ready.PID, r.ready.ListenFD, r.ready.Port)
		}
		if e.BacklogMax != somaxconn {
			t.Errorf("backlog_max %d, want %d", e.BacklogMax, somaxconn)
		}
		if e.Verdict != "no_acceptor" {
			t.Errorf("verdict %q, want no_acceptor (nothing accepts)", e.Verdict)
		}
	}
	checkSum(t, "overflows", overflows, r.overflows, r.overflowsFinal)
	checkSum(t, "drops", drops, r.listenDrops, r.listenDropsFinal)
	if skDrops <= drops {
		t.Errorf("sk_drops rose by %d, drops %d: want more (each overflowed final ACK counts twice in sk_drops)", skDrops, drops)
	}
	t.Logf("overflows %d (ListenOverflows +%d), drops %d (ListenDrops +%d), sk_drops +%d",
		overflows, r.overflows, drops, r.listenDrops, skDrops)
}
