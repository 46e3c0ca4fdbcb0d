//go:build vmselfcheck

// Built only by scripts/kernels/selfcheck.sh (go test -c -tags vmselfcheck),
// so that `go test ./...` on a host has no test that can only skip.

package main

import (
	"flag"
	"os"
	"testing"
)

// These tests exist so that a `go test -c` binary of this package can check
// run.sh: TestInVM passes only inside the VM, and -selfcheck.fail makes the
// binary fail so that a failing test's non-zero status can be seen to
// propagate. Outside the VM TestInVM skips and -selfcheck.fail is off.
var failOnRequest = flag.Bool("selfcheck.fail", false, "make TestFailOnRequest fail")

func TestInVM(t *testing.T) {
	if h, _ := os.Hostname(); h != "gonetscope-vm" {
		t.Skip("not inside the scripts/kernels/run.sh VM")
	}
	for _, f := range []string{"/sys/kernel/btf/vmlinux", "/sys/kernel/tracing/kprobe_events"} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	if err := fentryTCPConnect(); err != nil {
		t.Error("fentry tcp_connect:", err)
	}
}

func TestFailOnRequest(t *testing.T) {
	if *failOnRequest {
		t.Fatal("failing as asked by -selfcheck.fail")
	}
}
