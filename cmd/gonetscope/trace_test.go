package main

// Integration tests: the real gonetscope binary traces a real Go target
// (internal/targets/nettarget) on this kernel, and every assertion compares
// the tracer's events with what the target printed about itself.
//
// They need root. GONETSCOPE_BIN and GONETSCOPE_NETTARGET name prebuilt
// binaries (inside the test VM of `make test-kernels`, which has no Go
// toolchain); otherwise TestMain builds them. GONETSCOPE_TEST_HOOKS lists the
// --hooks modes to run (default "auto,tracepoint").

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/netpoll"
	"github.com/gonetscope/gonetscope/pkg/tracer"
)

var (
	gonetscopeBin string
	nettargetBin  string
	// binDir holds the binaries built for the whole run; removed at its end.
	binDir string
)

func TestMain(m *testing.M) {
	if caps := os.Getenv("GONETSCOPE_DROP_CAPS"); caps != "" {
		dropCapsAndExec(caps) // TestPrivileges' wrapper; does not return
	}
	if os.Getenv(envNsInit) != "" {
		nsInit() // a test container's init; does not return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "these tests load BPF programs: run them as root (sudo make test)")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "gonetscope-test")
	if err != nil {
		panic(err)
	}
	binDir = dir
	gonetscopeBin = binary(dir, "GONETSCOPE_BIN", "github.com/gonetscope/gonetscope/cmd/gonetscope")
	nettargetBin = binary(dir, "GONETSCOPE_NETTARGET", targetsPkg+"nettarget")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binary is buildGo for TestMain, which has no testing.T: the binary env
// names, else pkg built into dir.
func binary(dir, env, pkg string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	out, err := goBuild(dir, "", pkg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return out
}

// fact is a JSON line the target printed about itself.
type fact struct {
	Op         string `json:"op"`
	PID        int    `json:"pid"`
	Goid       uint64 `json:"goid"`
	FD         int32  `json:"fd"`
	FD2        int32  `json:"fd2"`
	WaitedNs   int64  `json:"waited_ns"`
	ListenFD   int32  `json:"listen_fd"`
	Port       uint16 `json:"port"`
	LPort      uint16 `json:"lport"`
	RPort      uint16 `json:"rport"`
	WaitNs     int64  `json:"wait_ns"`
	DelayNs    int64  `json:"delay_ns"`
	Reads      int    `json:"reads"`
	Accepts    int64  `json:"accepts"`
	OK         bool   `json:"ok"`
	Ops        int64  `json:"ops"`
	Goroutines int64  `json:"goroutines"`
	FDLimit    uint64 `json:"fd_limit"`
	At         string `json:"at"` // file:line of the call
	TIDs       []int  `json:"tids"`
	// internal/targets/leaktarget's
	LeakSite  string `json:"leak_site"`
	LeakAt    string `json:"leak_at"`
	ChurnSite string `json:"churn_site"`
	ChurnAt   string `json:"churn_at"`
	Leaked    uint64 `json:"leaked"`
	Churned   uint64 `json:"churned"`
}

// ev is a JSON line gonetscope wrote; every field any event may carry.
type ev struct {
	Event      string  `json:"event"`
	Time       string  `json:"time"`
	IntervalNs uint64  `json:"interval_ns"`
	PID        uint32  `json:"pid"`
	TID        uint32  `json:"tid"`
	NsPID      *uint32 `json:"ns_pid"`
	NsTID      *uint32 `json:"ns_tid"`
	Comm       string  `json:"comm"`
	Goid       *uint64 `json:"goid"`
	FD         int32   `json:"fd"`
	ListenFD   int32   `json:"listen_fd"`
	Mode       string  `json:"mode"`
	Kind       string  `json:"kind"`
	// summary's
	Waits        map[string]struct{ Count uint64 } `json:"waits"`
	Written      map[string]uint64                 `json:"written"`
	Suppressed   map[string]uint64                 `json:"suppressed"`
	Below        map[string]uint64                 `json:"below_threshold"`
	Namespaces   map[string]uint64                 `json:"namespaces"`
	ContainerID  string                            `json:"container_id"`
	LAddr        string                            `json:"laddr"`
	LPort        uint16                            `json:"lport"`
	RAddr        string                            `json:"raddr"`
	RPort        uint16                            `json:"rport"`
	HandshakeNs  uint64                            `json:"handshake_ns"`
	Result       string                            `json:"result"`
	QueueWaitNs  *uint64                           `json:"queue_wait_ns"`
	Backlog      *uint32                           `json:"backlog"`
	BacklogMax   uint32                            `json:"backlog_max"`
	WaitNs       uint64                            `json:"wait_ns"`
	IoWaitNs     uint64                            `json:"io_wait_ns"`
	SchedDelayNs uint64                            `json:"sched_delay_ns"`
	ReadySeen    bool                              `json:"ready_seen"`
	DeadlineNs   *int64                            `json:"deadline_ns"`
	BlockNs      uint64                            `json:"block_ns"`
	Ready        int32                             `json:"ready"`
	TimeoutMs    int32                             `json:"timeout_ms"`
	Epfd         int32                             `json:"epfd"`
	Hooks        map[string]string                 `json:"hooks"`
	GoVersion    string                            `json:"go_version"`
	Exe          string                            `json:"exe"`
	OffsetsFrom  string                            `json:"offsets_from"`
	Limits       []string                          `json:"limits"`
	Reason       string                            `json:"reason"`
	Count        uint64                            `json:"count"`
	Stream       string                            `json:"stream"`
	LostEvent    string                            `json:"lost_event"`
	Errno        string                            `json:"errno"`
	OpenFDs      int                               `json:"open_fds"`
	FDLimit      uint64                            `json:"fd_limit"`
	Stack        []frame                           `json:"stack"`
	// goroutines, goroutine_leak
	Live        int64    `json:"live"`
	System      int64    `json:"system"`
	ScanNs      uint64   `json:"scan_ns"`
	Sites       []gsite  `json:"sites"`
	Site        string   `json:"site"`
	CreatedAt   string   `json:"created_at"`
	CreatedBy   string   `json:"created_by"`
	Created     *uint64  `json:"created"`
	Growth      []int64  `json:"growth"`
	OldestGoids []uint64 `json:"oldest_goids"`
	ParkedOn    []string `json:"parked_on"`
	// no_deadline
	ParkedNs uint64 `json:"parked_ns"`
	Func     string `json:"func"`
}

type gsite struct {
	Site      string `json:"site"`
	CreatedAt string `json:"created_at"`
	CreatedBy string `json:"created_by"`
	Live      int64  `json:"live"`
	Created   uint64 `json:"created"`
	Exited    uint64 `json:"exited"`
}

type frame struct {
	Func    string `json:"func"`
	File    string `json:"file"`
	Line    int    `json:"line"`
	Inlined bool   `json:"inlined"`
	PC      string `json:"pc"`
}

type traceRun struct {
	facts  []fact
	events []ev
	stderr string
	// hostPID is the target's PID on the host, which gonetscope traced;
	// nsPID its own idea of its PID (they differ in a container).
	hostPID, nsPID int
}

// traceOpts are the ways a traced run can differ.
type traceOpts struct {
	// target and tracer say where the target and gonetscope run.
	target, tracer isolation
	// onFact sees each fact as the target prints it (to drive load at a
	// port the target reports).
	onFact func(fact)
}

// traceTarget starts nettarget with targetArgs, attaches gonetscope with
// traceArgs, lets the target run its rounds, and returns both outputs once
// the target has exited and gonetscope has ended by itself.
func traceTarget(t *testing.T, targetArgs, traceArgs []string) traceRun {
	t.Helper()
	return traceCommand(t, []string{nettargetBin}, targetArgs, traceArgs)
}

// traceTargetIn is traceTarget with the target isolated by iso.
func traceTargetIn(t *testing.T, iso isolation, targetArgs, traceArgs []string) traceRun {
	t.Helper()
	return traceRunOpts(t, []string{nettargetBin}, targetArgs, traceArgs, traceOpts{target: iso})
}

// traceCommand is traceTarget for a target started by argv (a nettarget
// binary, or a command that ends by exec'ing one).
func traceCommand(t *testing.T, argv, targetArgs, traceArgs []string) traceRun {
	t.Helper()
	return traceCommandWith(t, argv, targetArgs, traceArgs, nil)
}

// traceTargetWith is traceTarget that also hands each fact to onFact as the
// target prints it (to drive load at a port the target reports).
func traceTargetWith(t *testing.T, targetArgs, traceArgs []string, onFact func(fact)) traceRun {
	t.Helper()
	return traceCommandWith(t, []string{nettargetBin}, targetArgs, traceArgs, onFact)
}

func traceCommandWith(t *testing.T, argv, targetArgs, traceArgs []string, onFact func(fact)) traceRun {
	t.Helper()
	return traceRunOpts(t, argv, targetArgs, traceArgs, traceOpts{onFact: onFact})
}

func traceRunOpts(t *testing.T, argv, targetArgs, traceArgs []string, o traceOpts) traceRun {
	t.Helper()
	onFact := o.onFact
	target := isolated(o.target, "", nil, append(append(argv[:len(argv):len(argv)], "-wait-stdin"), targetArgs...)...)
	stdin, _ := target.StdinPipe()
	stdout, _ := target.StdoutPipe()
	target.Stderr = os.Stderr
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Process.Kill(); target.Wait() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatal("target printed no ready line")
	}
	var ready fact
	if err := json.Unmarshal(lines.Bytes(), &ready); err != nil || ready.Op != "ready" {
		t.Fatalf("target's first line %q: %v", lines.Text(), err)
	}

	// In a container the target knows itself by its PID there; the host
	// knows it by the PID of the command started.
	hostPID := ready.PID
	if o.target != onHost {
		hostPID = target.Process.Pid
		if ns := nsPIDOf(t, hostPID); ns != ready.PID {
			t.Fatalf("the target says it is PID %d, its PID namespace says %d", ready.PID, ns)
		}
	}
	readyFile := filepath.Join(t.TempDir(), "ready")
	args := append([]string{"trace", "--pid", fmt.Sprint(hostPID), "--ready-file", readyFile}, traceArgs...)
	tracer := isolated(o.tracer, "", nil, append([]string{gonetscopeBin}, args...)...)
	var out, errOut bytes.Buffer
	tracer.Stdout, tracer.Stderr = &out, &errOut
	if err := tracer.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tracer.Wait() }()
	t.Cleanup(func() { tracer.Process.Kill() })
	waitFor(t, func() bool { _, err := os.Stat(readyFile); return err == nil }, done, &errOut)
	progs, links := heldBPFObjects(t, tracer.Process.Pid)

	io.WriteString(stdin, "go\n")
	r := traceRun{hostPID: hostPID, nsPID: ready.PID}
	for lines.Scan() {
		var f fact
		if err := json.Unmarshal(lines.Bytes(), &f); err != nil {
			t.Fatalf("target line %q: %v", lines.Text(), err)
		}
		r.facts = append(r.facts, f)
		if onFact != nil {
			onFact(f)
		}
	}
	if err := target.Wait(); err != nil {
		t.Fatalf("target: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gonetscope: %v\n%s", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("gonetscope did not end after its only target exited\n%s", errOut.String())
	}
	r.stderr = errOut.String()
	for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		var e ev
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("gonetscope line %q: %v", line, err)
		}
		if e.Event != "lost" && e.PID != uint32(hostPID) {
			t.Errorf("event for PID %d, traced only %d: %s", e.PID, hostPID, line)
		}
		r.events = append(r.events, e)
	}
	assertReleased(t, progs, links)
	return r
}

// readyTimeout is how long gonetscope may take to load: about 2 s
// natively, 15-60 s under emulation with another VM on the same cores
// (make test-kernels sets GONETSCOPE_TEST_READY_TIMEOUT).
func readyTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("GONETSCOPE_TEST_READY_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 60 * time.Second
}

func waitFor(t *testing.T, cond func() bool, exited chan error, stderr *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout())
	for !cond() {
		select {
		case err := <-exited:
			t.Fatalf("gonetscope exited before it was ready: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("gonetscope not ready after %v\n%s", readyTimeout(), stderr.String())
		}
	}
}

func (r traceRun) of(kind string) []ev {
	var out []ev
	for _, e := range r.events {
		if e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

func (r traceRun) factsOf(op string) []fact {
	var out []fact
	for _, f := range r.facts {
		if f.Op == op {
			out = append(out, f)
		}
	}
	return out
}

func goidOf(t *testing.T, e ev) uint64 {
	t.Helper()
	if e.Goid == nil {
		t.Fatalf("%s event has no goid: %+v", e.Event, e)
	}
	return *e.Goid
}

// testDelay is how long the target's peer waits before it writes:
// GONETSCOPE_TEST_DELAY, longer under emulation where 10% of 50ms is noise.
func testDelay(t *testing.T) time.Duration {
	if s := os.Getenv("GONETSCOPE_TEST_DELAY"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("GONETSCOPE_TEST_DELAY: %v", err)
		}
		return d
	}
	return 50 * time.Millisecond
}

func hookModes() []string {
	if s := os.Getenv("GONETSCOPE_TEST_HOOKS"); s != "" {
		return strings.Split(s, ",")
	}
	return []string{"auto", "tracepoint"}
}

// TestTrace checks, for each hook mechanism, that connects, accepts and
// netpoll waits carry exactly the goroutine ids, fds and ports the target
// printed, and that the delayed read's wait is split into I/O wait and
// scheduling delay.
//
// Each runs twice: with the target on the host, and with the target in a
// container (its own PID, mount and network namespaces), where the Go
// runtime's thread ids are the container's.
func TestTrace(t *testing.T) {
	for _, hooks := range hookModes() {
		for _, network := range []string{"tcp4", "tcp6"} {
			for _, iso := range isolations {
				t.Run(hooks+"/"+network+"/"+iso.String(), func(t *testing.T) {
					checkTraceOpts(t, []string{nettargetBin}, hooks, network, traceOpts{target: iso})
				})
			}
		}
	}
}

// checkTrace is TestTrace's check of one target (started by argv), hook
// mode and address family. It returns the run for further checks.
// TestTraceWithoutTracefs: where nobody mounted tracefs, gonetscope mounts
// it in a mount namespace of its own and traces as anywhere else: exact
// connects, accepts and reads. The host's mounts stay as they were.
func TestTraceWithoutTracefs(t *testing.T) {
	before := tracefsMounts(t)
	checkTraceOpts(t, []string{nettargetBin}, "auto", "tcp4", traceOpts{tracer: noTracefs})
	if after := tracefsMounts(t); after != before {
		t.Errorf("the host's tracefs mounts changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// tracefsMounts lists this process's tracefs mounts (/proc/self/mountinfo).
func tracefsMounts(t *testing.T) string {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, " - tracefs ") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func checkTrace(t *testing.T, argv []string, hooks, network string) traceRun {
	return checkTraceOpts(t, argv, hooks, network, traceOpts{})
}

func checkTraceOpts(t *testing.T, argv []string, hooks, network string, o traceOpts) traceRun {
	const rounds = 3
	delay := testDelay(t)
	r := traceRunOpts(t, argv,
		[]string{"-rounds", fmt.Sprint(rounds), "-delay", delay.String(), "-net", network},
		[]string{"--hooks", hooks, "--connections", "all"}, o)
	checkAttached(t, r, hooks)
	checkNamespaces(t, r, o.target)
	checkConnects(t, r, network)
	checkAccepts(t, r, network)
	checkReads(t, r, delay, network)
	checkGoids(t, r)
	if d := r.of("detached"); len(d) != 1 || d[0].Reason != "target_exited" {
		t.Errorf("want one detached event with reason target_exited, got %+v", d)
	}
	if l := r.of("lost"); len(l) != 0 {
		t.Errorf("lost events in a quiet trace: %+v", l)
	}
	if e := r.of("epoll_wait"); len(e) != 0 {
		t.Errorf("%d epoll_wait events with the default --events, which leaves them out", len(e))
	}
	return r
}

// autoHooks is what --hooks auto must choose on this kernel, from
// GONETSCOPE_TEST_AUTO_HOOKS ("tcp_connect=fentry,..."; make test-kernels
// sets it per kernel); empty when unset.
func autoHooks(t *testing.T) map[string]string {
	m := map[string]string{}
	s := os.Getenv("GONETSCOPE_TEST_AUTO_HOOKS")
	for _, kv := range strings.Split(s, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("GONETSCOPE_TEST_AUTO_HOOKS %q: want hook=mechanism,...", s)
		}
		m[k] = v
	}
	return m
}

// hookIs says whether got is one of the mechanisms want lists
// ("fentry|kprobe": either, where the kernel package fetched decides).
func hookIs(got, want string) bool {
	return slices.Contains(strings.Split(want, "|"), got)
}

// TestAutoHooks: --hooks auto picks what this kernel should give it
// (GONETSCOPE_TEST_AUTO_HOOKS), and the attached event says so.
func TestAutoHooks(t *testing.T) {
	want := autoHooks(t)
	if len(want) == 0 {
		t.Skip("GONETSCOPE_TEST_AUTO_HOOKS is not set (make test-kernels sets it for each kernel)")
	}
	r := traceTarget(t, []string{"-rounds", "1", "-delay", testDelay(t).String()}, []string{"--hooks", "auto", "--connections", "all"})
	a := r.of("attached")
	if len(a) != 1 {
		t.Fatalf("want one attached event, got %d", len(a))
	}
	for hook, mech := range want {
		if !hookIs(a[0].Hooks[hook], mech) {
			t.Errorf("--hooks auto on this kernel: %s uses %q, want %q (all: %v)", hook, a[0].Hooks[hook], mech, a[0].Hooks)
		}
	}
	checkConnects(t, r, "tcp4")
	checkAccepts(t, r, "tcp4")
}

// TestWaitKinds: on a keep-alive connection, the server's waits for the
// next request are idle, its wait for the second half of a request and the
// client's waits for responses are in_request; by default only the
// in_request ones are written, with --waits all both.
func TestWaitKinds(t *testing.T) {
	const n = 3
	delay := testDelay(t)
	for _, waits := range []string{"in_request", "all"} {
		t.Run(waits, func(t *testing.T) {
			r := traceTarget(t, []string{"-rounds", "0", "-keepalive", fmt.Sprint(n), "-delay", delay.String()}, []string{"--waits", waits})
			ka := r.factsOf("keepalive")
			if len(ka) != 1 {
				t.Fatalf("target's keepalive report: %+v", r.facts)
			}
			client, server := ka[0].FD, ka[0].ListenFD // ListenFD: the server's connection
			count := map[string]int{}
			for _, e := range r.of("netpoll_wait") {
				if e.Mode != "read" {
					continue
				}
				switch e.FD {
				case client:
					count["client "+e.Kind]++
				case server:
					count["server "+e.Kind]++
				}
			}
			t.Logf("read waits by side and kind: %v", count)
			if count["client in_request"] != n || count["client idle"] != 0 {
				t.Errorf("client: want %d in_request read waits (responses) and no idle ones, got %v", n, count)
			}
			if count["server in_request"] != n {
				t.Errorf("server: want %d in_request read waits (second halves), got %v", n, count)
			}
			idle := count["server idle"]
			if waits == "in_request" && idle != 0 {
				t.Errorf("--waits in_request wrote %d idle waits", idle)
			}
			// The first request may arrive before the server reads.
			if waits == "all" && (idle < n-1 || idle > n) {
				t.Errorf("--waits all: want %d or %d idle server waits (between requests), got %d", n-1, n, idle)
			}
		})
	}
}

// TestEvents: --events chooses the kinds written; the kernel stops sending
// the netpoll ones that are left out. epoll_wait keeps the netpoll waits on
// the sock path, where uprobes on the netpoller's call of epoll_pwait see
// it: each event has the netpoller's one epoll fd, a count the runtime's
// 128-event array can hold, and a block that ran out its timeout lasted
// at least that long.
func TestEvents(t *testing.T) {
	delay := testDelay(t)
	all := traceTarget(t, []string{"-rounds", "1", "-delay", delay.String()}, []string{"--events", "all"})
	if len(all.of("epoll_wait")) == 0 || len(all.of("netpoll_wait")) == 0 {
		t.Errorf("--events all: %d epoll_wait and %d netpoll_wait events, want some of each",
			len(all.of("epoll_wait")), len(all.of("netpoll_wait")))
	}
	a := all.of("attached")[0]
	if np := netpollAuto(t); a.Hooks["netpoll"] != np || (np != netpoll.Tracepoint) != (a.Hooks["epoll_pwait"] == bpfobj.HooksUprobe) {
		t.Errorf("--events all: hooks netpoll %q, epoll_pwait %q; want %q, and uprobes on epoll_pwait on the sock path", a.Hooks["netpoll"], a.Hooks["epoll_pwait"], np)
	}
	timedOut := 0
	for _, e := range all.of("epoll_wait") {
		if e.Epfd != all.of("epoll_wait")[0].Epfd || e.Epfd < 3 || e.Ready < 0 || e.Ready > 128 || e.TimeoutMs < -1 {
			t.Errorf("epoll_wait %+v: want the netpoller's epfd %d, 0-128 ready, a timeout of -1 or more", e, all.of("epoll_wait")[0].Epfd)
		}
		if e.Ready == 0 && e.TimeoutMs > 0 {
			timedOut++
			if e.BlockNs < uint64(e.TimeoutMs)*1e6 {
				t.Errorf("epoll_wait %+v: nothing ready, yet it blocked %d ns, less than its %d ms timeout", e, e.BlockNs, e.TimeoutMs)
			}
		}
	}
	t.Logf("%d epoll_wait events (%d ran out their timeout), epfd %d", len(all.of("epoll_wait")), timedOut, all.of("epoll_wait")[0].Epfd)
	some := traceTarget(t, []string{"-rounds", "1", "-delay", delay.String()}, []string{"--events", "tcp_connect,tcp_accept", "--connections", "all"})
	if n := len(some.of("epoll_wait")) + len(some.of("netpoll_wait")); n != 0 {
		t.Errorf("--events tcp_connect,tcp_accept: %d epoll_wait or netpoll_wait events", n)
	}
	if len(some.of("tcp_connect")) == 0 || len(some.of("tcp_accept")) == 0 || len(some.of("attached")) != 1 {
		t.Errorf("--events tcp_connect,tcp_accept: want tcp_connect, tcp_accept and attached events, got %+v", some.events)
	}
}

// TestConnectionsNotable: by default a connect or an accept is written
// only when worth a look (here, with --min-wait 1s, the refused dial); the
// others are counted in the summaries' below_threshold, one for one with
// what the target did. TestTrace checks every one with --connections all.
func TestConnectionsNotable(t *testing.T) {
	r := traceTarget(t, []string{"-rounds", "2", "-delay", testDelay(t).String()}, []string{"--min-wait", "1s"})
	dials, refused, accepts := r.factsOf("dial"), r.factsOf("refused"), r.factsOf("accept")
	if len(dials) == 0 || len(refused) == 0 || len(accepts) == 0 {
		t.Fatalf("the target reported %d dials, %d refused, %d accepts: the test did not test", len(dials), len(refused), len(accepts))
	}
	below := map[string]uint64{}
	for _, s := range r.of("summary") {
		for k, n := range s.Below {
			below[k] += n
		}
	}
	connects := r.of("tcp_connect")
	if len(connects) != len(refused) {
		t.Errorf("%d tcp_connect events, want only the %d refused: %+v", len(connects), len(refused), connects)
	}
	for _, f := range refused {
		if !slices.ContainsFunc(connects, func(e ev) bool { return e.RPort == f.RPort && e.Result == "ECONNREFUSED" }) {
			t.Errorf("no tcp_connect for the refused dial to port %d", f.RPort)
		}
	}
	if below["tcp_connect"] != uint64(len(dials)) {
		t.Errorf("summaries count %d connects below the threshold, the target made %d successful ones", below["tcp_connect"], len(dials))
	}
	if n := len(r.of("tcp_accept")); n != 0 {
		t.Errorf("%d tcp_accept events for accepts that waited under 1s in the queue", n)
	}
	if below["tcp_accept"] != uint64(len(accepts)) {
		t.Errorf("summaries count %d accepts below the threshold, the target accepted %d", below["tcp_accept"], len(accepts))
	}
}

// featureLimits leaves out of an attached event's limits the notes on
// what the hooks cost the host, and why: what is left are features
// switched off for the target.
func featureLimits(limits []string) []string {
	return slices.DeleteFunc(slices.Clone(limits), func(l string) bool {
		return l == tracer.SyscallTracepointLimit || l == tracer.SyscallEntryLimit ||
			strings.HasPrefix(l, tracer.NetpollSockWhyNot) || strings.HasPrefix(l, tracer.SocketCallsLimit)
	})
}

// netpollAuto is the netpoll mechanism --hooks auto takes on this kernel:
// what make test-kernels says for the kernel (GONETSCOPE_TEST_AUTO_HOOKS),
// else the socket tracepoints where the kernel's BTF has them, else what
// pkg/netpoll chooses when loaded here (fentry, or the syscall path where
// the kernel refuses it).
func netpollAuto(t *testing.T) string {
	t.Helper()
	if m, ok := autoHooks(t)["netpoll"]; ok {
		return m
	}
	if sockTracepoints(t) {
		return netpoll.Sock
	}
	m, err := netpollLoaded()
	if err != nil {
		t.Fatalf("loading the netpoll object: %v", err)
	}
	return m
}

var netpollLoaded = sync.OnceValues(func() (string, error) {
	o, err := netpoll.Load(netpoll.Options{})
	if err != nil {
		return "", err
	}
	defer o.Close()
	return o.Mechanism(), nil
})

// sockTracepoints says whether this kernel has the socket tracepoints the
// netpoll sock path needs (6.3+), from the kernel's own BTF.
func sockTracepoints(t *testing.T) bool {
	k, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range []string{"sock_recv_length", "sock_send_length", "sk_data_ready"} {
		if _, err := k.AnyTypeByName("btf_trace_" + tp); err != nil {
			return false
		}
	}
	return true
}

func checkAttached(t *testing.T, r traceRun, hooks string) {
	a := r.of("attached")
	if len(a) != 1 {
		t.Fatalf("want one attached event, got %d", len(a))
	}
	// The netpoll waits come from the socket tracepoints wherever the
	// kernel has them, unless syscall tracepoints are forced; else from
	// fentry where the kernel takes it and --hooks allows it.
	np, limit := netpoll.Tracepoint, tracer.SyscallTracepointLimit
	if hooks != "tracepoint" && (hooks != "kprobe" || sockTracepoints(t)) && netpollAuto(t) != netpoll.Tracepoint {
		np, limit = netpollAuto(t), tracer.SyscallEntryLimit
	}
	// accept4, connect and getsockopt are hooked with fentry where the
	// kernel allows it (forced by --hooks fentry; --hooks kprobe and
	// tracepoint rule it out); else, on the sock path, with uprobes in
	// the target; else with their syscall tracepoints, as the syscall
	// path's other hooks are. The syscall path always has syscall
	// tracepoints, and the limits say what the host pays.
	calls := a[0].Hooks[bpfobj.SocketCalls]
	if hooks == "fentry" {
		calls = bpfobj.HooksFentry
	} else if hooks != "auto" || calls != bpfobj.HooksFentry {
		calls = bpfobj.HooksUprobe
		if np == netpoll.Tracepoint {
			calls = bpfobj.HooksTracepoint
		}
	}
	if a[0].Hooks["netpoll"] != np || a[0].Hooks[bpfobj.SocketCalls] != calls {
		t.Errorf("--hooks %s: netpoll hooks %q, socket calls %q, want %q, %q", hooks, a[0].Hooks["netpoll"], a[0].Hooks[bpfobj.SocketCalls], np, calls)
	}
	if want := np == netpoll.Tracepoint || calls == bpfobj.HooksTracepoint; slices.Contains(a[0].Limits, limit) != want {
		t.Errorf("--hooks %s, netpoll %s, socket calls %s: limits %q, want %q among them: %v", hooks, np, calls, a[0].Limits, limit, want)
	}
	if a[0].GoVersion == "" || a[0].Hooks["tcp_connect"] == "" || a[0].Hooks["inet_csk_accept"] == "" {
		t.Errorf("attached event lacks go_version or hooks: %+v", a[0])
	}
	want := map[string][2]string{
		"fentry":     {"fentry", "fexit"},
		"kprobe":     {"kprobe", "kretprobe"},
		"tracepoint": {"tracepoint", "tracepoint"},
	}[hooks]
	if want[0] != "" && (a[0].Hooks["tcp_connect"] != want[0] || a[0].Hooks["inet_csk_accept"] != want[1]) {
		t.Errorf("--hooks=%s: attached says %v", hooks, a[0].Hooks)
	}
	t.Logf("hooks in use: %v", a[0].Hooks)
}

func checkConnects(t *testing.T, r traceRun, network string) {
	connects := r.of("tcp_connect")
	loopback := map[string]string{"tcp4": "127.0.0.1", "tcp6": "::1"}[network]
	dials := r.factsOf("dial")
	if len(dials) == 0 {
		t.Fatal("target reported no dials")
	}
	for _, d := range dials {
		// By both ports: the kernel may give one ephemeral port to two
		// connects to different listeners.
		i := slices.IndexFunc(connects, func(e ev) bool { return e.Result == "ok" && e.LPort == d.LPort && e.RPort == d.RPort })
		if i < 0 {
			t.Errorf("no tcp_connect for the dial from port %d: %+v", d.LPort, connects)
			continue
		}
		e := connects[i]
		if g := goidOf(t, e); g != d.Goid || e.FD != d.FD || e.RPort != d.RPort || e.RAddr != loopback || e.LAddr != loopback {
			t.Errorf("tcp_connect %+v (goid %d), target says goid %d fd %d %s:%d -> :%d", e, g, d.Goid, d.FD, loopback, d.LPort, d.RPort)
		}
		if e.HandshakeNs == 0 {
			t.Errorf("tcp_connect without handshake_ns: %+v", e)
		}
	}
	for _, f := range r.factsOf("refused") {
		i := slices.IndexFunc(connects, func(e ev) bool { return e.RPort == f.RPort })
		if i < 0 {
			t.Errorf("no tcp_connect for the refused dial to port %d", f.RPort)
			continue
		}
		if e := connects[i]; e.Result != "ECONNREFUSED" || goidOf(t, e) != f.Goid {
			t.Errorf("refused dial: got %+v (goid %d), want result ECONNREFUSED goid %d", e, goidOf(t, e), f.Goid)
		}
	}
	if want := len(dials) + len(r.factsOf("refused")); len(connects) != want {
		t.Errorf("%d tcp_connect events, the target made %d connects", len(connects), want)
	}
}

func checkAccepts(t *testing.T, r traceRun, network string) {
	loopback := map[string]string{"tcp4": "127.0.0.1", "tcp6": "::1"}[network]
	accepts := r.of("tcp_accept")
	facts := r.factsOf("accept")
	if len(accepts) != len(facts) {
		t.Errorf("%d tcp_accept events, the target accepted %d connections", len(accepts), len(facts))
	}
	for _, f := range facts {
		i := slices.IndexFunc(accepts, func(e ev) bool { return e.RPort == f.RPort && e.LPort == f.LPort })
		if i < 0 {
			t.Errorf("no tcp_accept for the connection from port %d", f.RPort)
			continue
		}
		e := accepts[i]
		if g := goidOf(t, e); g != f.Goid || e.FD != f.FD || e.ListenFD != f.ListenFD || e.LPort != f.LPort || e.LAddr != loopback || e.RAddr != loopback {
			t.Errorf("tcp_accept %+v (goid %d), target says goid %d fd %d listen_fd %d lport %d", e, g, f.Goid, f.FD, f.ListenFD, f.LPort)
		}
		if e.QueueWaitNs == nil || e.Backlog == nil || e.BacklogMax == 0 {
			t.Errorf("tcp_accept without queue_wait_ns or backlog: %+v", e)
		}
	}
}

// checkReads: each delayed read is one netpoll_wait of the reading
// goroutine on its fd and connection (addresses and ports), split exactly in two, and never longer than what the
// target measured around its own Read. Its wait_ns is within 10% of the
// delay, or, when the peer's sleep overshot on a busy machine, within 10%
// of the delay of the target's measurement. Under emulation (make
// test-kernels sets GONETSCOPE_TEST_TIMING=causal) only the causal bound
// holds: there the target's own bookkeeping between its clock reads and the
// syscalls takes longer than the 10%.
func checkReads(t *testing.T, r traceRun, delay time.Duration, network string) {
	loopback := map[string]string{"tcp4": "127.0.0.1", "tcp6": "::1"}[network]
	var waits []ev
	for _, e := range r.of("netpoll_wait") {
		if e.Mode == "read" {
			waits = append(waits, e)
		}
	}
	reads := r.factsOf("read")
	if len(waits) != len(reads) {
		t.Fatalf("%d read netpoll_wait events, the target did %d delayed reads: %+v", len(waits), len(reads), waits)
	}
	for i, f := range reads {
		w := waits[i]
		if g := goidOf(t, w); g != f.Goid || w.FD != f.FD || w.LAddr != loopback || w.RAddr != loopback ||
			w.LPort != f.LPort || w.RPort != f.RPort {
			t.Errorf("netpoll_wait %+v (goid %d), target's read was goid %d fd %d %s:%d -> :%d", w, g, f.Goid, f.FD, loopback, f.LPort, f.RPort)
		}
		wait, measured, d := float64(w.WaitNs), float64(f.WaitNs), float64(delay)
		if wait > measured {
			t.Errorf("netpoll_wait wait_ns %d is longer than the %d ns the target measured around its Read", w.WaitNs, f.WaitNs)
		}
		// On a loaded host the client may reach its Read late, after
		// part of the peer's delay: then the target's own clock is the
		// reference, as long as the Read did wait for the peer.
		nearDelay := wait >= 0.9*d && wait <= 1.1*d
		nearMeasured := measured >= 0.5*d && measured-wait <= 0.1*d
		if !causalTiming() && !nearDelay && !nearMeasured {
			t.Errorf("netpoll_wait wait_ns %d, want within 10%% of the %v delay (or of the target's %d ns)", w.WaitNs, delay, f.WaitNs)
		}
		if w.IoWaitNs+w.SchedDelayNs != w.WaitNs || !w.ReadySeen {
			t.Errorf("netpoll_wait: io_wait_ns %d + sched_delay_ns %d != wait_ns %d, or ready not seen", w.IoWaitNs, w.SchedDelayNs, w.WaitNs)
		}
		if w.IoWaitNs < w.SchedDelayNs {
			t.Errorf("netpoll_wait: a peer that writes after %v should dominate: io %d sched %d", delay, w.IoWaitNs, w.SchedDelayNs)
		}
	}
}

// checkGoids: no event carries a goroutine id the target did not report;
// the netpoller's own epoll_pwait runs on g0.
func checkGoids(t *testing.T, r traceRun) {
	known := map[uint64]bool{}
	for _, f := range r.facts {
		if f.Goid != 0 {
			known[f.Goid] = true
		}
	}
	for _, e := range r.events {
		if e.Goid == nil {
			continue
		}
		switch {
		case e.Event == "epoll_wait" && *e.Goid != 0:
			t.Errorf("epoll_wait on goroutine %d, want g0: %+v", *e.Goid, e)
		case e.Event != "epoll_wait" && !known[*e.Goid]:
			t.Errorf("%s with goid %d, which the target never reported: %+v", e.Event, *e.Goid, e)
		}
	}
}

// heldBPFObjects lists the BPF program and link ids a running process holds
// open, from /proc/PID/fdinfo.
func heldBPFObjects(t *testing.T, pid int) (progs []ebpf.ProgramID, links []uint32) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n") {
			var id uint32
			if _, err := fmt.Sscanf(line, "prog_id:\t%d", &id); err == nil {
				progs = append(progs, ebpf.ProgramID(id))
			}
			if _, err := fmt.Sscanf(line, "link_id:\t%d", &id); err == nil {
				links = append(links, id)
			}
		}
	}
	if len(progs) == 0 {
		t.Fatalf("PID %d holds no BPF programs while tracing", pid)
	}
	return progs, links
}

// heldProgram is the BPF program named name (or, when longer than the
// kernel keeps, that name's first 15 bytes) that running process pid
// holds; closed when the test ends.
func heldProgram(t *testing.T, pid int, name string) *ebpf.Program {
	t.Helper()
	progs, _ := heldBPFObjects(t, pid)
	p := openNamed(t, progs, ebpf.NewProgramFromID, func(p *ebpf.Program) string {
		info, _ := p.Info()
		return info.Name
	}, name)
	if p == nil {
		t.Fatalf("PID %d holds no BPF program %s", pid, name)
	}
	return p
}

// heldMap is the map named name (or its first 15 bytes) that program p
// uses; closed when the test ends.
func heldMap(t *testing.T, p *ebpf.Program, name string) *ebpf.Map {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := info.MapIDs()
	m := openNamed(t, ids, ebpf.NewMapFromID, func(m *ebpf.Map) string {
		info, _ := m.Info()
		return info.Name
	}, name)
	if m == nil {
		t.Fatalf("program %v uses no map %s", p, name)
	}
	return m
}

// openNamed opens the first of ids whose kernel name (nameOf; at most
// 15 bytes) begins name, closed when the test ends; nil if none does.
func openNamed[ID any, T interface{ Close() error }](t *testing.T, ids []ID, open func(ID) (T, error), nameOf func(T) string, name string) T {
	var none T
	for _, id := range ids {
		o, err := open(id)
		if err != nil {
			continue
		}
		if n := nameOf(o); n != "" && strings.HasPrefix(name, n) {
			t.Cleanup(func() { o.Close() })
			return o
		}
		o.Close()
	}
	return none
}

// runCount is how many times p has run since the BPF stats were enabled
// (ebpf.EnableStats).
func runCount(t *testing.T, p *ebpf.Program) uint64 {
	t.Helper()
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s.RunCount
}

// assertReleased fails if any of the programs or links a tracer held is
// still in the kernel after it exited. Other tracers on the host (a
// parallel test run) do not matter: only these ids are checked.
func assertReleased(t *testing.T, progs []ebpf.ProgramID, links []uint32) {
	t.Helper()
	for _, id := range progs {
		if p, err := ebpf.NewProgramFromID(id); err == nil {
			info, _ := p.Info()
			p.Close()
			t.Errorf("BPF program %d (%v) is still loaded after gonetscope exited", id, info.Name)
		}
	}
	for _, id := range links {
		if l, err := link.NewFromID(link.ID(id)); err == nil {
			l.Close()
			t.Errorf("BPF link %d still exists after gonetscope exited", id)
		}
	}
}

// gonetscopePrograms lists the ids of loaded programs named like ours.
func gonetscopePrograms() map[ebpf.ProgramID]bool {
	ours := map[string]bool{}
	for _, n := range []string{"sock_set_state", "exit_epoll_pwait", "enter_epoll_pwait", "exit_accept4", "exit_connect"} {
		ours[n] = true
	}
	ids := map[ebpf.ProgramID]bool{}
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return ids
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		if info, err := p.Info(); err == nil && ours[info.Name] {
			ids[id] = true
		}
		p.Close()
	}
}

// TestBadInput: each bad input ends with one line on stderr that names the
// problem, a non-zero exit, and nothing loaded into the kernel.
func TestBadInput(t *testing.T) {
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no such PID", []string{"trace", "--pid", "999999999"}, "no process with PID 999999999"},
		{"not a Go program", []string{"trace", "--pid", fmt.Sprint(sleep.Process.Pid)}, "is not a Go program"},
		{"no PID", []string{"trace"}, "no target: give the PID of a Go program with --pid"},
		{"bad PID", []string{"trace", "--pid", "abc"}, `"abc" is not a PID`},
		{"bad hooks", []string{"trace", "--pid", fmt.Sprint(os.Getpid()), "--hooks", "uprobe"}, `unknown hook mechanism "uprobe"`},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"bad no-deadline-after", []string{"trace", "--pid", fmt.Sprint(os.Getpid()), "--no-deadline-after", "-1s"}, "--no-deadline-after -1s: give a positive duration"},
		{"bad health-interval", []string{"trace", "--pid", fmt.Sprint(os.Getpid()), "--health-interval", "0"}, "--health-interval 0s: give a positive duration"},
		{"bad procs", []string{"trace", "--pid", fmt.Sprint(os.Getpid()), "--procs", "-1"}, "--procs -1: give a number of CPUs"},
		{"diagnose bad no-deadline-after", []string{"diagnose", "--pid", fmt.Sprint(os.Getpid()), "--no-deadline-after", "-1s"}, "--no-deadline-after -1s: give a positive duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := gonetscopePrograms()
			cmd := exec.Command(gonetscopeBin, tc.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if _, ok := err.(*exec.ExitError); !ok {
				t.Fatalf("want a non-zero exit, got %v", err)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			if !strings.Contains(last, tc.want) {
				t.Errorf("stderr %q, want it to say %q", stderr.String(), tc.want)
			}
			// Refused before loading: no program of ours appeared. (A
			// gonetscope run elsewhere on the host at the same moment
			// would show up here too.)
			for id := range gonetscopePrograms() {
				if !before[id] {
					t.Errorf("BPF program %d appeared during a refused run", id)
				}
			}
		})
	}
}

// TestDaemonSocketNotASocket: a --socket path that holds something other
// than a socket (a file here; /dev/null, say, elsewhere) is refused with
// one line and left as it was: only a stale socket is replaced.
func TestDaemonSocketNotASocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes")
	const content = "not a socket\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gonetscopeBin, "daemon", "--socket", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); !ok || ctx.Err() != nil {
		t.Fatalf("want a non-zero exit, got %v (context: %v)", err, ctx.Err())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if want := "exists and is not a socket"; !strings.Contains(lines[len(lines)-1], want) {
		t.Errorf("stderr %q, want it to say %q", stderr.String(), want)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != content {
		t.Errorf("%s after the refused daemon: %q, %v; want it as it was", path, b, err)
	}
}

// TestReusedFD: a goroutine parked on a read is woken by another closing
// its connection, with no syscall on the fd; then it dials again, gets the
// same fd number, and reads data that is already there, without waiting.
// The park left behind belongs to the closed socket: no netpoll_wait may
// run from it to that read, on either path (the sock path has no close
// hook and must tell the sockets apart).
func TestReusedFD(t *testing.T) {
	const parked = 400 * time.Millisecond
	for _, hooks := range []string{"auto", "tracepoint"} {
		t.Run(hooks, func(t *testing.T) {
			r := traceTarget(t, []string{"-rounds", "0", "-reuse", parked.String()}, []string{"--min-wait", "0", "--hooks", hooks})
			f := r.factsOf("reuse")
			if len(f) != 1 {
				t.Fatalf("target's reuse report: %+v", r.facts)
			}
			if f[0].FD2 != f[0].FD {
				t.Fatalf("the second connection got fd %d, not the first's %d: the test needs the number reused", f[0].FD2, f[0].FD)
			}
			for _, e := range r.of("netpoll_wait") {
				if goidOf(t, e) == f[0].Goid && e.FD == f[0].FD && e.Mode == "read" && e.WaitNs >= uint64(parked/2) {
					t.Errorf("netpoll_wait of %v on fd %d: the closed socket's park (%v) was taken for the new socket's read", time.Duration(e.WaitNs), e.FD, time.Duration(f[0].WaitedNs))
				}
			}
		})
	}
}

// TestSummaryInterval: a target that sends no event still gets a summary
// at detach, and its interval runs from the attached event: about the
// --duration, not the moment the summary state was first needed.
func TestSummaryInterval(t *testing.T) {
	target := startLingering(t)
	const d = time.Second
	out, err := exec.Command(gonetscopeBin, "trace", "--pid", fmt.Sprint(target.Process.Pid), "--duration", d.String()).Output()
	if err != nil {
		t.Fatalf("gonetscope: %v", err)
	}
	var sums []ev
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var e ev
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if e.Event == "summary" {
			sums = append(sums, e)
		}
	}
	if len(sums) != 1 {
		t.Fatalf("want one summary at detach, got %d in %s", len(sums), out)
	}
	if got := time.Duration(sums[0].IntervalNs); got < d/2 || got > 10*d {
		t.Errorf("summary interval %v for a %v trace", got, d)
	}
}

// TestLostIsCounted floods a tiny ring buffer: every netpoll_wait the target
// caused is either delivered or counted in a lost event, exactly.
func TestLostIsCounted(t *testing.T) {
	const reads = 100000
	r := traceTarget(t, []string{"-rounds", "0", "-flood", fmt.Sprint(reads)},
		[]string{"--min-wait", "0", "--ring-buffer-bytes", "4096", "--max-events-per-sec", "0"})
	flood := r.factsOf("flood")
	if len(flood) != 1 || flood[0].Reads != reads {
		t.Fatalf("target's flood report: %+v", flood)
	}
	delivered := 0
	for _, e := range r.of("netpoll_wait") {
		if e.FD != flood[0].FD || goidOf(t, e) != flood[0].Goid || e.Mode != "read" {
			t.Errorf("netpoll_wait that is not the flood's: %+v", e)
		}
		delivered++
	}
	var lost uint64
	byStream := map[string]uint64{}
	for _, e := range r.of("lost") {
		if e.LostEvent == "netpoll_wait" {
			lost += e.Count
			byStream[e.Stream] += e.Count
		}
	}
	t.Logf("%d reads: %d netpoll_wait delivered, %d lost %v", reads, delivered, lost, byStream)
	if byStream["netpoll"] == 0 {
		t.Errorf("a 4 KiB ring buffer lost nothing (%v): the flood did not test the ring's loss count", byStream)
	}
	if uint64(delivered)+lost != reads-1 {
		t.Errorf("delivered %d + lost %d != %d waits", delivered, lost, reads-1)
	}
}

// TestRateLimit: over --max-events-per-sec, events are not written but
// counted in the summary, and the summary's wait counts (from the
// histograms) include them: nothing goes missing silently.
func TestRateLimit(t *testing.T) {
	const reads = 2000
	r := traceTarget(t, []string{"-rounds", "0", "-flood", fmt.Sprint(reads)},
		[]string{"--min-wait", "0", "--max-events-per-sec", "10", "--summary-interval", "1h"})
	delivered := uint64(len(r.of("netpoll_wait")))
	var suppressed, waits uint64
	sums := r.of("summary")
	for _, e := range sums {
		suppressed += e.Suppressed["netpoll_wait"]
		waits += e.Waits["read"].Count
	}
	t.Logf("%d flood reads: %d netpoll_wait written, %d suppressed, %d summaries", reads, delivered, suppressed, len(sums))
	if len(sums) != 1 {
		t.Fatalf("want one summary (at detach, with --summary-interval 1h), got %d", len(sums))
	}
	if suppressed == 0 || delivered > 30 {
		t.Errorf("a limit of 10/s let %d events through and suppressed %d", delivered, suppressed)
	}
	if delivered+suppressed != reads-1 {
		t.Errorf("written %d + suppressed %d != %d waits", delivered, suppressed, reads-1)
	}
	if waits != reads-1 {
		t.Errorf("summary counts %d read waits, want %d", waits, reads-1)
	}
}

// TestAcceptError: accept fails with EMFILE; the event names the listener,
// the goroutine and the limit the target set.
func TestAcceptError(t *testing.T) {
	r := traceTarget(t, []string{"-rounds", "0", "-emfile"}, nil)
	facts := r.factsOf("accept_error")
	errs := r.of("accept_error")
	if len(facts) != 1 || len(errs) != 1 {
		t.Fatalf("target reported %d accept errors, gonetscope %d: %+v", len(facts), len(errs), errs)
	}
	f, e := facts[0], errs[0]
	if goidOf(t, e) != f.Goid || e.ListenFD != f.ListenFD || e.LPort != f.LPort || e.Errno != "EMFILE" || e.FDLimit != f.FDLimit || e.OpenFDs <= 0 {
		t.Errorf("accept_error %+v (goid %d), target says %+v", e, goidOf(t, e), f)
	}
}

// TestStop: SIGTERM and --duration end a trace with exit status 0 and a
// detached event per target with the reason; the target keeps running.
func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		args         []string
	}{
		{"SIGTERM", "signal", nil},
		{"duration", "duration", []string{"--duration", "500ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := exec.Command(nettargetBin, "-rounds", "0", "-linger", "60s")
			target.Stdout = io.Discard
			if err := target.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { target.Process.Kill(); target.Wait() }()
			readyFile := filepath.Join(t.TempDir(), "ready")
			tracer := exec.Command(gonetscopeBin, append([]string{"trace", "--pid", fmt.Sprint(target.Process.Pid), "--ready-file", readyFile}, tc.args...)...)
			var out, errOut bytes.Buffer
			tracer.Stdout, tracer.Stderr = &out, &errOut
			if err := tracer.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- tracer.Wait() }()
			defer tracer.Process.Kill()
			waitFor(t, func() bool { _, err := os.Stat(readyFile); return err == nil }, done, &errOut)
			progs, links := heldBPFObjects(t, tracer.Process.Pid)
			if tc.name == "SIGTERM" {
				tracer.Process.Signal(syscall.SIGTERM)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("gonetscope: %v\n%s", err, errOut.String())
				}
			case <-time.After(stopDeadline()):
				t.Fatalf("gonetscope still running %v after it should have stopped", stopDeadline())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			var last ev
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
				t.Fatal(err)
			}
			if last.Event != "detached" || last.Reason != tc.reason || last.PID != uint32(target.Process.Pid) {
				t.Errorf("last event %+v, want detached with reason %s", last, tc.reason)
			}
			if err := target.Process.Signal(syscall.Signal(0)); err != nil {
				t.Errorf("the target did not survive the trace: %v", err)
			}
			assertReleased(t, progs, links)
		})
	}
}

// stopDeadline is how long gonetscope may take to stop: a few seconds, but
// under qemu's TCG detaching fentry programs alone takes seconds each.
func stopDeadline() time.Duration {
	if causalTiming() {
		return time.Minute
	}
	return 10 * time.Second
}

// TestNetpollDeadline: a netpoll_wait carries the deadline of the side it
// waited on, relative to the park, read from the fd's pollDesc: nettarget
// sets a 5 s read deadline on its client connection right before the read
// that waits -delay for the server, so deadline_ns is 5 s less the few µs
// between the two (within 20 ms). Without a deadline the same wait has
// no deadline_ns. On the default path and the syscall path, each of which
// finds the pollDesc through the socket's epoll registration.
func TestNetpollDeadline(t *testing.T) {
	const deadline = 5 * time.Second
	for _, c := range []struct {
		set   bool
		hooks string
	}{{true, "auto"}, {false, "auto"}, {true, "tracepoint"}} {
		set := c.set
		t.Run(fmt.Sprintf("deadline=%v/%s", set, c.hooks), func(t *testing.T) {
			args := []string{"-rounds", "1", "-delay", testDelay(t).String()}
			if set {
				args = append(args, "-read-deadline", deadline.String())
			}
			r := traceTarget(t, args, []string{"--hooks", c.hooks})
			reads := r.factsOf("read")
			if len(reads) != 1 {
				t.Fatalf("target's read reports: %+v", reads)
			}
			var waits []ev
			for _, e := range r.of("netpoll_wait") {
				if e.FD == reads[0].FD && e.Mode == "read" && goidOf(t, e) == reads[0].Goid {
					waits = append(waits, e)
				}
			}
			if len(waits) != 1 {
				t.Fatalf("netpoll_wait events of the read on fd %d: %+v", reads[0].FD, waits)
			}
			got := waits[0].DeadlineNs
			switch {
			case !set && got != nil:
				t.Errorf("no deadline set, but deadline_ns %d", *got)
			case set && got == nil:
				t.Errorf("a %v read deadline set, but no deadline_ns", deadline)
			case set && (*got > int64(deadline) || *got < int64(deadline-20*time.Millisecond)):
				t.Errorf("deadline_ns %d, want %d less the few µs before the park", *got, int64(deadline))
			}
			if got != nil {
				t.Logf("deadline_ns %d", *got)
			}
		})
	}
}
