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
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemonTarget is a nettarget that runs one round per line on its stdin.
type daemonTarget struct {
	cmd   *exec.Cmd
	stdin io.Writer
	facts *bufio.Scanner
}

func startDaemonTarget(t *testing.T) *daemonTarget {
	t.Helper()
	cmd := exec.Command(nettargetBin, "-rounds", "0", "-stdin-rounds")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	d := &daemonTarget{cmd: cmd, stdin: stdin, facts: bufio.NewScanner(stdout)}
	d.facts.Scan() // ready
	return d
}

// round runs one round and returns the local port of its dial.
func (d *daemonTarget) round(t *testing.T) uint16 {
	t.Helper()
	io.WriteString(d.stdin, "\n")
	var lport uint16
	for d.facts.Scan() {
		var f fact
		json.Unmarshal(d.facts.Bytes(), &f)
		if f.Op == "dial" {
			lport = f.LPort
		}
		if f.Op == "round_done" {
			return lport
		}
	}
	t.Fatal("target ended before its round was done")
	return 0
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
func TestDaemon(t *testing.T) {
	dir := t.TempDir()
	socket, out := filepath.Join(dir, "ctl.sock"), filepath.Join(dir, "events.json")
	metricsAddr := freeLoopbackAddr(t)
	daemon := exec.Command(gonetscopeBin, "daemon", "--socket", socket, "--output", out, "--metrics-addr", metricsAddr)
	var stderr bytes.Buffer
	daemon.Stderr = &stderr
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- daemon.Wait() }()
	t.Cleanup(func() { daemon.Process.Kill() })
	waitFor(t, func() bool { _, err := os.Stat(socket); return err == nil }, done, &stderr)
	if st, _ := os.Stat(socket); st.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want 0600", st.Mode().Perm())
	}
	progs, links := heldBPFObjects(t, daemon.Process.Pid)

	target := startDaemonTarget(t)
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
	if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err != nil {
		t.Errorf("daemon metrics: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `pid="`+pid+`"`) {
			t.Errorf("daemon metrics do not mention the attached PID %s", pid)
		}
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
	waitFor(t, func() bool { _, err := os.Stat(out); return err == nil }, done, &stderr)
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
