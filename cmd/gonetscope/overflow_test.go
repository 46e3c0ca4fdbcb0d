package main

// listen_overflow integration tests: a real Go listener in a network
// namespace the test creates, with net.core.somaxconn lowered there, a
// real burst of dials, and the namespace's own TcpExtListenOverflows as the
// ground truth.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
)

// ovEvent is a listen_overflow line (and, for cross-checks, tcp_accept).
type ovEvent struct {
	Event      string  `json:"event"`
	Time       string  `json:"time"`
	PID        int     `json:"pid"`
	Goid       *uint64 `json:"goid"`
	ListenFD   int32   `json:"listen_fd"`
	LAddr      string  `json:"laddr"`
	LPort      uint16  `json:"lport"`
	MPTCP      bool    `json:"mptcp"`
	Overflows  uint64  `json:"overflows"`
	Drops      uint64  `json:"drops"`
	SkDrops    uint64  `json:"sk_drops"`
	Backlog    uint32  `json:"backlog"`
	BacklogMax uint32  `json:"backlog_max"`
	IntervalNs uint64  `json:"interval_ns"`
	Acceptors  []struct {
		Goid     uint64  `json:"goid"`
		State    string  `json:"state"`
		SinceNs  uint64  `json:"since_ns"`
		GoStatus string  `json:"go_status"`
		Stack    []frame `json:"stack"`
	} `json:"acceptors"`
	AcceptRate   float64           `json:"accept_rate"`
	AcceptErrors uint64            `json:"accept_errors"`
	AcceptErrno  string            `json:"accept_errno"`
	SynRate      float64           `json:"syn_rate"`
	Verdict      string            `json:"verdict"`
	Hooks        map[string]string `json:"hooks"`
}

func (e ovEvent) when(t *testing.T) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, e.Time)
	if err != nil {
		t.Fatalf("event time %q: %v", e.Time, err)
	}
	return ts
}

// ltFact is a line listentarget printed about itself.
type ltFact struct {
	Op           string `json:"op"`
	TimeNs       int64  `json:"time_ns"`
	PID          int    `json:"pid"`
	ListenFD     int32  `json:"listen_fd"`
	Port         uint16 `json:"port"`
	AcceptorGoid uint64 `json:"acceptor_goid"`
	Protocol     int    `json:"protocol"` // the listener's SO_PROTOCOL
	Goid         uint64 `json:"goid"`
	OK           int    `json:"ok"`
	Failed       int    `json:"failed"`
	Error        string `json:"error"`
}

var netnsSeq atomic.Int32

// netns creates a network namespace with lo up and net.core.somaxconn and
// sysctls (key=value) set, removed when the test ends, and returns the
// command prefix that runs a program inside it.
//
// With GONETSCOPE_TEST_NO_NETNS set (the VM of make test-kernels: its own
// kernel, with busybox's ip and no netns), the sysctls are set in the
// current namespace instead, restored when the test ends, and the prefix is
// empty.
func netns(t *testing.T, somaxconn int, sysctls ...string) []string {
	t.Helper()
	if os.Getenv("GONETSCOPE_TEST_NO_NETNS") != "" {
		for _, kv := range append([]string{"net.core.somaxconn=" + strconv.Itoa(somaxconn)}, sysctls...) {
			k, v, _ := strings.Cut(kv, "=")
			path := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			old, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.WriteFile(path, old, 0o644) })
		}
		return nil
	}
	name := fmt.Sprintf("gnsovf-%d-%d", os.Getpid(), netnsSeq.Add(1))
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run("netns", "exec", name, "ip", "link", "set", "lo", "up")
	run("netns", "exec", name, "sysctl", "-qw", "net.core.somaxconn="+strconv.Itoa(somaxconn))
	for _, kv := range sysctls {
		run("netns", "exec", name, "sysctl", "-qw", kv)
	}
	return []string{"ip", "netns", "exec", name}
}

// command runs args behind prefix (see netns).
func command(prefix []string, args ...string) *exec.Cmd {
	all := append(append([]string{}, prefix...), args...)
	return exec.Command(all[0], all[1:]...)
}

// tcpExt reads the TcpExt counters of the network namespace pid is in.
func tcpExt(t *testing.T, pid int) map[string]uint64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/netstat", pid))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "TcpExt:") || !strings.HasPrefix(lines[i+1], "TcpExt:") {
			continue
		}
		names, vals := strings.Fields(lines[i])[1:], strings.Fields(lines[i+1])[1:]
		m := map[string]uint64{}
		for j := range names {
			m[names[j]], _ = strconv.ParseUint(vals[j], 10, 64)
		}
		return m
	}
	t.Fatalf("no TcpExt in /proc/%d/net/netstat", pid)
	return nil
}

// settledTcpExt waits until pid's namespace's listen drop counters have not
// moved for two seconds (retransmitted handshakes have stopped), then
// returns them.
func settledTcpExt(t *testing.T, pid int) map[string]uint64 {
	t.Helper()
	last, since := tcpExt(t, pid), time.Now()
	deadline := time.Now().Add(15 * time.Second)
	for time.Since(since) < 2*time.Second {
		if time.Now().After(deadline) {
			t.Fatal("listen drops still rising after 15s")
		}
		time.Sleep(100 * time.Millisecond)
		now := tcpExt(t, pid)
		if now["ListenOverflows"] != last["ListenOverflows"] || now["ListenDrops"] != last["ListenDrops"] {
			last, since = now, time.Now()
		}
	}
	return last
}

// tracerProc is a running gonetscope.
type tracerProc struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	err  *bytes.Buffer
	done chan error
}

func startOverflowTracer(t *testing.T, pid int) *tracerProc {
	t.Helper()
	tr := &tracerProc{}
	tr.cmd, tr.done, tr.err = startGonetscopeTo(t, &tr.out, pid, "trace", "--overflow-interval", "100ms", "--stacks", "--max-events-per-sec", "0", "--connections", "all")
	return tr
}

// stop ends gonetscope with SIGINT (it samples the listeners once more)
// and returns its events.
func (tr *tracerProc) stop(t *testing.T) []ovEvent {
	t.Helper()
	stopGonetscope(t, tr.cmd, tr.done, tr.err, syscall.SIGINT, 10*time.Second)
	return parseEvents[ovEvent](t, tr.out.Bytes())
}

func overflowsOf(evs []ovEvent) []ovEvent {
	var out []ovEvent
	for _, e := range evs {
		if e.Event == "listen_overflow" {
			out = append(out, e)
		}
	}
	return out
}

type overflowRun struct {
	ready, burst ltFact
	facts        []ltFact
	events       []ovEvent
	overflows    uint64 // the namespace's TcpExtListenOverflows delta, once settled
	// overflowsFinal is the delta read after gonetscope stopped: higher
	// when a late retransmit overflowed while it was stopping.
	overflowsFinal   uint64
	listenDrops      uint64 // and TcpExtListenDrops
	listenDropsFinal uint64
}

func (r overflowRun) fact(t *testing.T, op string) ltFact {
	t.Helper()
	for _, f := range r.facts {
		if f.Op == op {
			return f
		}
	}
	t.Fatalf("target printed no %q line: %+v", op, r.facts)
	return ltFact{}
}

// runListentarget runs listentarget in a fresh namespace with somaxconn,
// traced from before the burst until after it has settled.
func runListentarget(t *testing.T, bin string, somaxconn int, args ...string) overflowRun {
	t.Helper()
	return runListentargetWith(t, bin, somaxconn, nil, nil, args...)
}

// runListentargetWith runs the target with env added to its environment
// and calls on for every line it prints, with the command prefix that runs
// a program in its namespace and its stdin.
func runListentargetWith(t *testing.T, bin string, somaxconn int, env []string, on func(f ltFact, prefix []string, stdin io.Writer), args ...string) overflowRun {
	t.Helper()
	return runListentargetIn(t, onHost, bin, somaxconn, env, on, args...)
}

// runListentargetIn is runListentargetWith with the target isolated by iso;
// in a container it shares the namespace's network with the test's clients.
func runListentargetIn(t *testing.T, iso isolation, bin string, somaxconn int, env []string, on func(f ltFact, prefix []string, stdin io.Writer), args ...string) overflowRun {
	t.Helper()
	prefix := netns(t, somaxconn)
	target := command(prefix, append([]string{bin}, args...)...)
	if iso != onHost {
		netnsPath := keepNetns // the VM's: see netns
		if len(prefix) > 0 {
			netnsPath = "/run/netns/" + prefix[len(prefix)-1]
		}
		target = isolated(iso, netnsPath, nil, append([]string{bin}, args...)...)
	}
	if target.Env == nil {
		target.Env = os.Environ()
	}
	target.Env = append(target.Env, env...)
	stdin, nextFact := startTargetOf[ltFact](t, target)
	var r overflowRun
	next := func() ltFact {
		t.Helper()
		f := nextFact()
		if f.Op == "error" {
			t.Fatalf("target: %s", f.Error)
		}
		r.facts = append(r.facts, f)
		return f
	}
	r.ready = next()
	pid := r.ready.PID
	if iso != onHost {
		pid = target.Process.Pid
		r.ready.PID = pid
	}
	tr := startOverflowTracer(t, pid)
	before := tcpExt(t, pid)
	io.WriteString(stdin, "go\n")
	for f := next(); f.Op != "done"; f = next() {
		if f.Op == "burst" {
			r.burst = f
		}
		if on != nil {
			on(f, prefix, stdin)
		}
	}
	after := settledTcpExt(t, pid)
	r.events = tr.stop(t)
	final := tcpExt(t, pid)
	r.overflowsFinal = final["ListenOverflows"] - before["ListenOverflows"]
	r.listenDropsFinal = final["ListenDrops"] - before["ListenDrops"]
	stdin.Close()
	target.Wait()
	r.overflows = after["ListenOverflows"] - before["ListenOverflows"]
	r.listenDrops = after["ListenDrops"] - before["ListenDrops"]
	t.Logf("burst: %d connected, %d failed; namespace: ListenOverflows +%d, ListenDrops +%d",
		r.burst.OK, r.burst.Failed, r.overflows, r.listenDrops)
	for _, e := range overflowsOf(r.events) {
		t.Logf("listen_overflow: overflows %d drops %d sk_drops %d backlog %d/%d verdict %s acceptors %+v accept_rate %.0f syn_rate %.0f accept_errors %d",
			e.Overflows, e.Drops, e.SkDrops, e.Backlog, e.BacklogMax, e.Verdict, e.Acceptors, e.AcceptRate, e.SynRate, e.AcceptErrors)
	}
	return r
}

// checkOverflowEvents checks what every listen_overflow of a run must say,
// and that their drops add up to the namespace's counter exactly.
func checkOverflowEvents(t *testing.T, r overflowRun, host string, somaxconn int) []ovEvent {
	t.Helper()
	evs := overflowsOf(r.events)
	if r.overflows == 0 {
		t.Fatalf("the burst overflowed nothing (ListenOverflows +0): the test did not test")
	}
	var sum, drops uint64
	for _, e := range evs {
		sum += e.Overflows
		drops += e.Drops
		if e.PID != r.ready.PID || e.ListenFD != r.ready.ListenFD || e.LPort != r.ready.Port || e.LAddr != host {
			t.Errorf("listen_overflow for pid %d fd %d %s:%d, want pid %d fd %d %s:%d",
				e.PID, e.ListenFD, e.LAddr, e.LPort, r.ready.PID, r.ready.ListenFD, host, r.ready.Port)
		}
		if e.BacklogMax != uint32(somaxconn) {
			t.Errorf("backlog_max %d, want somaxconn %d", e.BacklogMax, somaxconn)
		}
		// Go 1.24+ listens with MPTCP where the kernel lets it (not 5.10):
		// the target says what its listener is.
		if want := r.ready.Protocol == 262; e.MPTCP != want {
			t.Errorf("listen_overflow mptcp %v, the target's listener has SO_PROTOCOL %d", e.MPTCP, r.ready.Protocol)
		}
		if e.Overflows+e.Drops == 0 || e.IntervalNs == 0 {
			t.Errorf("listen_overflow with overflows %d, drops %d, interval_ns %d", e.Overflows, e.Drops, e.IntervalNs)
		}
	}
	checkSum(t, "overflows", sum, r.overflows, r.overflowsFinal)
	checkSum(t, "drops", drops, r.listenDrops, r.listenDropsFinal)
	return evs
}

// checkSum: the overflows (or drops) reported add up to the namespace's
// TcpExtListenOverflows (ListenDrops). If a late retransmit overflowed
// after the count had settled, while gonetscope was stopping, the sum lies
// between the settled and the final count.
func checkSum(t *testing.T, field string, sum, settled, final uint64) {
	t.Helper()
	counter := map[string]string{"overflows": "TcpExtListenOverflows", "drops": "TcpExtListenDrops"}[field]
	if final != settled {
		t.Logf("%s moved while gonetscope stopped: %d -> %d", counter, settled, final)
		if sum < settled || sum > final {
			t.Errorf("listen_overflow %s add up to %d, the namespace's %s rose by %d to %d", field, sum, counter, settled, final)
		}
		return
	}
	if sum != settled {
		t.Errorf("listen_overflow %s add up to %d, the namespace's %s rose by %d", field, sum, counter, settled)
	}
}

func TestListenOverflow(t *testing.T) {
	const somaxconn = 2
	bin := buildTarget(t, "listentarget")
	for _, c := range []struct {
		network string
		iso     isolation
	}{{"tcp4", onHost}, {"tcp6", onHost}, {"tcp4", container}} {
		network := c.network
		t.Run("stall/"+network+"/"+c.iso.String(), func(t *testing.T) {
			host := map[string]string{"tcp4": "127.0.0.1", "tcp6": "::1"}[network]
			r := runListentargetIn(t, c.iso, bin, somaxconn, nil, nil, "-mode", "stall", "-net", network)
			evs := checkOverflowEvents(t, r, host, somaxconn)
			start, end := r.fact(t, "stall_start"), r.fact(t, "stall_end")
			if start.Goid != r.ready.AcceptorGoid {
				t.Fatalf("target: stalled on goroutine %d, acceptor %d", start.Goid, r.ready.AcceptorGoid)
			}
			inStall := 0
			for _, e := range evs {
				at := e.when(t).UnixNano()
				if at < start.TimeNs || at > end.TimeNs {
					continue
				}
				inStall++
				if e.Verdict != "acceptor_busy" {
					t.Errorf("overflow during the stall: verdict %q, want acceptor_busy", e.Verdict)
				}
				if len(e.Acceptors) != 1 || e.Acceptors[0].Goid != r.ready.AcceptorGoid || e.Acceptors[0].State != "running" {
					t.Errorf("overflow during the stall: acceptors %+v, want goroutine %d running", e.Acceptors, r.ready.AcceptorGoid)
				} else if !slices.ContainsFunc(e.Acceptors[0].Stack, func(f frame) bool {
					return f.Func == "net.(*TCPListener).Accept" && strings.HasSuffix(e.Acceptors[0].Stack[len(e.Acceptors[0].Stack)-1].Func, "goexit")
				}) {
					t.Errorf("overflow during the stall: the acceptor's stack (--stacks) does not go through net.(*TCPListener).Accept: %+v", e.Acceptors[0].Stack)
				}
			}
			if inStall == 0 {
				t.Errorf("no listen_overflow during the stall (%d in all)", len(evs))
			}
		})
	}
	t.Run("exit", func(t *testing.T) {
		r := runListentarget(t, bin, somaxconn, "-mode", "exit")
		evs := checkOverflowEvents(t, r, "127.0.0.1", somaxconn)
		if len(evs) == 0 {
			t.Fatal("no listen_overflow")
		}
		for _, e := range evs {
			if e.Verdict != "no_acceptor" || len(e.Acceptors) != 0 {
				t.Errorf("after the acceptor exited: verdict %q acceptors %+v, want no_acceptor and none", e.Verdict, e.Acceptors)
			}
		}
	})
	t.Run("emfile", func(t *testing.T) {
		// The burst comes from another process in the namespace: the
		// target itself has no fd to spare.
		var gen []byte
		r := runListentargetWith(t, bin, somaxconn, nil, func(f ltFact, prefix []string, stdin io.Writer) {
			if f.Op != "emfile_on" {
				return
			}
			addr := fmt.Sprintf("127.0.0.1:%d", f.Port)
			var err error
			gen, err = command(prefix, bin, "-dial", addr, "-burst", "20", "-rounds", "1", "-every", "0").CombinedOutput()
			if err != nil {
				t.Fatalf("load generator: %v\n%s", err, gen)
			}
			io.WriteString(stdin, "go\n")
		}, "-mode", "emfile", "-burst", "0")
		t.Logf("load generator: %s", gen)
		evs := checkOverflowEvents(t, r, "127.0.0.1", somaxconn)
		on, off := r.fact(t, "emfile_on"), r.fact(t, "emfile_off")
		during := 0
		for _, e := range evs {
			at := e.when(t).UnixNano()
			if at < on.TimeNs || at > off.TimeNs {
				continue
			}
			during++
			if e.AcceptErrors == 0 || e.AcceptErrno != "EMFILE" {
				t.Errorf("overflow while accept fails: accept_errors %d accept_errno %q, want >0 and EMFILE", e.AcceptErrors, e.AcceptErrno)
			}
			if len(e.Acceptors) != 1 || e.Acceptors[0].Goid != r.ready.AcceptorGoid {
				t.Errorf("overflow while accept fails: acceptors %+v, want goroutine %d", e.Acceptors, r.ready.AcceptorGoid)
			}
		}
		if during == 0 {
			t.Errorf("no listen_overflow while accept failed with EMFILE (%d in all)", len(evs))
		}
	})
	t.Run("starve", func(t *testing.T) {
		// One P, no asynchronous preemption, and main spinning: the
		// netpoller makes the parked acceptor runnable and the scheduler
		// never runs it. The burst comes from another process.
		var gen []byte
		env := []string{"GOMAXPROCS=1", "GODEBUG=asyncpreemptoff=1"}
		r := runListentargetWith(t, bin, somaxconn, env, func(f ltFact, prefix []string, stdin io.Writer) {
			if f.Op != "starve_on" {
				return
			}
			var err error
			gen, err = command(prefix, bin, "-dial", fmt.Sprintf("127.0.0.1:%d", f.Port), "-burst", "20", "-rounds", "1", "-every", "0").CombinedOutput()
			if err != nil {
				t.Fatalf("load generator: %v\n%s", err, gen)
			}
		}, "-mode", "starve", "-burst", "0", "-stall", "3s")
		t.Logf("load generator: %s", gen)
		evs := checkOverflowEvents(t, r, "127.0.0.1", somaxconn)
		on, off := r.fact(t, "starve_on"), r.fact(t, "starve_off")
		during, starved := 0, 0
		for _, e := range evs {
			at := e.when(t).UnixNano()
			if at < on.TimeNs || at > off.TimeNs {
				continue
			}
			during++
			// A sample whose interval still saw an accept (from before the
			// spinning began) reads as acceptors keeping up; every sample
			// with no accept must name the starvation.
			if e.AcceptRate == 0 && e.Verdict != "acceptor_starved" {
				t.Errorf("overflow while the acceptor was starved: verdict %q, want acceptor_starved", e.Verdict)
			}
			if e.Verdict == "acceptor_starved" {
				starved++
			}
			if len(e.Acceptors) != 1 || e.Acceptors[0].Goid != r.ready.AcceptorGoid || e.Acceptors[0].State != "parked" {
				t.Errorf("overflow while the acceptor was starved: acceptors %+v, want goroutine %d parked", e.Acceptors, r.ready.AcceptorGoid)
			}
		}
		if during == 0 || starved == 0 {
			t.Errorf("%d listen_overflow events while the acceptor was starved, %d saying so (%d in all)", during, starved, len(evs))
		}
	})
	t.Run("prompt", func(t *testing.T) {
		r := runListentarget(t, bin, 64, "-mode", "prompt")
		if r.burst.Failed != 0 || r.burst.OK != 20 {
			t.Fatalf("burst: %d connected, %d failed; want all 20 to connect", r.burst.OK, r.burst.Failed)
		}
		if r.overflows != 0 {
			t.Fatalf("ListenOverflows +%d with a prompt acceptor and backlog 64", r.overflows)
		}
		if evs := overflowsOf(r.events); len(evs) != 0 {
			t.Errorf("listen_overflow without an overflow: %+v", evs)
		}
		// The mechanism in use is named: on this project's machines the
		// sampled counters; in the test VMs, which have fentry or kprobes,
		// the drop hook (GONETSCOPE_TEST_AUTO_HOOKS).
		want := autoHooks(t)["listen_overflow"]
		if want == "" {
			want = "iter/task_file"
		}
		for _, e := range r.events {
			if e.Event == "attached" && !hookIs(e.Hooks["listen_overflow"], want) {
				t.Errorf("attached: hooks.listen_overflow %q, want %s", e.Hooks["listen_overflow"], want)
			}
		}
	})
}

// buildFasthttp builds testdata/fhserver, a minimal main around
// github.com/valyala/fasthttp's server (a widely used Go HTTP server with
// its own accept loop), with fasthttp from the module proxy.
func buildFasthttp(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fhserver")
	os.Mkdir(dir, 0o755)
	for _, name := range []string{"main.go", "go.mod"} {
		b, err := os.ReadFile(filepath.Join("testdata", "fhserver", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	get := exec.Command("go", "get", "github.com/valyala/fasthttp@v1.78.0")
	get.Dir = dir
	if out, err := get.CombinedOutput(); err != nil {
		t.Fatalf("go get fasthttp: %v\n%s", err, out)
	}
	return buildGo(t, dir, dir, ".")
}

// TestListenOverflowFasthttp traces a server this project did not write,
// under bursts from a load generator, with somaxconn 1: every drop the
// namespace counts is reported on its listener, and the acceptors named are
// the goroutines the tcp_accept events show accepting on it.
func TestListenOverflowFasthttp(t *testing.T) {
	if os.Getenv("GONETSCOPE_FASTHTTP") == "" && exec.Command("go", "version").Run() != nil {
		t.Fatal("no Go toolchain to build fasthttp: set GONETSCOPE_FASTHTTP to a built server")
	}
	server := os.Getenv("GONETSCOPE_FASTHTTP")
	if server == "" {
		server = buildFasthttp(t)
	}
	loadgen := buildTarget(t, "listentarget")
	// Few handshake retransmits, so the drops stop within seconds of the
	// load and the count can be compared when it has settled.
	prefix := netns(t, 1, "net.ipv4.tcp_synack_retries=1", "net.ipv4.tcp_syn_retries=1", "net.ipv4.tcp_orphan_retries=1")
	const addr = "127.0.0.1:18080"
	srv := command(prefix, server, "-addr", addr)
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	// Listening once ip has exec'd the server and the listener shows in
	// its namespace's /proc/net/tcp (before the exec, that file may be the
	// host's, where another program may listen on the port).
	deadline := time.Now().Add(10 * time.Second)
	for {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", srv.Process.Pid))
		raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", srv.Process.Pid))
		if exe == server && strings.Contains(string(raw), fmt.Sprintf(":%04X 00000000:0000 0A", 18080)) { // LISTEN
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fasthttp server is not listening after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	tr := startOverflowTracer(t, srv.Process.Pid)
	before := tcpExt(t, srv.Process.Pid)
	gen := command(prefix, loadgen, "-dial", addr, "-burst", "50", "-rounds", "5",
		"-every", "100ms", "-dial-timeout", "1200ms")
	out, err := gen.CombinedOutput()
	if err != nil {
		t.Fatalf("load generator: %v\n%s", err, out)
	}
	after := settledTcpExt(t, srv.Process.Pid)
	evs := tr.stop(t)
	overflows := after["ListenOverflows"] - before["ListenOverflows"]
	t.Logf("load generator:\n%s namespace: ListenOverflows +%d, ListenDrops +%d, TCPBacklogDrop +%d", out, overflows,
		after["ListenDrops"]-before["ListenDrops"], after["TCPBacklogDrop"]-before["TCPBacklogDrop"])
	final := tcpExt(t, srv.Process.Pid)["ListenOverflows"] - before["ListenOverflows"]
	if overflows == 0 {
		t.Fatal("the load overflowed nothing: the test did not test")
	}

	accepting := map[int32]map[uint64]bool{} // listen fd -> goroutines seen accepting
	var tcpAccepts []ovEvent
	for _, e := range evs {
		if e.Event == "tcp_accept" && e.Goid != nil {
			if accepting[e.ListenFD] == nil {
				accepting[e.ListenFD] = map[uint64]bool{}
			}
			accepting[e.ListenFD][*e.Goid] = true
			tcpAccepts = append(tcpAccepts, e)
		}
	}
	var sum, skSum uint64
	verdicts := map[string]int{}
	for _, e := range overflowsOf(evs) {
		sum += e.Overflows
		skSum += e.SkDrops
		verdicts[e.Verdict]++
		if e.PID != srv.Process.Pid || e.LPort != 18080 || e.LAddr != "127.0.0.1" || e.BacklogMax != 1 {
			t.Errorf("listen_overflow on pid %d %s:%d backlog_max %d, want the server's %d 127.0.0.1:18080 backlog_max 1",
				e.PID, e.LAddr, e.LPort, e.BacklogMax, srv.Process.Pid)
		}
		if len(e.Acceptors) == 0 {
			t.Errorf("listen_overflow with no acceptor named: %+v", e)
		}
		for _, a := range e.Acceptors {
			if !accepting[e.ListenFD][a.Goid] {
				t.Errorf("acceptor goroutine %d never accepted on fd %d (tcp_accept shows %v)", a.Goid, e.ListenFD, accepting[e.ListenFD])
			}
		}
	}
	t.Logf("%d listen_overflow events, verdicts %v, %d tcp_accept; overflows add up to %d, the listener's sk_drops rose by %d",
		len(overflowsOf(evs)), verdicts, len(tcpAccepts), sum, skSum)
	checkSum(t, "overflows", sum, overflows, final)
}

// TestListenerScanVisitsTargetsOnly: the accept-queue sampler's listener
// scan runs every 100 ms. Where the kernel's task iterators take a process
// (6.1+), it visits the targets' files only, not every file on the host:
// the iterator program's own run count (BPF stats) over a second stays
// near the target's fd count per scan while this test holds thousands of
// extra fds.
func TestListenerScanVisitsTargetsOnly(t *testing.T) {
	if !bpfobj.TaskItersByProcess() {
		t.Skip("task iterators take no process before Linux 6.1: the scan visits every file on the host")
	}
	const extra = 4000
	for range extra {
		fd, err := unix.FcntlInt(0, unix.F_DUPFD_CLOEXEC, 0) // not inherited by the target
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fd) })
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatal(err)
	}
	defer stats.Close()
	target := startLingering(t)
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", target.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	tracer, _, _ := startGonetscopeTo(t, io.Discard, target.Process.Pid, "trace")
	scan := heldProgram(t, tracer.Process.Pid, "acceptq_listeners")
	runs := func() uint64 { return runCount(t, scan) }
	before, start := runs(), time.Now()
	time.Sleep(time.Second)
	n, scans := runs()-before, time.Since(start)/(100*time.Millisecond)+1
	perScan := n / uint64(scans)
	t.Logf("%d iterator runs in about %d scans: %d per scan; the target has %d fds, this test %d extra", n, scans, perScan, len(fds), extra)
	if n == 0 {
		t.Fatal("the listener iterator did not run")
	}
	if perScan > uint64(4*len(fds)+16) {
		t.Errorf("the listener scan visits %d files per scan: more than the target's %d fds", perScan, len(fds))
	}
}
