package main

// The Prometheus endpoint of `trace --metrics-addr` against a real target:
// exposition format checked by promtool, and counts compared with what the
// target printed about itself.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gonetscope/gonetscope/pkg/netpoll"
)

// promtool finds promtool (Debian package prometheus): GONETSCOPE_PROMTOOL,
// else PATH.
func promtool(t *testing.T) string {
	if p := os.Getenv("GONETSCOPE_PROMTOOL"); p != "" {
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install it (apt-get install prometheus) or set GONETSCOPE_PROMTOOL")
	}
	return p
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestMetrics traces a target that dials, accepts, reads after a delay,
// is refused, and makes `flood` raw EAGAIN reads, with a --min-wait so
// long that no netpoll event is sent: the histograms must still count
// every wait, exactly, on each netpoll path.
func TestMetrics(t *testing.T) {
	for _, hooks := range []string{"auto", "tracepoint"} {
		t.Run(hooks, func(t *testing.T) { checkMetrics(t, hooks) })
	}
}

func checkMetrics(t *testing.T, hooks string) {
	const rounds, flood = 2, 300
	target := exec.Command(nettargetBin, "-wait-stdin", "-rounds", fmt.Sprint(rounds),
		"-flood", fmt.Sprint(flood), "-delay", "20ms", "-linger", "20s")
	stdin, nextFact := startTargetOf[fact](t, target)
	var facts []fact
	next := func() fact {
		f := nextFact()
		facts = append(facts, f)
		return f
	}
	pid := next().PID

	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	out := filepath.Join(t.TempDir(), "trace.jsonl")
	done, _ := startGonetscope(t, pid, "trace", "--min-wait", "1h", "--metrics-addr", addr, "--output", out, "--hooks", hooks)

	io.WriteString(stdin, "go\n")
	for next().Op != "done" {
	}
	body := scrape(t, "http://"+addr+"/metrics")

	promtoolCheck(t, body)

	families := metricFamilies(t, "/metrics", body)
	count := func(family string, labels map[string]string) uint64 {
		t.Helper()
		f := families[family]
		if f == nil {
			t.Fatalf("no %s in /metrics", family)
		}
		var n uint64
		found := false
		for _, m := range f.Metric {
			if !matches(m, labels) {
				continue
			}
			found = true
			switch {
			case m.Histogram != nil:
				n += m.Histogram.GetSampleCount()
			case m.Counter != nil:
				n += uint64(m.Counter.GetValue())
			case m.Gauge != nil:
				n += uint64(m.Gauge.GetValue())
			}
		}
		if !found {
			t.Fatalf("no %s%v in /metrics", family, labels)
		}
		return n
	}
	sel := func(kv ...string) map[string]string {
		m := map[string]string{"pid": strconv.Itoa(pid)}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	var reads, dials, refused int
	var floodReads int
	var readNs int64 // the delayed reads' waits, by the target's own clock
	ports := map[uint16]int{}
	for _, f := range facts {
		switch f.Op {
		case "read":
			reads++
			readNs += f.WaitNs
		case "dial":
			dials++
		case "refused":
			refused++
		case "flood":
			floodReads = f.Reads
		case "accept":
			ports[f.LPort]++
		}
	}
	// Each delayed read is one wait; the flood's n reads are n-1 more.
	waits := uint64(reads + floodReads - 1)
	want := netpoll.Tracepoint
	if hooks == "auto" {
		want = netpollAuto(t)
	}
	if mech := attachedHooks(t, out)["netpoll"]; mech != want {
		t.Errorf("--hooks %s: netpoll hooks %q, want %q", hooks, mech, want)
	}
	if got := count("gonetscope_netpoll_wait_seconds", sel("mode", "read")); got != waits {
		t.Errorf("netpoll_wait count for mode read: got %d, want %d (%d delayed reads, %d flood reads)", got, waits, reads, floodReads)
	}
	for _, part := range []string{"gonetscope_netpoll_io_wait_seconds", "gonetscope_netpoll_sched_delay_seconds"} {
		if got := count(part, sel("mode", "read")); got != waits {
			t.Errorf("%s count for mode read: got %d, want %d", part, got, waits)
		}
	}
	if got := count("gonetscope_connects_total", sel("result", "ok")); got != uint64(dials) {
		t.Errorf("connects ok: got %d, want %d", got, dials)
	}
	if got := count("gonetscope_connects_total", sel("result", "ECONNREFUSED")); got != uint64(refused) {
		t.Errorf("connects refused: got %d, want %d", got, refused)
	}
	if got := count("gonetscope_connect_handshake_seconds", sel()); got != uint64(dials+refused) {
		t.Errorf("connect handshakes: got %d, want %d", got, dials+refused)
	}
	for port, n := range ports {
		s := sel("port", strconv.Itoa(int(port)))
		if got := count("gonetscope_accepts_total", s); got != uint64(n) {
			t.Errorf("accepts on port %d: got %d, want %d", port, got, n)
		}
		if got := count("gonetscope_accept_queue_wait_seconds", s); got != uint64(n) {
			t.Errorf("accept queue waits on port %d: got %d, want %d", port, got, n)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	if got := count("gonetscope_open_fds", sel()); got != uint64(len(fds)) {
		t.Errorf("open fds: got %d, want %d", got, len(fds))
	}
	// The sum holds the delayed reads' waits: 90% at least of what the
	// target measured around them (a Read that began late, on a loaded
	// host, waited less than the 20ms delay), which must be most of
	// the delay.
	if sum := families["gonetscope_netpoll_wait_seconds"]; sum != nil {
		var s float64
		for _, m := range sum.Metric {
			if matches(m, sel("mode", "read")) {
				s += m.Histogram.GetSampleSum()
			}
		}
		measured := time.Duration(readNs).Seconds()
		if measured < float64(reads)*0.010 || s < 0.9*measured {
			t.Errorf("netpoll_wait sum for mode read %.4fs; the target's %d delayed reads of 20ms waited %.4fs", s, reads, measured)
		}
	}
	target.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("gonetscope did not end after its target was killed")
	}
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, l := range m.Label {
		if v, ok := labels[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

// metricFamilies parses a Prometheus text exposition; what names it in
// errors.
func metricFamilies(t *testing.T, what string, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing %s: %v", what, err)
	}
	return families
}

// promtoolCheck wants promtool to find nothing wrong in an exposition.
func promtoolCheck(t *testing.T, body []byte) {
	t.Helper()
	// The arm64 VM of make test-kernels has no promtool for its
	// architecture; the same exposition code is linted by make test.
	if os.Getenv("GONETSCOPE_PROMTOOL") == "none" {
		t.Log("promtool check metrics: skipped (GONETSCOPE_PROMTOOL=none)")
		return
	}
	check := exec.Command(promtool(t), "check", "metrics")
	check.Stdin = bytes.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func scrape(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: status %d, %v", url, resp.StatusCode, err)
	}
	return body
}

// TestGoroutineGauge: the target starts a known number of goroutines in
// main.spawnBlocked and holds them; the gauge for that creation site must
// say exactly that many. Also for a stripped PIE target, whose runtime
// offsets come from the version table.
func TestGoroutineGauge(t *testing.T) {
	t.Run("plain", func(t *testing.T) { checkGoroutineGauge(t, buildTarget(t, "proftarget")) })
	t.Run("stripped-pie", func(t *testing.T) {
		checkGoroutineGauge(t, buildTarget(t, "proftarget", "-ldflags=-s -w", "-buildmode=pie"))
	})
}

func checkGoroutineGauge(t *testing.T, bin string) {
	const n = 37
	target := exec.Command(bin, "-goroutines", fmt.Sprint(n))
	stdin, next := startTarget(t, target)
	pid := int(next("")["pid"].(float64))

	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startGonetscope(t, pid, "trace", "--metrics-addr", addr, "--output", os.DevNull)

	io.WriteString(stdin, "go\n")
	next("spawned")
	families := metricFamilies(t, "/metrics", scrape(t, "http://"+addr+"/metrics"))
	var got float64
	found := false
	for _, m := range families["gonetscope_goroutines"].GetMetric() {
		if matches(m, map[string]string{"pid": fmt.Sprint(pid), "site": "main.spawnBlocked"}) {
			got, found = m.Gauge.GetValue(), true
		}
	}
	if !found || got != n {
		t.Errorf("gonetscope_goroutines{site=main.spawnBlocked} = %v (found %v), want %d", got, found, n)
	}
	io.WriteString(stdin, "done\n")
}

// TestListenMetrics: the target listens with an accept queue of 1, never
// accepts, and dials it at once; plus a listener made with net.Listen
// (MPTCP). The queue gauges must say what the target saw, and the drop
// counter cover every failed dial without exceeding the host's ListenDrops.
func TestListenMetrics(t *testing.T) {
	const dials = 8
	target := exec.Command(buildTarget(t, "proftarget"), "-overflow", fmt.Sprint(dials))
	stdin, next := startTarget(t, target)
	pid := int(next("")["pid"].(float64))
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	// The host's count starts before gonetscope's: any drop gonetscope
	// may count (its namespace's, from attach on) is in the host's window.
	before := listenDrops(t, pid)
	startGonetscope(t, pid, "trace", "--metrics-addr", addr, "--output", os.DevNull)

	io.WriteString(stdin, "go\n")
	f := next("overflow")
	body := scrape(t, "http://"+addr+"/metrics")
	hostDrops := listenDrops(t, pid) - before
	families := metricFamilies(t, "/metrics", body)
	value := func(family string, port float64) float64 {
		t.Helper()
		for _, m := range families[family].GetMetric() {
			if matches(m, map[string]string{"pid": fmt.Sprint(pid), "port": fmt.Sprint(port)}) {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				return m.Gauge.GetValue()
			}
		}
		t.Fatalf("no %s{port=%v} in /metrics", family, port)
		return 0
	}
	port, ok, failed := f["port"].(float64), f["ok"].(float64), f["failed"].(float64)
	if failed == 0 {
		t.Fatalf("no dial failed: the accept queue did not overflow (%v)", f)
	}
	// A client is connected once it has the SYN-ACK; a queue of 1 holds
	// two, and a third client's final ACK is dropped (overflow) until the
	// queue has room: those connected but are not queued. The kernel
	// checks for room without the listener's lock, so ACKs handled on two
	// CPUs at once can queue one more: the gauge must say what the kernel
	// says (/proc/net/tcp), at most what connected.
	kernel := listenQueue(t, pid, int(port))
	if got := value("gonetscope_listen_backlog", port); got != float64(kernel) || got > ok || got < min(ok, 2) {
		t.Errorf("listen_backlog %v; the kernel's queue holds %d, %v dials connected and were never accepted", got, kernel, ok)
	}
	if got := value("gonetscope_listen_backlog_max", port); got != 1 {
		t.Errorf("listen_backlog_max %v, want 1", got)
	}
	if got := value("gonetscope_listen_drops_total", port); got < failed || got > float64(hostDrops) {
		t.Errorf("listen_drops_total %v, want between %v failed dials and %d host ListenDrops", got, failed, hostDrops)
	}
	somaxconn, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := strconv.ParseFloat(strings.TrimSpace(string(somaxconn)), 64)
	if got := value("gonetscope_listen_backlog_max", f["net_listen_port"].(float64)); got != want {
		t.Errorf("listen_backlog_max of the net.Listen listener %v, want somaxconn %v", got, want)
	}
	io.WriteString(stdin, "done\n")
}

// listenDrops reads TcpExt ListenDrops of pid's network namespace. Not
// /proc/net: that is the namespace of this process's main thread, which a
// test that enters a namespace on a locked thread can move.
func listenDrops(t *testing.T, pid int) uint64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/netstat", pid))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) {
			continue
		}
		for j, n := range names {
			if n == "ListenDrops" {
				v, _ := strconv.ParseUint(values[j], 10, 64)
				return v
			}
		}
	}
	t.Fatal("no TcpExt ListenDrops in /proc/net/netstat")
	return 0
}

// listenQueue is the accept queue of pid's TCP listener on port, as the
// kernel gives it in /proc/PID/net/tcp and tcp6 (rx_queue of a LISTEN
// socket: sk_ack_backlog).
func listenQueue(t *testing.T, pid, port int) int {
	t.Helper()
	for _, file := range []string{"tcp", "tcp6"} {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 5 || f[3] != "0A" || !strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) {
				continue
			}
			_, rx, _ := strings.Cut(f[4], ":")
			n, err := strconv.ParseUint(rx, 16, 32)
			if err != nil {
				t.Fatalf("%s: %q: %v", file, line, err)
			}
			return int(n)
		}
	}
	t.Fatalf("no listener on port %d in /proc/%d/net/tcp or tcp6", port, pid)
	return 0
}

// attachedHooks reads the hooks of the attached event in a trace's output
// file (written at attach, before the ready file).
func attachedHooks(t *testing.T, file string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(raw, []byte("\n")) {
		var e struct {
			Event string            `json:"event"`
			Hooks map[string]string `json:"hooks"`
		}
		if json.Unmarshal(line, &e) == nil && e.Event == "attached" {
			return e.Hooks
		}
	}
	t.Fatalf("no attached event in %s", file)
	return nil
}
