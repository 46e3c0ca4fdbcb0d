package diagnose

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func u64(v uint64) *uint64 { return &v }

func attached(pid uint32) Event {
	return Event{Event: "attached", PID: pid, Comm: "svc", GoVersion: "go1.26.8", MinWaitNs: 1e6,
		Hooks: map[string]string{"netpoll": "tp_btf"}, Time: time.Unix(100, 0)}
}

func itemOf(t *testing.T, r *Report, id string) Item {
	t.Helper()
	for _, it := range r.Items {
		if it.ID == id {
			return it
		}
	}
	t.Fatalf("no item %s", id)
	return Item{}
}

// The scheduler-delay p99 lies in [bound/2, bound): above the threshold
// for sure is a problem, straddling it a warning, below it ok.
func TestSchedDelayBounds(t *testing.T) {
	for _, c := range []struct {
		bound uint64
		want  string
	}{
		{1 << 23, OK},      // [4.2ms, 8.4ms)
		{1 << 24, Warn},    // [8.4ms, 16.8ms): 10ms may be either side
		{1 << 25, Problem}, // [16.8ms, 33.6ms)
	} {
		evs := []Event{attached(7), {Event: "summary", PID: 7, Waits: map[string]WaitStats{
			"read": {Count: 500, SchedDelayP99Ns: u64(c.bound)}, "accept": {Count: 3, SchedDelayP99Ns: u64(1 << 12)}}}}
		r, err := Analyze(evs, 7, Defaults())
		if err != nil {
			t.Fatal(err)
		}
		if it := itemOf(t, r, "sched_delay"); it.Status != c.want {
			t.Errorf("bound %v: %s %q, want %s", time.Duration(c.bound), it.Status, it.Value, c.want)
		}
	}
	// One slow wait of a mode is no p99: not judged.
	r, _ := Analyze([]Event{attached(7), {Event: "summary", PID: 7, Waits: map[string]WaitStats{
		"read": {Count: 500, SchedDelayP99Ns: u64(1 << 17)}, "accept": {Count: 1, SchedDelayP99Ns: u64(1 << 26)}}}}, 7, Defaults())
	if it := itemOf(t, r, "sched_delay"); it.Status != OK || strings.Contains(it.Value, "accept") {
		t.Errorf("one slow accept among 500 fast reads: %s %q, want ok on the reads", it.Status, it.Value)
	}
	// A stream from before sched_delay_p99_ns: n/a, not a guess.
	r, _ = Analyze([]Event{attached(7), {Event: "summary", PID: 7, Waits: map[string]WaitStats{"read": {Count: 50}}}}, 7, Defaults())
	if it := itemOf(t, r, "sched_delay"); it.Status != NA || !strings.Contains(it.Why, "older gonetscope") {
		t.Errorf("old summary: %s %q", it.Status, it.Why)
	}
}

// Slow in_request waits on one peer: a problem from SlowPeerMinWaits on,
// a warning below; idle waits and other peers' fast waits do not count.
func TestSlowPeer(t *testing.T) {
	wait := func(kind string, port uint16, ns uint64, goid uint64) Event {
		return Event{Event: "netpoll_wait", PID: 7, Kind: kind, Mode: "read", FD: 9, Raddr: "10.0.3.7", Rport: port, IoWaitNs: ns, Goid: &goid,
			Stack: []Frame{{Func: "syscall.read"}, {Func: "net.(*conn).Read"}, {Func: "main.query", File: "/src/db/db.go", Line: 88}, {Func: "runtime.goexit"}}}
	}
	for n, want := range map[int]string{2: Warn, 3: Problem} {
		evs := []Event{attached(7), wait("idle", 5432, 9e9, 1), wait("in_request", 80, 2e6, 2)}
		for i := range n {
			evs = append(evs, wait("in_request", 5432, 480e6, uint64(10+i)))
		}
		r, _ := Analyze(evs, 7, Defaults())
		it := itemOf(t, r, "slow_peer")
		if it.Status != want || len(it.Evidence) != 1 || it.Evidence[0].Rport != 5432 || it.Evidence[0].Count != uint64(n) ||
			it.Evidence[0].Stack[0] != "main.query db/db.go:88" || len(it.Evidence[0].Stack) != 1 {
			t.Errorf("%d slow waits: %s %q %+v, want %s", n, it.Status, it.Value, it.Evidence, want)
		}
		if want == Problem && (r.ExitStatus != ExitProblems || !strings.Contains(r.Findings[0], "10.0.3.7:5432 for 480ms p99")) {
			t.Errorf("exit %d, findings %q", r.ExitStatus, r.Findings)
		}
	}
}

func TestNoTarget(t *testing.T) {
	if _, err := Analyze([]Event{attached(7)}, 8, Defaults()); !errors.Is(err, ErrNoTarget) {
		t.Errorf("PID 8 in a stream of 7: %v", err)
	}
}

func TestThresholdsFile(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"t.yaml": "slow_peer_p99: 250ms\nclose_wait: 3\n",
		"t.json": `{"slow_peer_p99": "250ms", "close_wait": 3}`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		th, err := LoadThresholds(p)
		if err != nil {
			t.Fatal(err)
		}
		want := Defaults()
		want.SlowPeerP99, want.CloseWait = Duration(250*time.Millisecond), 3
		if th != want {
			t.Errorf("%s: %+v, want %+v", name, th, want)
		}
	}
	p := filepath.Join(dir, "bad.yaml")
	os.WriteFile(p, []byte("slow_peer: 1s\n"), 0o644)
	if _, err := LoadThresholds(p); err == nil || !strings.Contains(err.Error(), "slow_peer") {
		t.Errorf("an unknown name: %v", err)
	}
}

// No line of the text report is wider than Width, however long the
// evidence.
func TestTextWidth(t *testing.T) {
	long := strings.Repeat("x", 150)
	r := &Report{Target: Target{PID: 1, Comm: "svc"}, Items: []Item{
		{ID: "a", Title: "Netpoll blocking on a slow peer", Status: Problem, Value: strings.Repeat("word ", 40), Threshold: "t",
			Evidence: []Evidence{{Text: long + " " + strings.Repeat("ev ", 50), Stack: []string{long}}}},
	}, Findings: []string{strings.Repeat("finding ", 30)}}
	var b bytes.Buffer
	r.Text(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if n := len([]rune(line)); n > Width {
			t.Errorf("%d columns: %q", n, line)
		}
	}
	if !strings.Contains(strings.ReplaceAll(b.String(), "\n", ""), strings.Repeat("x", 80)) {
		t.Errorf("a long word was lost:\n%s", b.String())
	}
}
