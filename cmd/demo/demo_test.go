package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `make demo`'s program end to end (as root, like make demo)
// and checks that the summary names each problem of the demo service from
// its events, within the two minutes the demo promises.
func TestDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the demo loads BPF programs: run the tests as root")
	}
	dir := t.TempDir()
	for _, pkg := range []string{"gonetscope", "demo/demoserver", "demo"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, filepath.Base(pkg)), "github.com/gonetscope/gonetscope/cmd/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(dir, "demo"),
		"--gonetscope", filepath.Join(dir, "gonetscope"), "--server", filepath.Join(dir, "demoserver")).Output()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		"1. Slow peer (netpoll_wait)",
		"2. Starved goroutine (netpoll_wait)",
		"3. Stalled accept loop (tcp_accept)",
		"4. Goroutine leak (goroutine_leak)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the demo's summary does not name %q:\n%s", want, out[strings.LastIndex(string(out), "# What"):])
		}
	}
	if strings.Contains(string(out), "LOST") {
		t.Errorf("the demo lost events")
	}
}
