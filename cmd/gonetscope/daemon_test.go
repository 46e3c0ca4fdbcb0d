package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// daemonTarget is a nettarget that runs one round per line on its stdin.
type daemonTarget struct {
	cmd   *exec.Cmd
	stdin io.Writer
	next  func() fact
}

func startDaemonTarget(t *testing.T, iso isolation) *daemonTarget {
	t.Helper()
	cmd := isolated(iso, "", nil, nettargetBin, "-rounds", "0", "-stdin-rounds")
	stdin, next := startTargetOf[fact](t, cmd)
	d := &daemonTarget{cmd: cmd, stdin: stdin, next: next}
	d.next() // ready
	return d
}

// round runs one round and returns the local port of its dial.
func (d *daemonTarget) round(t *testing.T) uint16 {
	t.Helper()
	io.WriteString(d.stdin, "\n")
	var lport uint16
	for {
		f := d.next()
		if f.Op == "dial" {
			lport = f.LPort
		}
		if f.Op == "round_done" {
			return lport
		}
	}
}

func gonetscopeCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(gonetscopeBin, args...).CombinedOutput()
	return string(out), err
}

// connectsFrom returns the tcp_connect events in file whose local port is lport.
func connectsFrom(t *testing.T, file string, lport uint16) int {
	t.Helper()
	raw, _ := os.ReadFile(file)
	n := 0
	for _, line := range bytes.Split(raw, []byte("\n")) {
		var e ev
		if json.Unmarshal(line, &e) == nil && e.Event == "tcp_connect" && e.LPort == lport {
			n++
		}
	}
	return n
}

// TestDaemon: attach, list and detach over the control socket against a
// real target; events only while attached; bad requests get an error
// reply; SIGHUP reopens the output; SIGTERM detaches and exits 0.
//
// It runs twice: on the host, and as the DaemonSet deploys it (its own mount
// and network namespaces, the host's PID namespace) with the target in a
// container of its own.
func TestDaemon(t *testing.T) {
	for _, iso := range isolations {
		t.Run(iso.String(), func(t *testing.T) {
			daemonIso := onHost
			if iso != onHost {
				daemonIso = hostPID
			}
			checkDaemon(t, daemonIso, iso)
		})
	}
}

// runningDaemon is a gonetscope daemon started by startDaemon.
type runningDaemon struct {
	cmd         *exec.Cmd
	socket, out string // its control socket and --output
	done        chan error
	stderr      *bytes.Buffer
}

// startDaemon starts `gonetscope daemon` with iso, its socket and output in
// a temporary directory, and args; it returns once the socket is there.
func startDaemon(t *testing.T, iso isolation, args ...string) runningDaemon {
	t.Helper()
	dir := t.TempDir()
	d := runningDaemon{socket: filepath.Join(dir, "ctl.sock"), out: filepath.Join(dir, "events.json"), done: make(chan error, 1), stderr: &bytes.Buffer{}}
	d.cmd = isolated(iso, "", nil, append([]string{gonetscopeBin, "daemon", "--socket", d.socket, "--output", d.out}, args...)...)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() { d.cmd.Process.Kill() })
	waitFor(t, func() bool { _, err := os.Stat(d.socket); return err == nil }, d.done, d.stderr)
	return d
}

func checkDaemon(t *testing.T, daemonIso, targetIso isolation) {
	metricsAddr := freeLoopbackAddr(t)
	d := startDaemon(t, daemonIso, "--metrics-addr", metricsAddr, "--connections", "all")
	daemon, socket, out, done, stderr := d.cmd, d.socket, d.out, d.done, d.stderr
	if st, _ := os.Stat(socket); st.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want 0600", st.Mode().Perm())
	}
	progs, links := heldBPFObjects(t, daemon.Process.Pid)

	target := startDaemonTarget(t, targetIso)
	pid := fmt.Sprint(target.cmd.Process.Pid)
	sync := func() { // the daemon writes asynchronously: a list round trip plus a flush interval
		gonetscopeCLI(t, "list", "--socket", socket)
		time.Sleep(300 * time.Millisecond)
	}

	before := target.round(t)
	start := time.Now()
	if msg, err := gonetscopeCLI(t, "attach", "--socket", socket, pid); err != nil || !strings.Contains(msg, "attached to "+pid) {
		t.Fatalf("attach: %v: %s", err, msg)
	}
	t.Logf("attach took %v", time.Since(start))
	if msg, err := gonetscopeCLI(t, "list", "--socket", socket); err != nil || !strings.HasPrefix(msg, pid+"\tnettarget\t") {
		t.Errorf("list: %v: %q", err, msg)
	}
	// The daemon serves metrics, and the attached target is in them.
	if body, err := getIn(daemon.Process.Pid, metricsAddr, "/metrics"); err != nil {
		t.Errorf("daemon metrics: %v", err)
	} else if !strings.Contains(body, `pid="`+pid+`"`) {
		t.Errorf("daemon metrics do not mention the attached PID %s", pid)
	}
	during := target.round(t)
	if msg, err := gonetscopeCLI(t, "detach", "--socket", socket, pid); err != nil {
		t.Fatalf("detach: %v: %s", err, msg)
	}
	if msg, _ := gonetscopeCLI(t, "list", "--socket", socket); msg != "" {
		t.Errorf("list after detach: %q", msg)
	}
	after := target.round(t)
	sync()
	if n := connectsFrom(t, out, before); n != 0 {
		t.Errorf("%d events for a connect made before attach", n)
	}
	if n := connectsFrom(t, out, during); n != 1 {
		t.Errorf("%d events for the connect made while attached, want 1", n)
	}
	checkDaemonEvents(t, out, target.cmd.Process.Pid, targetIso)
	if n := connectsFrom(t, out, after); n != 0 {
		t.Errorf("%d events for a connect made after detach", n)
	}

	// Bad requests: an error reply each, and the daemon lives on.
	for req, want := range map[string]string{
		"garbage\n":                              "malformed request",
		`{"op":"attach"}` + "\n":                 "attach needs a pid",
		`{"op":"frob","pid":1}` + "\n":           `unknown op "frob"`,
		`{"op":"attach","pid":999999999}` + "\n": "no process with PID 999999999",
		`{"op":"detach","pid":1}` + "\n":         "PID 1 is not traced",
		strings.Repeat("x", 5000) + "\n":         "request longer than",
	} {
		c, err := net.Dial("unix", socket)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, req)
		reply, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		var rep struct {
			OK    bool
			Error string
		}
		if json.Unmarshal([]byte(reply), &rep) != nil || rep.OK || !strings.Contains(rep.Error, want) {
			t.Errorf("request %.40q: reply %q, want an error saying %q", req, reply, want)
		}
	}

	// Log rotation: move the file away, SIGHUP, and new events go to a new file.
	rotated := out + ".1"
	os.Rename(out, rotated)
	daemon.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { _, err := os.Stat(out); return err == nil }, done, stderr)
	if _, err := gonetscopeCLI(t, "attach", "--socket", socket, pid); err != nil {
		t.Fatal(err)
	}
	again := target.round(t)
	sync()
	if n := connectsFrom(t, out, again); n != 1 {
		t.Errorf("after SIGHUP: %d events for a new connect in the reopened file, want 1", n)
	}
	if n := connectsFrom(t, rotated, during); n != 1 {
		t.Errorf("the rotated file lost its events")
	}

	// SIGTERM: exit 0, a detached event with reason signal, socket removed.
	daemon.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon still running 10s after SIGTERM")
	}
	raw, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	var last ev
	json.Unmarshal([]byte(lines[len(lines)-1]), &last)
	if last.Event != "detached" || last.Reason != "signal" || fmt.Sprint(last.PID) != pid {
		t.Errorf("last event %+v, want detached with reason signal", last)
	}
	if _, err := os.Stat(socket); err == nil {
		t.Error("control socket left behind")
	}
	assertReleased(t, progs, links)
}

// freeLoopbackAddr returns a loopback address with a port that was free a
// moment ago.
func freeLoopbackAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// getIn makes an HTTP/1.0 GET of path at addr from the network namespace
// of process pid (a daemon in a container listens on its own loopback).
func getIn(pid int, addr, path string) (string, error) {
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// The thread enters the namespace and goes back to its own
		// before it is unlocked. Were it left locked, Go would end it
		// with this goroutine, unless it is the main thread, which
		// stays: then /proc/self/net, and every child forked from it,
		// would be in the daemon's namespace for the rest of the run.
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer unix.Close(home)
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- result{err: err}
			return
		}
		defer func() {
			if unix.Setns(home, unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
		}()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		done <- result{string(body), err}
	}()
	r := <-done
	return r.body, r.err
}

// checkDaemonEvents: the daemon's events for the target carry exact
// goroutine ids and, for a target in a container, its own PID.
func checkDaemonEvents(t *testing.T, file string, hostPID int, iso isolation) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var withGoid, netpoll int
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var e ev
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.PID != uint32(hostPID) {
			continue
		}
		if (iso != onHost) != (e.NsPID != nil) {
			t.Errorf("%s of a target (%s): ns_pid %v", e.Event, iso, e.NsPID)
		}
		if e.Event == "tcp_connect" || e.Event == "tcp_accept" || e.Event == "netpoll_wait" {
			if e.Goid == nil {
				t.Errorf("%s without goid: %s", e.Event, line)
			}
			withGoid++
		}
		if e.Event == "netpoll_wait" {
			netpoll++
		}
	}
	// The round made while attached: a dial, an accept, a refused dial
	// and the delayed read.
	if withGoid < 4 || netpoll < 1 {
		t.Errorf("daemon events for the round while attached: %d with a goroutine, %d netpoll_wait; want at least 4 and 1", withGoid, netpoll)
	}
}
