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
// its events, and that the diagnose checklist after it has each as a
// problem, within the two minutes the demo promises.
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
	// Then the checklist of gonetscope diagnose, 100 columns wide, with
	// each of the four problems on its own item.
	i := strings.Index(string(out), "# The same service, diagnosed")
	if i < 0 {
		t.Fatalf("the demo printed no diagnose checklist:\n%s", out)
	}
	checklist := string(out[i:])
	for _, want := range []string{
		"problem  Netpoll blocking on a slow peer",
		"problem  Scheduler latency",
		"problem  Accept-queue overflows",
		"problem  Goroutine leaks",
		"Top findings:",
	} {
		if !strings.Contains(checklist, want) {
			t.Errorf("the checklist has no %q:\n%s", want, checklist)
		}
	}
	for _, line := range strings.Split(checklist, "\n") {
		if n := len([]rune(line)); n > 100 && !strings.HasPrefix(line, "# $") {
			t.Errorf("a checklist line of %d columns: %q", n, line)
		}
	}
}
