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
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDistroGoServer traces a Go server as a distribution ships it:
// Debian's prometheus, built by Debian with go1.19.8, stripped, dynamically
// linked (cgo). A client sends half a request, waits, then the rest: the
// goroutine serving it parks in the netpoller for that long. Its netpoll_wait
// must name the server's end of that very connection, and its goroutine id
// must be the one the server's own goroutine dump (its /debug/pprof)
// shows serving an idle connection in IO wait.
func TestDistroGoServer(t *testing.T) {
	const bin = "/usr/bin/prometheus"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("needs Debian's prometheus package (apt-get install prometheus; .ci/run installs it)")
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte("global:\n  scrape_interval: 1h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	server := exec.Command(bin, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var serverLog bytes.Buffer
	server.Stdout, server.Stderr = &serverLog, &serverLog
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 60s: %v\n%s", err, serverLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	var out bytes.Buffer
	tracer, done, _ := startGonetscopeTo(t, &out, server.Process.Pid, "trace", "--min-wait", "100ms", "--connections", "all")

	// Half a request, a pause, the rest; the connection stays open after the
	// response, so its goroutine parks again, idle, in IO wait.
	const pause = 300 * time.Millisecond
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := c.LocalAddr().(*net.TCPAddr).Port
	io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	time.Sleep(pause)
	io.WriteString(c, "\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	measured := time.Since(start)
	time.Sleep(200 * time.Millisecond) // the serving goroutine parks again
	dump := goroutineDump(t, addr)

	tracer.Process.Signal(syscall.SIGINT)
	if err := <-done; err != nil {
		t.Fatalf("gonetscope: %v", err)
	}
	var attached, wait, accept *ev
	for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		var e ev
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("gonetscope line %q: %v", line, err)
		}
		switch {
		case e.Event == "attached":
			attached = &e
		case e.Event == "netpoll_wait" && e.Mode == "read" && e.RPort == uint16(client):
			wait = &e
		case e.Event == "tcp_accept" && e.RPort == uint16(client):
			accept = &e
		}
	}
	if attached == nil || attached.GoVersion != "go1.19.8" || attached.OffsetsFrom != "table" || len(withoutOldGC(attached.GoVersion, featureLimits(attached.Limits))) != 0 {
		t.Fatalf("attached: %+v; want go1.19.8, offsets from the table, no limits", attached)
	}
	if wait == nil {
		t.Fatalf("no netpoll_wait on the server's end of the connection from port %d:\n%s", client, out.String())
	}
	if accept == nil || accept.Goid == nil || accept.FD != wait.FD {
		t.Errorf("tcp_accept of the connection: %+v; want one with a goroutine, fd %d", accept, wait.FD)
	}
	w := float64(wait.WaitNs)
	if w < 0.9*float64(pause) || w > float64(measured) || !wait.ReadySeen || wait.IoWaitNs+wait.SchedDelayNs != wait.WaitNs {
		t.Errorf("netpoll_wait %+v: want %v <= wait_ns <= %v, ready_seen, io + sched = wait", wait, pause, measured)
	}
	g := goidOf(t, *wait)
	st, ok := dump[g]
	if !ok || st.state != "IO wait" || !strings.Contains(st.stack, "net/http.(*conn).serve") {
		t.Errorf("goroutine %d (netpoll_wait): prometheus's own dump says %+v; want it in IO wait in net/http.(*conn).serve", g, st)
	}
	t.Logf("goroutine %d waited %v for the rest of the request, fd %d", g, time.Duration(wait.WaitNs), wait.FD)
}

type dumpedGoroutine struct {
	state, stack string
}

// goroutineDump reads the server's own goroutine dump, by id.
func goroutineDump(t *testing.T, addr string) map[uint64]dumpedGoroutine {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	head := regexp.MustCompile(`^goroutine (\d+) \[([^,\]]+)`)
	out := map[uint64]dumpedGoroutine{}
	for _, block := range strings.Split(string(raw), "\n\n") {
		m := head.FindStringSubmatch(block)
		if m == nil {
			continue
		}
		id, _ := strconv.ParseUint(m[1], 10, 64)
		out[id] = dumpedGoroutine{state: m[2], stack: block}
	}
	if len(out) == 0 {
		t.Fatalf("no goroutines in prometheus's dump:\n%.500s", raw)
	}
	return out
}
