package main

import (
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

// TestExecIntoAnotherGoVersion: a traced target (Go 1.26) replaces itself
// by exec with a stripped PIE binary built by Go 1.24 (other offsets, other
// epoll tagging), same PID. gonetscope notices the exec, says so in an
// attached event (reason exec, the new go_version), and attributes the
// new image's netpoll wait to the right goroutine, as it did the old one's.
func TestExecIntoAnotherGoVersion(t *testing.T) {
	const oldVersion = "go1.24.11"
	src, err := os.ReadFile("testdata/execer/main.go")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module execer\n\ngo 1.22\n"), 0o644)
	next := filepath.Join(dir, "execer-"+oldVersion)
	build := exec.Command("go", "build", "-ldflags=-s -w", "-buildmode=pie", "-o", next, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOTOOLCHAIN="+oldVersion, "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building with %s: %v\n%s", oldVersion, err, out)
	}
	first := buildGo(t, t.TempDir(), "", "github.com/gonetscope/gonetscope/cmd/gonetscope/testdata/execer")

	target := exec.Command(first, "-exec", next)
	stdin, next1 := startTarget(t, target)
	pid := int(next1("ready")["pid"].(float64))
	outFile := filepath.Join(dir, "events.json")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	done, errOut := startGonetscope(t, pid, "trace", "--output", outFile, "--min-wait", "10ms", "--metrics-addr", addr)

	events := func() []map[string]any {
		raw, _ := os.ReadFile(outFile)
		var evs []map[string]any
		for _, l := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
			var e map[string]any
			if json.Unmarshal(l, &e) == nil {
				evs = append(evs, e)
			}
		}
		return evs
	}
	io.WriteString(stdin, "go\n")
	goidOld := uint64(next1("read")["goid"].(float64))
	if n := goroutineGauge(t, addr, pid); n == 0 {
		t.Errorf("before the exec: no gonetscope_goroutines for PID %d", pid)
	}
	io.WriteString(stdin, "exec\n")
	if v := next1("ready")["go_version"]; v != oldVersion {
		t.Fatalf("after exec the target runs %v, want %s", v, oldVersion)
	}
	waitFor(t, func() bool {
		for _, e := range events() {
			if e["event"] == "attached" && e["reason"] == "exec" {
				return true
			}
		}
		return false
	}, done, errOut)
	// The gauge reads the new image's goroutine table, not the old one's.
	if n := goroutineGauge(t, addr, pid); n == 0 {
		t.Errorf("after the exec: no gonetscope_goroutines for PID %d", pid)
	}
	io.WriteString(stdin, "go\n")
	goidNew := uint64(next1("read")["goid"].(float64))
	stdin.Close()
	target.Wait()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gonetscope trace: %v\n%s", err, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gonetscope trace did not end after its target exited")
	}

	afterExec := false
	var reads [2][]uint64 // goids of the delayed reads before and after the exec
	var attached []map[string]any
	for _, e := range events() {
		switch e["event"] {
		case "attached":
			attached = append(attached, e)
			afterExec = e["reason"] == "exec"
		case "netpoll_wait":
			if e["mode"] != "read" || e["wait_ns"].(float64) < 40e6 {
				continue
			}
			g, ok := e["goid"].(float64)
			if !ok {
				t.Errorf("a netpoll_wait without goid: %v", e)
				continue
			}
			i := 0
			if afterExec {
				i = 1
			}
			reads[i] = append(reads[i], uint64(g))
		}
	}
	if len(attached) != 2 || attached[1]["go_version"] != oldVersion || attached[1]["offsets_from"] != "table" {
		t.Fatalf("attached events %v: want a second one with reason exec, go_version %s, offsets from the table", attached, oldVersion)
	}
	if len(reads[0]) != 1 || reads[0][0] != goidOld {
		t.Errorf("before the exec: delayed reads on goroutines %v, want one on %d", reads[0], goidOld)
	}
	if len(reads[1]) != 1 || reads[1][0] != goidNew {
		t.Errorf("after the exec: delayed reads on goroutines %v, want one on %d", reads[1], goidNew)
	}
	if !strings.Contains(fmt.Sprint(attached[1]["exe"]), "execer-"+oldVersion) {
		t.Errorf("attached after exec names exe %v", attached[1]["exe"])
	}
}

// goroutineGauge sums gonetscope_goroutines of pid over its sites.
func goroutineGauge(t *testing.T, addr string, pid int) float64 {
	t.Helper()
	families := metricFamilies(t, "/metrics", scrape(t, "http://"+addr+"/metrics"))
	var sum float64
	for _, m := range families["gonetscope_goroutines"].GetMetric() {
		if matches(m, map[string]string{"pid": fmt.Sprint(pid)}) {
			sum += m.Gauge.GetValue()
		}
	}
	return sum
}
