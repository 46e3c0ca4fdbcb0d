package main

// Containers for the tests, made the way container runtimes make them: the
// test binary re-executes itself as a tiny init in new namespaces (the
// kernel's clone flags, no runtime needed, so it works in the test VM too),
// sets the namespaces up, and execs the real program, which keeps the
// init's host PID and is PID 1 inside.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

// Environment of the init (see nsInit).
const (
	envNsInit   = "GONETSCOPE_NSINIT"        // set: this process is the init; exec os.Args[1:]
	envNsNetns  = "GONETSCOPE_NSINIT_NETNS"  // join this network namespace instead of a new one
	envNsSysctl = "GONETSCOPE_NSINIT_SYSCTL" // key=value,... written in the new network namespace
)

// isolation says which namespaces a command gets of its own.
type isolation int

const (
	// onHost: no namespaces of its own.
	onHost isolation = iota
	// container: PID, mount, network, UTS and IPC namespaces, as a
	// container runtime gives a container; lo is up.
	container
	// hostPID: mount and network namespaces, the host's PID namespace: the
	// DaemonSet's gonetscope (hostPID: true).
	hostPID
	// noTracefs: a mount namespace of its own in which tracefs is not
	// mounted, everything else the host's: a host where nobody mounted
	// tracefs.
	noTracefs
)

func (i isolation) String() string {
	return [...]string{"host", "container", "hostpid"}[i]
}

// keepNetns, as isolated's netnsPath, keeps the network namespace of the
// test.
const keepNetns = "keep"

// isolated returns a command that runs argv with iso. netnsPath, if not
// empty, is a network namespace (/run/netns/NAME, or keepNetns) it joins
// instead of getting a new one; sysctls (key=value) are set in a new one.
func isolated(iso isolation, netnsPath string, sysctls []string, argv ...string) *exec.Cmd {
	switch iso {
	case onHost:
		return exec.Command(argv[0], argv[1:]...)
	case noTracefs:
		// unshare and sh exec argv: its PID is the command's.
		script := `for d in /sys/kernel/tracing /sys/kernel/debug/tracing; do umount "$d" 2>/dev/null; done
test ! -e /sys/kernel/tracing/events || { echo "tracefs still mounted" >&2; exit 99; }
exec "$@"`
		return exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"}, argv...)...)
	}
	self, err := os.Executable()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command(self, argv...)
	cmd.Env = append(os.Environ(), envNsInit+"=1", envNsNetns+"="+netnsPath, envNsSysctl+"="+strings.Join(sysctls, ","))
	flags := uintptr(syscall.CLONE_NEWNS)
	if netnsPath == "" {
		flags |= syscall.CLONE_NEWNET
	}
	if iso == container {
		flags |= syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
	return cmd
}

// nsInit is the init of an isolated command: it keeps its mounts to itself,
// mounts a /proc of its PID namespace, brings lo up or joins the network
// namespace it was given, and execs os.Args[1:]. It does not return.
func nsInit() {
	runtime.LockOSThread() // setns applies to this thread, which execs
	fail := func(step string, err error) {
		fmt.Fprintf(os.Stderr, "nsinit: %s: %v\n", step, err)
		os.Exit(127)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fail("making / private", err)
	}
	if os.Getpid() == 1 {
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			fail("mounting /proc", err)
		}
	}
	if path := os.Getenv(envNsNetns); path == keepNetns {
		// the test's own
	} else if path != "" {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			fail("opening "+path, err)
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			fail("joining "+path, err)
		}
		unix.Close(fd)
	} else if err := loUp(); err != nil {
		fail("bringing lo up", err)
	}
	if s := os.Getenv(envNsSysctl); s != "" {
		for _, kv := range strings.Split(s, ",") {
			k, v, _ := strings.Cut(kv, "=")
			if err := os.WriteFile("/proc/sys/"+strings.ReplaceAll(k, ".", "/"), []byte(v), 0o644); err != nil {
				fail("setting "+k, err)
			}
		}
	}
	for _, k := range []string{envNsInit, envNsNetns, envNsSysctl} {
		os.Unsetenv(k)
	}
	path, err := exec.LookPath(os.Args[1])
	if err != nil {
		fail("finding "+os.Args[1], err)
	}
	fail("exec "+path, syscall.Exec(path, os.Args[1:], os.Environ()))
}

func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// isolations are the ways every integration test runs its target: on the
// host and in a container.
var isolations = []isolation{onHost, container}

// nsPIDOf is hostPID's id in its own PID namespace.
func nsPIDOf(t *testing.T, hostPID int) int {
	t.Helper()
	ns, err := proc.ReadNamespaces(hostPID)
	if err != nil {
		t.Fatal(err)
	}
	return ns.NsPID()
}

// checkNamespaces checks the container fields of r's events against what
// the target said about itself: ns_pid is the PID it printed and ns_tid one
// of the thread ids it listed, on every event in a container, one host
// thread for each of its threads; on the host neither is present.
func checkNamespaces(t *testing.T, r traceRun, iso isolation) {
	t.Helper()
	if iso == onHost {
		for _, e := range r.events {
			if e.NsPID != nil || e.NsTID != nil {
				t.Errorf("%s of a target on the host carries ns_pid/ns_tid: %+v", e.Event, e)
			}
		}
		return
	}
	if r.nsPID == r.hostPID {
		t.Fatalf("the target's PID %d is the same on the host: it is not in a PID namespace of its own", r.hostPID)
	}
	threads := map[uint32]bool{}
	for _, f := range r.factsOf("threads") {
		for _, tid := range f.TIDs {
			threads[uint32(tid)] = true
		}
	}
	if len(threads) == 0 {
		t.Fatal("the target listed no threads")
	}
	hostOf := map[uint32]uint32{} // ns tid -> host tid
	for _, e := range r.events {
		if e.Event == "lost" {
			continue
		}
		if e.NsPID == nil || *e.NsPID != uint32(r.nsPID) {
			t.Errorf("%s: ns_pid %v, want %d (the target's own PID): %+v", e.Event, e.NsPID, r.nsPID, e)
			continue
		}
		if e.NsTID == nil {
			if e.Goid != nil {
				t.Errorf("%s has a goid but no ns_tid: %+v", e.Event, e)
			}
			continue
		}
		if !threads[*e.NsTID] {
			t.Errorf("%s: ns_tid %d is none of the target's threads %v", e.Event, *e.NsTID, threads)
		}
		if h, ok := hostOf[*e.NsTID]; ok && h != e.TID {
			t.Errorf("%s: ns_tid %d is host thread %d here and %d elsewhere", e.Event, *e.NsTID, e.TID, h)
		}
		hostOf[*e.NsTID] = e.TID
	}
	a := r.of("attached")
	if len(a) == 1 {
		ns, err := proc.ReadNamespaces(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if a[0].Namespaces["pid"] == 0 || a[0].Namespaces["pid"] == ns.PID || a[0].Namespaces["net"] == ns.Net || a[0].Namespaces["mnt"] == ns.Mnt {
			t.Errorf("attached namespaces %v, want the container's own pid, net and mnt (the test's are pid %d net %d mnt %d)", a[0].Namespaces, ns.PID, ns.Net, ns.Mnt)
		}
	}
}

// TestNsInit: the test's containers are what they claim to be.
func TestNsInit(t *testing.T) {
	cmd := isolated(container, "", []string{"net.core.somaxconn=7"}, "sh", "-c", "echo $$; cat /proc/sys/net/core/somaxconn /proc/1/comm; true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := strings.Fields(string(out)); len(got) != 3 || got[0] != "1" || got[1] != "7" || got[2] != "sh" {
		t.Errorf("in the container: PID, somaxconn, /proc/1/comm = %q, want 1 7 sh", got)
	}
	if host, err := os.ReadFile("/proc/sys/net/core/somaxconn"); err != nil || strings.TrimSpace(string(host)) == "7" {
		t.Errorf("the container's somaxconn leaked to the host: %q %v", host, err)
	}
}

// TestRefusesWithoutHostPID: a gonetscope in a PID namespace of its own (a
// pod without hostPID) refuses with one line that says what to change, and
// loads nothing.
func TestRefusesWithoutHostPID(t *testing.T) {
	before := gonetscopePrograms()
	for _, args := range [][]string{
		{"trace", "--pid", "1"},
		{"daemon", "--socket", filepath.Join(t.TempDir(), "ctl.sock")},
		{"profile", "--pid", "1", "--kind", "cpu", "-o", filepath.Join(t.TempDir(), "cpu.pb.gz")},
	} {
		cmd := isolated(container, "", nil, append([]string{gonetscopeBin}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if err == nil || len(lines) != 1 || !strings.Contains(lines[0], "hostPID: true") || stdout.Len() != 0 {
			t.Errorf("gonetscope %s in a PID namespace: %v, stderr %q, stdout %q; want one line naming hostPID: true", args[0], err, stderr.String(), stdout.String())
		}
	}
	for id := range gonetscopePrograms() {
		if !before[id] {
			t.Errorf("program %d left loaded", id)
		}
	}
}

// TestTraceFromContainer: gonetscope deployed as the DaemonSet deploys it,
// in its own mount and network namespaces but the host's PID namespace,
// traces a target in another container exactly.
func TestTraceFromContainer(t *testing.T) {
	checkTraceOpts(t, []string{nettargetBin}, "auto", "tcp4", traceOpts{target: container, tracer: hostPID})
}

// BenchmarkParkResumeContainer measures what the namespace-level thread id
// costs: a raw EAGAIN read loop on one
// socket (each read after the first is a park and a resume, each with a
// goroutine read and its validation), untraced, traced on the host and
// traced in a container, interleaved in one run. Reported as ns/read per
// mode, from the target's own clock.
//
//	go test -c -o /tmp/g.test ./cmd/gonetscope && /tmp/g.test -test.run '^$' -test.bench ParkResumeContainer -test.benchtime 3x
func BenchmarkParkResumeContainer(b *testing.B) {
	modes := []struct {
		name   string
		iso    isolation
		traced bool
	}{
		{"untraced", onHost, false},
		{"traced-host", onHost, true},
		{"untraced-container", container, false},
		{"traced-container", container, true},
	}
	sums := make([]float64, len(modes))
	for i := 0; i < b.N; i++ {
		for m, mode := range modes {
			sums[m] += float64(benchFlood(b, mode.iso, mode.traced))
		}
	}
	for m, mode := range modes {
		b.ReportMetric(sums[m]/float64(b.N), "ns/read-"+mode.name)
	}
}

func benchFlood(b *testing.B, iso isolation, traced bool) int64 {
	var hooks []string
	if traced {
		hooks = []string{"--hooks", "auto"}
	}
	return benchNettarget(b, iso, hooks, "flood", "ns_per_read", "-flood", "300000")
}

// benchNettarget runs nettarget (after -wait-stdin -rounds 0, then args)
// in iso, traced with hooks unless they are nil, and returns the number
// field of the line it reports for op.
func benchNettarget(b *testing.B, iso isolation, hooks []string, op, field string, args ...string) int64 {
	target := isolated(iso, "", nil, append([]string{nettargetBin, "-wait-stdin", "-rounds", "0"}, args...)...)
	stdin, _ := target.StdinPipe()
	stdout, _ := target.StdoutPipe()
	if err := target.Start(); err != nil {
		b.Fatal(err)
	}
	defer target.Wait()
	dec := json.NewDecoder(stdout)
	var f fact
	if err := dec.Decode(&f); err != nil {
		b.Fatal(err)
	}
	if hooks != nil {
		defer benchTracer(b, target.Process.Pid, hooks...)()
	}
	io.WriteString(stdin, "go\n")
	for dec.More() {
		var line map[string]any
		if err := dec.Decode(&line); err != nil {
			b.Fatal(err)
		}
		if line["op"] == op {
			v, _ := line[field].(float64)
			return int64(v)
		}
	}
	b.Fatalf("the target reported no %s", op)
	return 0
}

// BenchmarkNetpollPingPong measures what a real netpoll wait costs the
// target on each netpoll path: two goroutines exchange one byte each way
// over a loopback connection (two parks, two readies and two resumes per
// exchange), untraced, on the sock path (socket tracepoints, where the
// kernel has them) and on the syscall path, interleaved in one run.
// Reported as ns/exchange per mode, from the target's own clock.
//
//	go test -c -o /tmp/g.test ./cmd/gonetscope && /tmp/g.test -test.run '^$' -test.bench NetpollPingPong -test.benchtime 3x
func BenchmarkNetpollPingPong(b *testing.B) {
	benchHookModes(b, "sock", "ns/exchange-", benchPingPong)
}

// BenchmarkConnectionChurn measures what a new connection costs the
// target on each path for accept4, connect and getsockopt: the target
// dials its own listener 20,000 times, one connection after another, and
// reports its own CPU time per connection: untraced, with the defaults
// (fentry on the kernel functions where the kernel has it, else uprobes
// in the target: seven hits per connection), and on the syscall path
// (their syscall tracepoints, and every other syscall of the target's on
// the slow entry), interleaved in one run.
func BenchmarkConnectionChurn(b *testing.B) {
	benchHookModes(b, "defaults", "cpu-ns/conn-", func(b *testing.B, hooks []string) int64 {
		return benchNettarget(b, onHost, hooks, "churn", "cpu_ns_per_conn", "-churn", "20000")
	})
}

// benchHookModes runs measure untraced, with --hooks auto (reported as
// auto) and with --hooks tracepoint, interleaved b.N times, and reports
// each mode's mean as unit+mode.
func benchHookModes(b *testing.B, auto, unit string, measure func(b *testing.B, hooks []string) int64) {
	modes := []struct {
		name  string
		hooks []string // nil: untraced
	}{
		{"untraced", nil},
		{auto, []string{"--hooks", "auto"}},
		{"tracepoint", []string{"--hooks", "tracepoint"}},
	}
	sums := make([]float64, len(modes))
	for i := 0; i < b.N; i++ {
		for m, mode := range modes {
			sums[m] += float64(measure(b, mode.hooks))
		}
	}
	for m, mode := range modes {
		b.ReportMetric(sums[m]/float64(b.N), unit+mode.name)
	}
}

func benchPingPong(b *testing.B, hooks []string) int64 {
	return benchNettarget(b, onHost, hooks, "pingpong", "ns_per_exchange", "-pingpong", "100000")
}
