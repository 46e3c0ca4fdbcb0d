package main

// Tests of what gonetscope promises about safety, loss and privilege
// (docs/SAFETY.md): each case starts the real binary against a real target.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startTracer starts `gonetscope trace` on pid and waits until it is attached.
func startTracer(t *testing.T, pid int, stdout io.Writer, args ...string) (*exec.Cmd, chan error) {
	t.Helper()
	readyFile := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(gonetscopeBin, append([]string{"trace", "--pid", strconv.Itoa(pid), "--ready-file", readyFile}, args...)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFor(t, func() bool { _, err := os.Stat(readyFile); return err == nil }, done, &stderr)
	return cmd, done
}

func startLingering(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	target := exec.Command(nettargetBin, append([]string{"-rounds", "0", "-linger", "60s"}, args...)...)
	target.Stdout = io.Discard
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Process.Kill(); target.Wait() })
	return target
}

// TestSIGKILL: a tracer killed outright leaves no BPF program, link, kprobe
// or uprobe entry, or pinned object, and a new one starts cleanly.
func TestSIGKILL(t *testing.T) {
	target := startLingering(t)
	tracer, done := startTracer(t, target.Process.Pid, io.Discard)
	progs, links := heldBPFObjects(t, tracer.Process.Pid)
	tracer.Process.Kill()
	<-done
	time.Sleep(100 * time.Millisecond) // the kernel frees links and programs after the last fd closes
	assertReleased(t, progs, links)
	for _, f := range []string{"/sys/kernel/tracing/kprobe_events", "/sys/kernel/tracing/uprobe_events"} {
		if raw, err := os.ReadFile(f); err == nil && len(bytes.TrimSpace(raw)) > 0 {
			t.Errorf("%s is not empty after SIGKILL:\n%s", f, raw)
		}
	}
	if pins, _ := filepath.Glob("/sys/fs/bpf/*gonetscope*"); len(pins) > 0 {
		t.Errorf("pinned objects left: %v", pins)
	}
	_, done = startTracer(t, target.Process.Pid, io.Discard, "--duration", "200ms")
	if err := <-done; err != nil {
		t.Errorf("restart after SIGKILL: %v", err)
	}
}

// TestStalledWriter: the output stops being read while the target floods.
// The kernel side never waits for it: events are dropped and counted, at
// the BPF ring buffer and at the user-space queue, memory stays bounded,
// and once the reader is back, delivered + lost adds up exactly.
func TestStalledWriter(t *testing.T) {
	const reads = 200000
	target := exec.Command(nettargetBin, "-wait-stdin", "-rounds", "0", "-flood", strconv.Itoa(reads))
	stdin, _ := target.StdinPipe()
	facts, _ := target.StdoutPipe()
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Process.Kill(); target.Wait() })
	lines := bufio.NewScanner(facts)
	lines.Scan() // ready

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	tracer, done := startTracer(t, target.Process.Pid, pw, "--min-wait", "0", "--ring-buffer-bytes", "65536")
	pw.Close()
	io.WriteString(stdin, "go\n")
	var flood fact
	for lines.Scan() {
		json.Unmarshal(lines.Bytes(), &flood)
		if flood.Op == "flood" {
			break
		}
	}
	// Nobody reads the output for a while: the pipe fills, then the writer blocks.
	time.Sleep(time.Second)
	if rss := vmRSS(t, tracer.Process.Pid); rss > 200<<20 {
		t.Errorf("tracer RSS %d MiB while its output is stalled", rss>>20)
	}
	stdin.Close()
	var out bytes.Buffer
	io.Copy(&out, pr)
	if err := <-done; err != nil {
		t.Fatalf("gonetscope: %v", err)
	}
	delivered, lost, byStream := 0, uint64(0), map[string]uint64{}
	for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		var e ev
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		switch {
		case e.Event == "netpoll_wait":
			delivered++
		case e.Event == "lost" && e.LostEvent == "netpoll_wait":
			lost += e.Count
			byStream[e.Stream] += e.Count
		}
	}
	t.Logf("%d waits: %d delivered, %d lost %v", reads-1, delivered, lost, byStream)
	if byStream["queue"] == 0 || byStream["netpoll"] == 0 {
		t.Errorf("want loss counted at both layers, got %v", byStream)
	}
	if uint64(delivered)+lost != reads-1 {
		t.Errorf("delivered %d + lost %d != %d", delivered, lost, reads-1)
	}
}

func vmRSS(t *testing.T, pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb << 10
		}
	}
	return 0
}

// TestPrivileges: without a capability it needs, gonetscope stops at start
// and names the missing one.
func TestPrivileges(t *testing.T) {
	target := startLingering(t)
	for drop, want := range map[string]string{
		"-bpf,-perfmon,-sys_admin": "missing capabilities CAP_BPF, CAP_PERFMON: run gonetscope as root",
		"-sys_ptrace":              "missing capabilities CAP_SYS_PTRACE: run gonetscope as root",
	} {
		cmd := exec.Command("setpriv", "--bounding-set="+drop, "--inh-caps=-all",
			gonetscopeBin, "trace", "--pid", strconv.Itoa(target.Process.Pid))
		out, err := cmd.CombinedOutput()
		if _, ok := err.(*exec.ExitError); !ok || !strings.Contains(string(out), want) {
			t.Errorf("dropping %s: %v, %q; want an error saying %q", drop, err, out, want)
		}
	}
}

// TestNoUretprobes: no code path attaches a uretprobe. Go moves goroutine
// stacks; the return trampoline a uretprobe plants breaks that, and crashed
// Go targets on this project's machines (see the kernel facts note).
func TestNoUretprobes(t *testing.T) {
	root := filepath.Join("..", "..")
	for _, glob := range []string{"bpf/*.c", "bpf/*.h", "pkg/*/*.go", "cmd/*/*.go"} {
		files, _ := filepath.Glob(filepath.Join(root, glob))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, banned := range []string{"Uretprobe(", `SEC("uretprobe`, "RetprobeOffset", "BPF_URETPROBE"} {
				if bytes.Contains(raw, []byte(banned)) {
					t.Errorf("%s uses %s", f, banned)
				}
			}
		}
	}
}
