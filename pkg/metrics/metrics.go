// Package metrics serves gonetscope's Prometheus endpoint: the in-kernel
// histograms and counters of bpf/hist.h, lost events, and each target's
// open fds, read at scrape time. Labels are bounded (pid, comm, mode,
// listener port, result/errno): never a connection or a goroutine.
//
// A Collector reads a Source; Serve mounts it on /metrics. The tracer
// (pkg/tracer) is a Source; a daemon mounts the same Handler.
package metrics

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/gonetscope/gonetscope/pkg/acceptq"
	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// Source is what a Collector reads at each scrape.
type Source interface {
	TracedProcesses() []proc.Process
	Hists() ([]bpfobj.Hist, error)
	LostTotals() map[string]map[string]uint64
	// Listeners are the traced processes' TCP listeners, from the one
	// listener iterator (pkg/acceptq).
	Listeners() ([]acceptq.Listener, error)
	// Runtime is the source's own reader of a traced process's runtime,
	// or nil: the collector then opens one of its own.
	Runtime(pid int) *goruntime.Process
}

// FirstBucket is the lowest histogram bucket exposed: values up to 2^10 ns
// (about 1 µs) share one bucket; above it the bounds are powers of two.
const FirstBucket = 9

// metric says how one enum hist_metric is exposed.
type metric struct {
	desc      *prometheus.Desc
	histogram bool
	labels    func(h *bpfobj.Hist) []string // after pid and comm
}

var (
	base = []string{"pid", "comm"}

	modeLabel   = func(h *bpfobj.Hist) []string { return []string{h.Mode} }
	noLabel     = func(h *bpfobj.Hist) []string { return nil }
	resultLabel = func(h *bpfobj.Hist) []string { return []string{result(h.Result)} }
	portLabel   = func(h *bpfobj.Hist) []string { return []string{strconv.Itoa(int(h.Port))} }
	portErrno   = func(h *bpfobj.Hist) []string {
		return []string{strconv.Itoa(int(h.Port)), event.ErrnoName(h.Result)}
	}
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("gonetscope_"+name, help, append(append([]string{}, base...), labels...), nil)
}

var metrics = map[string]metric{
	"netpoll_wait": {desc("netpoll_wait_seconds",
		"Time a goroutine was parked in the netpoller: would-block syscall to its next syscall on the fd.", "mode"), true, modeLabel},
	"netpoll_io_wait": {desc("netpoll_io_wait_seconds",
		"Part of the netpoll wait until the netpoller saw the fd ready (the peer).", "mode"), true, modeLabel},
	"netpoll_sched_delay": {desc("netpoll_sched_delay_seconds",
		"Part of the netpoll wait from fd ready to the goroutine running again (the Go scheduler).", "mode"), true, modeLabel},
	"epoll_block": {desc("epoll_block_seconds",
		"Time the netpoller's epoll_pwait blocked."), true, noLabel},
	"connect_handshake": {desc("connect_handshake_seconds",
		"TCP connect: SYN sent to established or failed.", "result"), true, resultLabel},
	"accept_queue_wait": {desc("accept_queue_wait_seconds",
		"Time an established connection waited in the listener's accept queue.", "port"), true, portLabel},
	"connects": {desc("connects_total",
		"TCP connects by result (ok or the errno).", "result"), false, resultLabel},
	"accepts": {desc("accepts_total",
		"Accepted TCP connections by listener port.", "port"), false, portLabel},
	"accept_errors": {desc("accept_errors_total",
		"Failed accepts by listener port and errno.", "port", "errno"), false, portErrno},
}

var (
	lostDesc = prometheus.NewDesc("gonetscope_events_lost_total",
		"Events lost: stream netpoll/tcp (BPF ring buffer full) or queue (user-space queue full).",
		[]string{"stream", "event"}, nil)
	openFDsDesc     = prometheus.NewDesc("gonetscope_open_fds", "Open file descriptors of the target.", base, nil)
	fdLimitDesc     = prometheus.NewDesc("gonetscope_fd_limit", "Soft RLIMIT_NOFILE of the target.", base, nil)
	listenDropsDesc = prometheus.NewDesc("gonetscope_listen_drops_total",
		"SYNs and handshakes the target's listener dropped since gonetscope attached (its share of TcpExtListenDrops): mostly a full accept queue.",
		append(append([]string{}, base...), "port"), nil)
	listenBacklogDesc = prometheus.NewDesc("gonetscope_listen_backlog",
		"Connections waiting in the target's listener's accept queue.",
		append(append([]string{}, base...), "port"), nil)
	listenBacklogMaxDesc = prometheus.NewDesc("gonetscope_listen_backlog_max",
		"The accept queue limit of the target's listener.",
		append(append([]string{}, base...), "port"), nil)
	goroutinesDesc = prometheus.NewDesc("gonetscope_goroutines",
		"Live goroutines of the target by creation site (the function with the go statement); the top sites, the rest as site=\"other\".",
		append(append([]string{}, base...), "site"), nil)
)

func result(errno int32) string {
	if errno == 0 {
		return "ok"
	}
	return event.ErrnoName(errno)
}

// TopSites is how many goroutine creation sites get their own series.
const TopSites = 20

// Collector turns a Source into Prometheus metrics at scrape time.
type Collector struct {
	src    Source
	errors prometheus.Counter

	mu         sync.Mutex
	goroutines map[int]*goroutineReader
	// routes are the request routes with series of their own (requests.go).
	routes routeCaps
}

// goroutineReader is the goroutine table of one process (or why there is none).
type goroutineReader struct {
	startTicks uint64
	p          *goruntime.Process
	err        error
}

// NewCollector reads src at every scrape.
func NewCollector(src Source) *Collector {
	return &Collector{src: src, errors: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gonetscope_scrape_errors_total", Help: "Scrapes that could not read the BPF maps."}),
		goroutines: map[int]*goroutineReader{}}
}

// Describe sends every descriptor the collector may emit.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range metrics {
		ch <- m.desc
	}
	ch <- lostDesc
	ch <- openFDsDesc
	ch <- fdLimitDesc
	ch <- goroutinesDesc
	ch <- listenDropsDesc
	ch <- listenBacklogDesc
	ch <- listenBacklogMaxDesc
	describeRequests(ch)
	describeGC(ch)
	ch <- tcpSocketsDesc
	c.errors.Describe(ch)
}

// Collect reads the source.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	procs := c.src.TracedProcesses()
	comm := make(map[uint32]string, len(procs))
	for _, p := range procs {
		comm[uint32(p.PID)] = p.Comm
		pid := strconv.Itoa(p.PID)
		if n, err := proc.OpenFDs(p.PID); err == nil {
			ch <- prometheus.MustNewConstMetric(openFDsDesc, prometheus.GaugeValue, float64(n), pid, p.Comm)
		}
		if n, err := proc.FDLimit(p.PID); err == nil {
			v := float64(n)
			if n == math.MaxUint64 {
				v = math.Inf(1)
			}
			ch <- prometheus.MustNewConstMetric(fdLimitDesc, prometheus.GaugeValue, v, pid, p.Comm)
		}
		collectTCPStates(ch, p.PID, pid, p.Comm)
	}

	c.collectGoroutines(ch, procs)
	c.collectListeners(ch, procs)
	c.collectRequests(ch, comm)

	hists, err := c.src.Hists()
	if err != nil {
		c.errors.Inc()
	}
	// Two entries can map to one label set (e.g. an unknown mode); merge them.
	type series struct {
		m      metric
		labels []string
		h      bpfobj.Hist
	}
	merged := map[string]*series{}
	for _, h := range hists {
		m, ok := metrics[h.Metric]
		name, traced := comm[h.PID]
		if !ok || !traced {
			continue
		}
		labels := append([]string{strconv.Itoa(int(h.PID)), name}, m.labels(&h)...)
		key := h.Metric + fmt.Sprint(labels)
		s := merged[key]
		if s == nil {
			s = &series{m: m, labels: labels, h: bpfobj.Hist{Buckets: make([]uint64, len(h.Buckets))}}
			merged[key] = s
		}
		s.h.Count += h.Count
		s.h.SumNs += h.SumNs
		for i, n := range h.Buckets {
			s.h.Buckets[i] += n
		}
	}
	for _, s := range merged {
		if !s.m.histogram {
			ch <- prometheus.MustNewConstMetric(s.m.desc, prometheus.CounterValue, float64(s.h.Count), s.labels...)
			continue
		}
		count, buckets := Buckets(s.h.Buckets)
		ch <- prometheus.MustNewConstHistogram(s.m.desc, count, float64(s.h.SumNs)/1e9, buckets, s.labels...)
	}

	for stream, counts := range c.src.LostTotals() {
		names := make([]string, 0, len(counts))
		for n := range counts {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(counts[n]), stream, n)
		}
	}
	c.errors.Collect(ch)
}

// collectGoroutines emits the goroutine gauges, opening each process once
// (offsets from DWARF or the version table, so stripped binaries too) and
// forgetting those no longer traced.
func (c *Collector) collectGoroutines(ch chan<- prometheus.Metric, procs []proc.Process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	live := map[int]bool{}
	for _, p := range procs {
		live[p.PID] = true
		r := c.goroutines[p.PID]
		// A new process on the PID, or the process replaced its image by
		// exec: open it again.
		if r != nil && (r.startTicks != p.StartTicks || (r.p != nil && r.p.Replaced())) {
			r = nil
		}
		if r == nil {
			r = &goroutineReader{startTicks: p.StartTicks}
			if r.p = c.src.Runtime(p.PID); r.p == nil {
				r.p, r.err = goruntime.OpenProcess(p.PID, nil)
			}
			c.goroutines[p.PID] = r
		}
		if r.p == nil {
			continue
		}
		pid := strconv.Itoa(p.PID)
		collectGC(ch, r.p, pid, p.Comm)
		sites, err := BySite(r.p)
		if err != nil {
			continue
		}
		for site, n := range TopN(sites, TopSites) {
			ch <- prometheus.MustNewConstMetric(goroutinesDesc, prometheus.GaugeValue, float64(n), pid, p.Comm, site)
		}
	}
	for pid := range c.goroutines {
		if !live[pid] {
			delete(c.goroutines, pid)
		}
	}
}

// collectListeners emits the drop counter and accept queue of every
// listening socket a traced process holds, per port.
func (c *Collector) collectListeners(ch chan<- prometheus.Metric, procs []proc.Process) {
	if len(procs) == 0 {
		return
	}
	ls, err := c.src.Listeners()
	if err != nil {
		c.errors.Inc()
		return
	}
	type key struct {
		pid  uint32
		port uint16
	}
	sums := map[key]*acceptq.Listener{} // a port can have an IPv4 and an IPv6 listener
	seen := map[[2]uint64]bool{}        // a listener held by two fds is one
	for _, l := range ls {
		if seen[[2]uint64{uint64(l.PID), l.Sk}] {
			continue
		}
		seen[[2]uint64{uint64(l.PID), l.Sk}] = true
		k := key{l.PID, l.Port}
		if s := sums[k]; s != nil {
			s.Drops += l.Drops
			s.Backlog += l.Backlog
			s.BacklogMax += l.BacklogMax
			continue
		}
		sums[k] = &l
	}
	comm := map[uint32]string{}
	for _, p := range procs {
		comm[uint32(p.PID)] = p.Comm
	}
	for k, l := range sums {
		name, traced := comm[k.pid]
		if !traced {
			continue
		}
		labels := []string{strconv.Itoa(int(k.pid)), name, strconv.Itoa(int(k.port))}
		ch <- prometheus.MustNewConstMetric(listenDropsDesc, prometheus.CounterValue, float64(l.Drops), labels...)
		ch <- prometheus.MustNewConstMetric(listenBacklogDesc, prometheus.GaugeValue, float64(l.Backlog), labels...)
		ch <- prometheus.MustNewConstMetric(listenBacklogMaxDesc, prometheus.GaugeValue, float64(l.BacklogMax), labels...)
	}
}

// Close releases what the collector loaded and opened.
func (c *Collector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.goroutines)
	return nil
}

// BySite counts p's live goroutines by creation site: the function holding
// the go statement, the innermost one when it was inlined (as `trace
// --stacks` names it); "unknown" when the pc is not in the executable.
func BySite(p *goruntime.Process) (map[string]int, error) {
	gs, err := p.Goroutines()
	if err != nil {
		return nil, err
	}
	sites := map[string]int{}
	for _, g := range gs {
		site := "unknown"
		if fs := p.Syms.Frames(g.GoPC, false); len(fs) > 0 {
			site = fs[0].Func
		}
		sites[site]++
	}
	return sites, nil
}

// TopN keeps the n largest counts (ties by name) and sums the rest as "other".
func TopN(counts map[string]int, n int) map[string]int {
	if len(counts) <= n {
		return counts
	}
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if counts[names[i]] != counts[names[j]] {
			return counts[names[i]] > counts[names[j]]
		}
		return names[i] < names[j]
	})
	out := make(map[string]int, n+1)
	for i, k := range names {
		if i < n {
			out[k] = counts[k]
		} else {
			out["other"] += counts[k]
		}
	}
	return out
}

// Buckets turns log2 bucket counts (bucket i: 2^i <= v < 2^(i+1) ns) into
// Prometheus cumulative buckets keyed by upper bound in seconds, and the
// total count. Buckets below FirstBucket are folded into it; the last
// bucket is left to +Inf.
func Buckets(log2 []uint64) (uint64, map[float64]uint64) {
	out := make(map[float64]uint64, len(log2))
	var cum uint64
	for i, n := range log2 {
		cum += n
		if i < FirstBucket || i == len(log2)-1 {
			continue
		}
		out[math.Ldexp(1, i+1)/1e9] = cum
	}
	return cum, out
}

// Handler serves /metrics for c, with the serving process's own CPU and
// memory (process_*) beside gonetscope's metrics.
func Handler(c *Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	return mux
}

// WriteText writes src's metrics once in the Prometheus text format, as a
// scrape of /metrics shows them, without gonetscope's own process metrics.
func WriteText(w io.Writer, src Source) error {
	c := NewCollector(src)
	defer c.Close()
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return err
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return err
		}
	}
	return nil
}

// Server is a running /metrics endpoint.
type Server struct {
	srv *http.Server
	ln  net.Listener
	c   *Collector
}

// Listen binds addr (HOST:PORT; port 0 picks one) and serves src's metrics
// until Close.
func Listen(addr string, src Source) (*Server, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on --metrics-addr %s: %w", addr, err)
	}
	c := NewCollector(src)
	s := &Server{srv: &http.Server{Handler: Handler(c), ReadHeaderTimeout: 10 * time.Second}, ln: ln, c: c}
	go s.srv.Serve(ln) // returns http.ErrServerClosed on Close
	return s, nil
}

// CheckAddr rejects an address that is not HOST:PORT, before anything is
// loaded. An empty HOST (":9464") means every interface: allowed, because
// the user asked for it.
func CheckAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr %q is not HOST:PORT: use e.g. 127.0.0.1:9464", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("--metrics-addr %q has no valid port: use e.g. 127.0.0.1:9464", addr)
	}
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	s.c.Close()
	return err
}
