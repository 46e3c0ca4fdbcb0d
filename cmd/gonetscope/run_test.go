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
	"testing"
)

// startTarget starts cmd, a target that prints one JSON object per line
// with an "op", and returns its stdin and a reader of its next line, which
// must have the op given ("" takes any).
func startTarget(t *testing.T, cmd *exec.Cmd) (io.WriteCloser, func(op string) map[string]any) {
	t.Helper()
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	return stdin, func(op string) map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("%s ended early, waiting for %q", filepath.Base(cmd.Path), op)
		}
		var f map[string]any
		if err := json.Unmarshal(lines.Bytes(), &f); err != nil || (op != "" && f["op"] != op) {
			t.Fatalf("%s said %q, want op %q", filepath.Base(cmd.Path), lines.Text(), op)
		}
		return f
	}
}

// startGonetscope runs gonetscope with args, --pid pid and a ready file,
// and returns once it is ready: its exit status and its stderr.
func startGonetscope(t *testing.T, pid int, args ...string) (chan error, *bytes.Buffer) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(gonetscopeBin, append(args, "--pid", fmt.Sprint(pid), "--ready-file", ready)...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFor(t, func() bool { _, err := os.Stat(ready); return err == nil }, done, &errOut)
	return done, &errOut
}
