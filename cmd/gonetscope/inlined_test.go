package main

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestProfileAndStacksAgree: `trace --stacks` and `profile --kind netpoll
// --full-stacks`, run together on one stripped PIE target, symbolize with
// the same tables: every function `trace` marks as inlined into a
// netpoll_wait stack is an inlined line of a location in the profile too
// (the wait path of net.Conn.Read has syscall.Read and
// internal/poll.ignoringEINTRIO inlined).
func TestProfileAndStacksAgree(t *testing.T) {
	target := exec.Command(buildTarget(t, "proftarget", "-ldflags=-s -w", "-buildmode=pie"), "-waits", "5", "-delay", "10ms")
	stdin, next := startTarget(t, target)
	pid := int(next("")["pid"].(float64))

	dir := t.TempDir()
	traceOut, profOut := filepath.Join(dir, "trace.json"), filepath.Join(dir, "netpoll.pb.gz")
	traceDone, traceErr := startGonetscope(t, pid, "trace", "--stacks", "--output", traceOut)
	profDone, profErr := startGonetscope(t, pid, "profile", "--kind", "netpoll", "--full-stacks", "--duration", "60s", "-o", profOut)
	io.WriteString(stdin, "go\n")
	for next("")["op"] != "done" {
	}
	target.Wait()
	if err := <-traceDone; err != nil {
		t.Fatalf("gonetscope trace: %v\n%s", err, traceErr)
	}
	if err := <-profDone; err != nil {
		t.Fatalf("gonetscope profile: %v\n%s", err, profErr)
	}

	raw, err := os.ReadFile(traceOut)
	if err != nil {
		t.Fatal(err)
	}
	traced := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		var e ev
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("trace line %q: %v", line, err)
		}
		if e.Event != "netpoll_wait" {
			continue
		}
		for _, f := range e.Stack {
			if f.Inlined {
				traced[f.Func] = true
			}
		}
	}
	profiled := map[string]bool{}
	for _, l := range readProfile(t, profOut).Location {
		for _, ln := range l.Line[:max(len(l.Line)-1, 0)] { // all but the outermost: inlined
			profiled[ln.Function.Name] = true
		}
	}
	const inlined = "internal/poll.ignoringEINTRIO"
	if !traced[inlined] {
		t.Errorf("trace --stacks: %q is not an inlined frame of a netpoll_wait; inlined: %v", inlined, slices.Sorted(maps.Keys(traced)))
	}
	for fn := range traced {
		if !profiled[fn] {
			t.Errorf("%s is inlined in trace --stacks but not in the profile; the profile's inlined lines: %s", fn, strings.Join(slices.Sorted(maps.Keys(profiled)), ", "))
		}
	}
}
