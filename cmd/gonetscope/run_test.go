package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// causalTiming says whether timing bounds are causal ones only: make
// test-kernels sets GONETSCOPE_TEST_TIMING=causal, as under qemu's TCG the
// targets' and gonetscope's own work takes longer than the tests' margins.
func causalTiming() bool {
	return os.Getenv("GONETSCOPE_TEST_TIMING") == "causal"
}

// targetsPkg is where the Go programs the tests trace live.
const targetsPkg = "github.com/gonetscope/gonetscope/cmd/gonetscope/internal/targets/"

// buildTarget builds internal/targets/name with the go build flags given
// and returns the binary. Without flags, GONETSCOPE_<NAME> (such as
// GONETSCOPE_LISTENTARGET) names a prebuilt one instead: make test-kernels
// passes them, as the VM has no Go toolchain.
func buildTarget(t testing.TB, name string, flags ...string) string {
	t.Helper()
	if p := os.Getenv("GONETSCOPE_" + strings.ToUpper(name)); p != "" && len(flags) == 0 {
		return p
	}
	return buildGo(t, t.TempDir(), "", targetsPkg+name, flags...)
}

// buildGo builds pkg with the go build flags given into dir and returns
// the binary; workdir is the module to build in ("": this one, where pkg
// is an import path; else pkg is ".").
func buildGo(t testing.TB, dir, workdir, pkg string, flags ...string) string {
	t.Helper()
	out, err := goBuild(dir, workdir, pkg, flags...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func goBuild(dir, workdir, pkg string, flags ...string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	if pkg == "." {
		out = filepath.Join(dir, filepath.Base(workdir))
	}
	cmd := exec.Command("go", append(append([]string{"build", "-o", out}, flags...), pkg)...)
	cmd.Dir = workdir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// startTarget starts cmd, a target that prints one JSON object per line
// with an "op", and returns its stdin and a reader of its next line, which
// must have the op given ("" takes any).
func startTarget(t *testing.T, cmd *exec.Cmd) (io.WriteCloser, func(op string) map[string]any) {
	t.Helper()
	stdin, next := startTargetOf[map[string]any](t, cmd)
	return stdin, func(op string) map[string]any {
		t.Helper()
		f := next()
		if op != "" && f["op"] != op {
			t.Fatalf("%s said %v, want op %q", filepath.Base(cmd.Path), f, op)
		}
		return f
	}
}

// startTargetOf starts cmd, a target that prints one JSON object per line,
// kills it when the test ends, and returns its stdin and a reader that
// decodes its next line into a T. The test fails if the target ends first.
func startTargetOf[T any](t *testing.T, cmd *exec.Cmd) (io.WriteCloser, func() T) {
	t.Helper()
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	var said []string
	return stdin, func() T {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("%s ended early; it had said:\n%s", filepath.Base(cmd.Path), strings.Join(said, "\n"))
		}
		said = append(said, lines.Text())
		var f T
		if err := json.Unmarshal(lines.Bytes(), &f); err != nil {
			t.Fatalf("%s line %q: %v", filepath.Base(cmd.Path), lines.Text(), err)
		}
		return f
	}
}

// startGonetscope runs gonetscope with args, --pid pid and a ready file,
// and returns once it is ready: its exit status and its stderr.
func startGonetscope(t *testing.T, pid int, args ...string) (chan error, *bytes.Buffer) {
	t.Helper()
	_, done, errOut := startGonetscopeTo(t, nil, pid, args...)
	return done, errOut
}

// startGonetscopeTo is startGonetscope writing its stdout to stdout (nil:
// discarded); it returns the command too, to signal or kill it.
// stopGonetscope sends a gonetscope started by startGonetscopeTo sig and
// wants it to end without an error within the time given.
func stopGonetscope(t *testing.T, cmd *exec.Cmd, done chan error, errOut *bytes.Buffer, sig os.Signal, within time.Duration) {
	t.Helper()
	cmd.Process.Signal(sig)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gonetscope: %v\n%s", err, errOut)
		}
	case <-time.After(within):
		t.Fatalf("gonetscope did not end on %v\n%s", sig, errOut)
	}
}

func startGonetscopeTo(t *testing.T, stdout io.Writer, pid int, args ...string) (*exec.Cmd, chan error, *bytes.Buffer) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(gonetscopeBin, append(args, "--pid", fmt.Sprint(pid), "--ready-file", ready)...)
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFor(t, func() bool { _, err := os.Stat(ready); return err == nil }, done, &errOut)
	return cmd, done, &errOut
}

// eventsIn reads the events of gonetscope's --output file so far.
func eventsIn[T any](t *testing.T, path string) []T {
	t.Helper()
	raw, _ := os.ReadFile(path)
	var out []T
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if len(line) == 0 || line[len(line)-1] != '}' {
			continue // not written out yet
		}
		var e T
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("gonetscope line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// waitEvents waits until gonetscope has written events that ok accepts.
func waitEvents[T any](t *testing.T, path string, ok func([]T) bool) []T {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if evs := eventsIn[T](t, path); ok(evs) {
			return evs
		}
	}
	t.Fatalf("gonetscope did not write the events waited for:\n%s", must(os.ReadFile(path)))
	return nil
}

func must(b []byte, _ error) []byte { return b }

// parseEvents decodes the JSON lines gonetscope wrote, every one.
func parseEvents[T any](t *testing.T, raw []byte) []T {
	t.Helper()
	var out []T
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e T
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("gonetscope line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}
