package diagnose

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// acceptQueue: any accept-queue overflow (over the threshold) is a
// problem; the evidence is each listener's count, verdict and acceptors.
func acceptQueue(s *stream) Item {
	it := Item{ID: "accept_queue", Title: "Accept-queue overflows", Unit: "count",
		Threshold: "none", Limit: f64(float64(s.th.AcceptOverflows))}
	if s.th.AcceptOverflows > 0 {
		it.Threshold = fmt.Sprintf("at most %d", s.th.AcceptOverflows)
	}
	type listener struct {
		laddr     string
		lport     uint16
		fd        int32
		overflows uint64
		drops     uint64
		verdicts  map[string]uint64
		last      Event
	}
	byKey := map[string]*listener{}
	var total uint64
	for _, e := range s.of("listen_overflow") {
		k := fmt.Sprintf("%s:%d/%d", e.Laddr, e.Lport, e.ListenFD)
		l := byKey[k]
		if l == nil {
			l = &listener{laddr: e.Laddr, lport: e.Lport, fd: e.ListenFD, verdicts: map[string]uint64{}}
			byKey[k] = l
		}
		l.overflows += e.Overflows
		l.drops += e.Drops
		if e.Overflows > 0 {
			l.verdicts[e.Verdict] += e.Overflows
			l.last = e
		}
		total += e.Overflows
	}
	it.Measured = f64(float64(total))
	it.Value = plural(total, "overflow")
	if total <= s.th.AcceptOverflows {
		it.Status = OK
		return it
	}
	it.Status = Problem
	it.score = float64(total) / float64(max(s.th.AcceptOverflows, 1))
	ls := slices.Collect(maps.Values(byKey))
	slices.SortFunc(ls, func(a, b *listener) int { return cmp.Compare(b.overflows, a.overflows) })
	for _, l := range ls {
		if l.overflows == 0 {
			continue
		}
		verdict := topKey(l.verdicts)
		ev := Evidence{Laddr: l.laddr, Lport: l.lport, FDs: []int32{l.fd}, Count: l.overflows,
			Text: fmt.Sprintf("port %d (%s, fd %d): %d overflows, %d drops, verdict %s; queue %d of %d",
				l.lport, l.laddr, l.fd, l.overflows, l.drops, verdict, l.last.Backlog, l.last.BacklogMax)}
		var acc []string
		for _, a := range l.last.Acceptors {
			ev.Goids = append(ev.Goids, a.Goid)
			acc = append(acc, fmt.Sprintf("goroutine %d %s %s", a.Goid, a.State, dur(a.SinceNs)))
			if ev.Stack == nil {
				ev.Stack = telling(a.Stack, 3)
			}
		}
		if len(acc) > 0 {
			ev.Text += "; acceptors: " + strings.Join(acc, ", ")
		} else {
			ev.Text += "; no acceptor"
		}
		it.Evidence = append(it.Evidence, ev)
	}
	l := ls[0]
	it.Finding = fmt.Sprintf("The accept queue of port %d overflowed %d times (%s): %s; the kernel dropped those clients' handshakes, which retry after a second or fail.",
		l.lport, l.overflows, topKey(l.verdicts), verdictWords[topKey(l.verdicts)])
	return it
}

var verdictWords = map[string]string{
	"no_acceptor":       "no goroutine accepts on it",
	"acceptor_starved":  "its acceptor was ready but the Go scheduler did not run it",
	"backlog_too_small": "the accept loop keeps up on average, but bursts overflow the backlog",
	"acceptor_busy":     "the accept loop was busy with other work while the queue filled",
}

// slowPeer: per peer, the io_wait p99 of the in_request read and write
// waits in the stream (those of at least min_wait_ns: shorter ones are
// not sent, so this is the p99 of the waits that long).
func slowPeer(s *stream) Item {
	th := uint64(s.th.SlowPeerP99)
	it := Item{ID: "slow_peer", Title: "Netpoll blocking on a slow peer", Unit: "ns",
		Threshold: "io_wait p99 ≤ " + dur(th) + " per peer", Limit: f64(float64(th))}
	type peer struct {
		name   string
		raddr  string
		rport  uint16
		waits  []uint64
		goids  map[uint64]bool
		fds    map[int32]bool
		stack  []Frame
		worst  uint64
		worstG uint64
	}
	peers := map[string]*peer{}
	for _, e := range s.of("netpoll_wait") {
		if e.Kind != "in_request" || (e.Mode != "read" && e.Mode != "write") {
			continue
		}
		name := "fd " + strconv.Itoa(int(e.FD))
		if e.Raddr != "" {
			name = net.JoinHostPort(e.Raddr, strconv.Itoa(int(e.Rport)))
		}
		p := peers[name]
		if p == nil {
			p = &peer{name: name, raddr: e.Raddr, rport: e.Rport, goids: map[uint64]bool{}, fds: map[int32]bool{}}
			peers[name] = p
		}
		p.waits = append(p.waits, e.IoWaitNs)
		p.fds[e.FD] = true
		if e.Goid != nil {
			p.goids[*e.Goid] = true
		}
		if e.IoWaitNs >= p.worst {
			p.worst, p.stack = e.IoWaitNs, e.Stack
			if e.Goid != nil {
				p.worstG = *e.Goid
			}
		}
	}
	if len(peers) == 0 {
		it.Status, it.Value, it.Measured = OK, "no in_request waits"+minWaitNote(s), f64(0)
		return it
	}
	ps := slices.Collect(maps.Values(peers))
	for _, p := range ps {
		slices.Sort(p.waits)
	}
	slices.SortFunc(ps, func(a, b *peer) int { return cmp.Compare(p99(b.waits), p99(a.waits)) })
	w := ps[0]
	it.Measured = f64(float64(p99(w.waits)))
	it.Value = fmt.Sprintf("p99 %s on %s (%s%s)", dur(p99(w.waits)), w.name, plural(len(w.waits), "wait"), minWaitNote(s))
	if p99(w.waits) <= th {
		it.Status = OK
		return it
	}
	it.Status = Warn
	if len(w.waits) >= s.th.SlowPeerMinWaits {
		it.Status = Problem
	}
	it.score = float64(p99(w.waits)) / float64(max(th, 1))
	for _, p := range ps {
		if p99(p.waits) <= th || len(it.Evidence) == 5 {
			break
		}
		goids := slices.Sorted(maps.Keys(p.goids))
		fds := slices.Sorted(maps.Keys(p.fds))
		it.Evidence = append(it.Evidence, Evidence{Raddr: p.raddr, Rport: p.rport, Goids: goids, FDs: fds,
			Count: uint64(len(p.waits)), ValueNs: p99(p.waits), Stack: telling(p.stack, 3),
			Text: fmt.Sprintf("%s: %s, io_wait p99 %s, max %s; %s; %s",
				p.name, plural(len(p.waits), "wait"), dur(p99(p.waits)), dur(p.worst), goroutines(goids), fdList(fds))})
	}
	where := ""
	if fr := telling(w.stack, 1); len(fr) > 0 {
		where = " at " + fr[0]
	}
	others := ""
	if n := len(w.goids) - 1; n > 0 {
		others = fmt.Sprintf(" and %d others", n)
	}
	it.Finding = fmt.Sprintf("Goroutine %d%s%s waited on %s for %s p99 over %s: the peer is slow, not this service.",
		w.worstG, others, where, w.name, dur(p99(w.waits)), plural(len(w.waits), "wait"))
	return it
}

// schedDelay: the scheduler-delay p99 of each netpoll mode, from the
// summaries' log2 histograms: it lies in [bound/2, bound). Above the
// threshold for sure is a problem; straddling it, a warning.
func schedDelay(s *stream) Item {
	th := uint64(s.th.SchedDelayP99)
	it := Item{ID: "sched_delay", Title: "Scheduler latency", Unit: "ns",
		Threshold: "p99 ≤ " + dur(th), Limit: f64(float64(th))}
	type modeStats struct {
		count  uint64
		lo, hi uint64
	}
	modes := map[string]*modeStats{}
	sums := s.of("summary")
	old := false
	for _, e := range sums {
		for mode, w := range e.Waits {
			if w.Count == 0 {
				continue
			}
			if w.SchedDelayP99Ns == nil {
				old = true
				continue
			}
			hi := *w.SchedDelayP99Ns
			m := modes[mode]
			if m == nil {
				m = &modeStats{lo: math.MaxUint64}
				modes[mode] = m
			}
			m.count += w.Count
			m.hi = max(m.hi, hi)
			m.lo = min(m.lo, hi/2)
		}
	}
	if len(modes) == 0 {
		it.Status = NA
		switch {
		case old:
			it.Why = "the summaries have no sched_delay_p99_ns (written by an older gonetscope)"
		case len(sums) == 0:
			it.Why = "no summary event in the stream (trace --summary-interval 0?)"
		default:
			it.Why = "no netpoll wait in the window"
		}
		return it
	}
	// Only the modes with enough waits for a p99 are judged.
	names := slices.DeleteFunc(slices.Sorted(maps.Keys(modes)), func(n string) bool { return modes[n].count < s.th.SchedDelayMinWaits })
	if len(names) == 0 {
		var most uint64
		for _, m := range modes {
			most = max(most, m.count)
		}
		it.Status = NA
		it.Why = fmt.Sprintf("too few netpoll waits for a p99: at most %d of one mode, under %d", most, s.th.SchedDelayMinWaits)
		return it
	}
	slices.SortStableFunc(names, func(a, b string) int { return cmp.Compare(modes[b].hi, modes[a].hi) })
	w := modes[names[0]]
	it.Measured = f64(float64(w.hi))
	var parts []string
	for _, n := range names {
		m := modes[n]
		parts = append(parts, fmt.Sprintf("%s p99 %s–%s (%s)", n, dur(m.lo), dur(m.hi), plural(m.count, "wait")))
	}
	it.Value = strings.Join(parts[:min(2, len(parts))], ", ")
	switch {
	case w.lo >= th:
		it.Status = Problem
	case w.hi > th:
		it.Status = Warn
	default:
		it.Status = OK
		return it
	}
	it.score = float64(w.lo) / float64(max(th, 1))
	// The waits that were that late, from the netpoll_wait events, by
	// goroutine.
	type late struct {
		goid  *uint64
		n     int
		worst Event
		fds   map[int32]bool
	}
	byG := map[string]*late{}
	for _, e := range s.of("netpoll_wait") {
		if e.SchedDelayNs < th {
			continue
		}
		k := goroutineOf(e)
		l := byG[k]
		if l == nil {
			l = &late{goid: e.Goid, fds: map[int32]bool{}}
			byG[k] = l
		}
		l.n++
		l.fds[e.FD] = true
		if e.SchedDelayNs > l.worst.SchedDelayNs {
			l.worst = e
		}
	}
	ls := slices.Collect(maps.Values(byG))
	slices.SortFunc(ls, func(a, b *late) int { return cmp.Compare(b.worst.SchedDelayNs, a.worst.SchedDelayNs) })
	for _, l := range ls[:min(3, len(ls))] {
		fds := slices.Sorted(maps.Keys(l.fds))
		ev := Evidence{FDs: fds, Count: uint64(l.n), ValueNs: l.worst.SchedDelayNs, Stack: telling(l.worst.Stack, 3),
			Text: fmt.Sprintf("%s: %s of %s or more for the scheduler after its %s was ready, the longest %s",
				goroutineOf(l.worst), plural(l.n, "wait"), dur(th), fdList(fds), dur(l.worst.SchedDelayNs))}
		if l.goid != nil {
			ev.Goids = []uint64{*l.goid}
		}
		it.Evidence = append(it.Evidence, ev)
	}
	if len(ls) > 3 {
		it.Evidence = append(it.Evidence, Evidence{Text: fmt.Sprintf("and %d more goroutines", len(ls)-3)})
	}
	sure := "at least " + dur(w.lo)
	if it.Status == Warn {
		sure = "between " + dur(w.lo) + " and " + dur(w.hi)
	}
	it.Finding = fmt.Sprintf("Goroutines whose data had arrived waited for the Go scheduler: %s waits' p99 is %s. CPU-bound goroutines, or too few Ps (GOMAXPROCS), keep ready goroutines from running.",
		names[0], sure)
	return it
}

// belowThreshold is how many events of kind the summaries counted but the
// stream does not hold: with --connections notable (the default), the
// connects that succeeded with a handshake under min_wait_ns.
func belowThreshold(s *stream, kind string) int {
	n := 0
	for _, e := range s.of("summary") {
		n += int(e.BelowThreshold[kind])
	}
	return n
}

// handshake: the p99 of the successful connects' handshake times. The
// connects the stream only counts (belowThreshold) took less than
// --min-wait: they rank below every written one.
func handshake(s *stream) Item {
	th := uint64(s.th.HandshakeP99)
	it := Item{ID: "handshake", Title: "TCP handshake time", Unit: "ns",
		Threshold: "p99 ≤ " + dur(th), Limit: f64(float64(th))}
	type peer struct {
		times []uint64
		goids map[uint64]bool
		raddr string
		rport uint16
		stack []Frame
	}
	var all []uint64
	peers := map[string]*peer{}
	for _, e := range s.of("tcp_connect") {
		if e.Result != "ok" || e.HandshakeNs == 0 {
			continue
		}
		all = append(all, e.HandshakeNs)
		name := net.JoinHostPort(e.Raddr, strconv.Itoa(int(e.Rport)))
		p := peers[name]
		if p == nil {
			p = &peer{goids: map[uint64]bool{}, raddr: e.Raddr, rport: e.Rport}
			peers[name] = p
		}
		p.times = append(p.times, e.HandshakeNs)
		if e.Goid != nil {
			p.goids[*e.Goid] = true
		}
		if p.stack == nil {
			p.stack = e.Stack
		}
	}
	fast := belowThreshold(s, "tcp_connect")
	if len(all)+fast == 0 {
		it.Status, it.Value, it.Measured = OK, "no connect", f64(0)
		return it
	}
	// The fast ones as zeros: each is under --min-wait, and a p99 that
	// falls among them is under it too.
	all = append(all, make([]uint64, fast)...)
	slices.Sort(all)
	it.Measured = f64(float64(p99(all)))
	it.Value = fmt.Sprintf("p99 %s over %s", dur(p99(all)), plural(len(all), "connect"))
	if fast > 0 && p99(all) == 0 {
		it.Value = fmt.Sprintf("p99 under %s over %s", dur(minWaitOf(s)), plural(len(all), "connect"))
	}
	if p99(all) <= th {
		it.Status = OK
		return it
	}
	it.Status = Problem
	it.score = float64(p99(all)) / float64(max(th, 1))
	names := slices.Sorted(maps.Keys(peers))
	for _, n := range names {
		slices.Sort(peers[n].times)
	}
	slices.SortStableFunc(names, func(a, b string) int { return cmp.Compare(p99(peers[b].times), p99(peers[a].times)) })
	for _, n := range names[:min(5, len(names))] {
		p := peers[n]
		if p99(p.times) <= th {
			break
		}
		goids := slices.Sorted(maps.Keys(p.goids))
		it.Evidence = append(it.Evidence, Evidence{Raddr: p.raddr, Rport: p.rport, Goids: goids, Count: uint64(len(p.times)),
			ValueNs: p99(p.times), Stack: telling(p.stack, 3),
			Text: fmt.Sprintf("%s: %s, handshake p99 %s, max %s; %s", n, plural(len(p.times), "connect"), dur(p99(p.times)), dur(p.times[len(p.times)-1]), goroutines(goids))})
	}
	it.Finding = fmt.Sprintf("TCP handshakes took %s p99 (to %s): the network or the peer's accept queue is slow; a handshake over 1s is a retransmitted SYN.",
		dur(p99(all)), names[0])
	return it
}

// connectFailures: failed connects over the threshold's share of all.
func connectFailures(s *stream) Item {
	it := Item{ID: "connect_failures", Title: "Connect failures", Unit: "ratio",
		Threshold: fmt.Sprintf("≤ %g%% of connects", s.th.ConnectFailureRatio*100), Limit: f64(s.th.ConnectFailureRatio)}
	type fail struct {
		raddr, result string
		rport         uint16
		n             uint64
		goids         map[uint64]bool
		stack         []Frame
	}
	fails := map[string]*fail{}
	total, failed := 0, 0
	for _, e := range s.of("tcp_connect") {
		total++
		if e.Result == "ok" {
			continue
		}
		failed++
		k := fmt.Sprintf("%s:%d %s", e.Raddr, e.Rport, e.Result)
		f := fails[k]
		if f == nil {
			f = &fail{raddr: e.Raddr, rport: e.Rport, result: e.Result, goids: map[uint64]bool{}, stack: e.Stack}
			fails[k] = f
		}
		f.n++
		if e.Goid != nil {
			f.goids[*e.Goid] = true
		}
	}
	total += belowThreshold(s, "tcp_connect") // every one succeeded
	if total == 0 {
		it.Status, it.Value, it.Measured = OK, "no connect", f64(0)
		return it
	}
	ratio := float64(failed) / float64(total)
	it.Measured = f64(ratio)
	it.Value = fmt.Sprintf("%d of %d failed", failed, total)
	switch {
	case failed == 0:
		it.Status = OK
		return it
	case ratio > s.th.ConnectFailureRatio:
		it.Status = Problem
	default:
		it.Status = Warn
	}
	it.score = ratio / math.Max(s.th.ConnectFailureRatio, 0.001)
	fs := slices.Collect(maps.Values(fails))
	slices.SortFunc(fs, func(a, b *fail) int { return cmp.Compare(b.n, a.n) })
	for _, f := range fs[:min(5, len(fs))] {
		goids := slices.Sorted(maps.Keys(f.goids))
		it.Evidence = append(it.Evidence, Evidence{Raddr: f.raddr, Rport: f.rport, Goids: goids, Count: f.n, Stack: telling(f.stack, 3),
			Text: fmt.Sprintf("%s: %d × %s; %s", net.JoinHostPort(f.raddr, strconv.Itoa(int(f.rport))), f.n, f.result, goroutines(goids))})
	}
	f := fs[0]
	it.Finding = fmt.Sprintf("%d of %d connects failed; the most, %d, to %s with %s%s.",
		failed, total, f.n, net.JoinHostPort(f.raddr, strconv.Itoa(int(f.rport))), f.result, errnoWords[f.result])
	return it
}

var errnoWords = map[string]string{
	"ECONNREFUSED": ": nothing listens there",
	"ETIMEDOUT":    ": the peer never answered the SYN",
	"ECANCELED":    ": the dial was cancelled before the handshake ended (a dial timeout)",
	"ENETUNREACH":  ": no route to the network",
	"EHOSTUNREACH": ": no route to the host",
}

// goroutineLeak: goroutine_leak events (from the goroutine scan, or from
// --goroutines' uprobes in older streams).
func goroutineLeak(s *stream) Item {
	it := Item{ID: "goroutine_leak", Title: "Goroutine leaks", Threshold: "no site growing", Unit: "count"}
	// The goroutine scan (runtime reads) writes the events; streams of
	// older gonetscopes have them only from --goroutines' uprobes.
	scan := s.target.Hooks["runtime_reads"] != ""
	if !scan && s.target.Hooks["goroutines"] == "" {
		it.Status, it.Why = NA, "goroutine tracking was off: run with --goroutines (about 2 µs per goroutine created)"
		return it
	}
	if scan {
		if why := runtimeReadsOff(s, "no goroutine scan"); why != "" {
			it.Status, it.Why = NA, why
			return it
		}
	} else {
		for _, l := range s.target.Limits {
			if strings.HasPrefix(l, "no goroutine tracking") {
				it.Status, it.Why = NA, l
				return it
			}
		}
	}
	counts := s.of("goroutines")
	// Per site its latest event that says what the oldest goroutines are
	// parked on (one written as the process exits may not), else its latest.
	leaks := map[string]Event{}
	for _, e := range s.of("goroutine_leak") {
		k := e.Site + " " + e.CreatedAt
		if prev, ok := leaks[k]; ok && parkedKnown(prev) && !parkedKnown(e) {
			continue
		}
		leaks[k] = e
	}
	if len(leaks) == 0 {
		if len(counts) < 4 {
			it.Status = NA
			it.Why = fmt.Sprintf("the window held %d goroutine intervals; a leak shows over 4 (a longer --duration)", len(counts))
			return it
		}
		it.Status, it.Measured = OK, f64(0)
		it.Value = fmt.Sprintf("%d live goroutines, none growing at one site", counts[len(counts)-1].Live)
		return it
	}
	ls := slices.Collect(maps.Values(leaks))
	slices.SortFunc(ls, func(a, b Event) int { return cmp.Compare(b.Live, a.Live) })
	it.Status = Problem
	it.Measured = f64(float64(len(ls)))
	it.Value = fmt.Sprintf("%s growing; %d live at %s", plural(len(ls), "site"), ls[0].Live, ls[0].Site)
	it.score = float64(ls[0].Live) / 10
	for _, l := range ls[:min(5, len(ls))] {
		parked := ""
		if len(l.ParkedOn) > 0 && l.ParkedOn[0] != "" {
			parked = ", parked on " + l.ParkedOn[0]
		}
		it.Evidence = append(it.Evidence, Evidence{Site: l.Site, CreatedAt: l.CreatedAt, Goids: l.OldestGoids, Count: uint64(l.Live),
			Text: fmt.Sprintf("%s (go statement at %s): %d live, growth %v per interval; oldest %s%s, %s old",
				l.Site, short(l.CreatedAt), l.Live, l.Growth, goroutines(l.OldestGoids), parked, dur(l.OldestAgeNs))})
	}
	l := ls[0]
	parked := ""
	if len(l.ParkedOn) > 0 && l.ParkedOn[0] != "" {
		parked = fmt.Sprintf("; the oldest (goroutine %d) is parked on %s", l.OldestGoids[0], l.ParkedOn[0])
	}
	it.Finding = fmt.Sprintf("Goroutines of %s, started at %s, keep growing (%d live, %v per interval)%s: a leak.",
		l.Site, short(l.CreatedAt), l.Live, l.Growth, parked)
	return it
}

// fdUsage: the process's open fds against RLIMIT_NOFILE, from the
// process snapshots, and accept4 failing with EMFILE/ENFILE.
func fdUsage(s *stream) Item {
	it := Item{ID: "fd_usage", Title: "File descriptors", Unit: "ratio",
		Threshold: fmt.Sprintf("≤ %g%% of RLIMIT_NOFILE", s.th.FDUsage*100), Limit: f64(s.th.FDUsage)}
	var worst *Event
	ratio := -1.0
	why := ""
	for _, e := range fdSnapshots(s) {
		if e.OpenFDs == nil {
			why = e.Unknown["open_fds"]
			continue
		}
		r := 0.0
		if e.FDLimit > 0 {
			r = float64(*e.OpenFDs) / float64(e.FDLimit)
		}
		if r > ratio {
			e := e
			worst, ratio = &e, r
		}
	}
	errs := s.of("accept_error")
	if worst == nil && len(errs) == 0 {
		it.Status = NA
		it.Why = "no process snapshot, summary with fds or fd_pressure in the stream"
		if why != "" {
			it.Why = "open fds unknown: " + why
		}
		return it
	}
	if worst != nil {
		it.Measured = f64(ratio)
		it.Value = fmt.Sprintf("%d of %d open (%.0f%%)", *worst.OpenFDs, worst.FDLimit, ratio*100)
		if worst.FDLimit == 0 {
			it.Value = fmt.Sprintf("%d open, no limit", *worst.OpenFDs)
		}
	}
	if ratio <= s.th.FDUsage && len(errs) == 0 {
		it.Status = OK
		return it
	}
	it.Status = Problem
	it.score = math.Max(ratio/s.th.FDUsage, 1)
	if worst != nil && ratio > s.th.FDUsage {
		it.Evidence = append(it.Evidence, Evidence{Count: uint64(*worst.OpenFDs),
			Text: fmt.Sprintf("%d open fds of a soft limit of %d at %s", *worst.OpenFDs, worst.FDLimit, worst.Time.Format("15:04:05.000"))})
	}
	byPort := map[string][]Event{}
	for _, e := range errs {
		k := fmt.Sprintf("port %d (fd %d) %s", e.Lport, e.ListenFD, e.Errno)
		byPort[k] = append(byPort[k], e)
	}
	for _, k := range slices.Sorted(maps.Keys(byPort)) {
		es := byPort[k]
		ev := Evidence{Lport: es[0].Lport, FDs: []int32{es[0].ListenFD}, Count: uint64(len(es)),
			Text: fmt.Sprintf("accept4 on %s failed %d times", k, len(es))}
		if es[0].Goid != nil {
			ev.Goids = []uint64{*es[0].Goid}
		}
		it.Evidence = append(it.Evidence, ev)
	}
	if worst != nil && ratio > s.th.FDUsage {
		it.Finding = fmt.Sprintf("The process holds %d fds of its limit of %d (%.0f%%): near the limit, accept and dial fail with EMFILE; look for leaked connections or files, or raise the limit.",
			*worst.OpenFDs, worst.FDLimit, ratio*100)
	} else {
		it.Finding = fmt.Sprintf("accept4 failed %d times with %s: the process ran out of file descriptors.", len(errs), errs[0].Errno)
	}
	return it
}

// tcpStates: the process's sockets by TCP state; CLOSE_WAIT piling up
// means connections the peer closed and the process never did.
func tcpStates(s *stream) Item {
	it := Item{ID: "tcp_states", Title: "Sockets by TCP state", Unit: "count",
		Threshold: fmt.Sprintf("CLOSE_WAIT < %d", s.th.CloseWait), Limit: f64(float64(s.th.CloseWait))}
	// busiest is the snapshot with the most sockets, worst the one with
	// the most in CLOSE_WAIT.
	var busiest, worst *Event
	why := ""
	total := func(e *Event) (n int) {
		for _, c := range e.TCPStates {
			n += c
		}
		return n
	}
	for _, e := range s.of("process") {
		if e.TCPStates == nil {
			why = e.Unknown["tcp_states"]
			continue
		}
		e := e
		if busiest == nil || total(&e) > total(busiest) {
			busiest = &e
		}
		if worst == nil || e.TCPStates["CLOSE_WAIT"] > worst.TCPStates["CLOSE_WAIT"] {
			worst = &e
		}
	}
	last := busiest
	if last == nil {
		it.Status = NA
		it.Why = "no process snapshot in the stream (diagnose records them; trace does not)"
		if why != "" {
			it.Why = "TCP sockets unknown: " + why
		}
		return it
	}
	cw := worst.TCPStates["CLOSE_WAIT"]
	it.Measured = f64(float64(cw))
	it.Value = states(worst.TCPStates)
	if cw < s.th.CloseWait {
		it.Status = OK
		it.Value = "at most: " + states(last.TCPStates)
		return it
	}
	it.Status = Problem
	it.score = float64(cw) / float64(max(s.th.CloseWait, 1))
	byPort := map[uint16][]Socket{}
	for _, so := range worst.CloseWait {
		byPort[so.Lport] = append(byPort[so.Lport], so)
	}
	for _, port := range slices.Sorted(maps.Keys(byPort)) {
		ss := byPort[port]
		ev := Evidence{Lport: port, Laddr: ss[0].Laddr, Count: uint64(len(ss))}
		var peers []string
		for _, so := range ss {
			ev.FDs = append(ev.FDs, so.FD)
			if len(peers) < 3 {
				peers = append(peers, net.JoinHostPort(so.Raddr, strconv.Itoa(int(so.Rport))))
			}
		}
		ev.Text = fmt.Sprintf("local port %d: %d in CLOSE_WAIT, %s; peers %s", port, len(ss), fdList(ev.FDs), strings.Join(peers, ", "))
		it.Evidence = append(it.Evidence, ev)
	}
	if len(worst.CloseWait) < cw {
		it.Evidence = append(it.Evidence, Evidence{Text: fmt.Sprintf("(%d of %d CLOSE_WAIT sockets listed)", len(worst.CloseWait), cw)})
	}
	it.Finding = fmt.Sprintf("%d sockets sit in CLOSE_WAIT: their peers closed the connections and this process never closed its side; a connection leak (a missing Close, or a body never read to the end).", cw)
	return it
}

// gomaxprocs: the runtime's GOMAXPROCS against the cgroup's CPU quota.
func gomaxprocs(s *stream) Item {
	it := Item{ID: "gomaxprocs", Title: "GOMAXPROCS vs CPU quota", Unit: "cpus", Threshold: "GOMAXPROCS ≤ the quota, rounded up"}
	ps := s.of("process")
	if len(ps) == 0 {
		it.Status, it.Why = NA, "no process snapshot in the stream (diagnose records them; trace does not)"
		return it
	}
	e := ps[len(ps)-1]
	if e.GOMAXPROCS == nil {
		it.Status, it.Why = NA, "GOMAXPROCS unknown: "+e.Unknown["gomaxprocs"]
		return it
	}
	if e.CPUQuota == nil {
		if why, ok := e.Unknown["cpu_quota"]; ok {
			it.Status, it.Why = NA, "CPU quota unknown: "+why
			return it
		}
		it.Status, it.Value = OK, fmt.Sprintf("GOMAXPROCS %d, no CPU quota", *e.GOMAXPROCS)
		return it
	}
	quota := *e.CPUQuota
	limit := math.Ceil(quota)
	it.Measured, it.Limit = f64(float64(*e.GOMAXPROCS)), f64(limit)
	it.Value = fmt.Sprintf("GOMAXPROCS %d, quota %g CPUs", *e.GOMAXPROCS, quota)
	if float64(*e.GOMAXPROCS) <= limit {
		it.Status = OK
		return it
	}
	it.Status = Problem
	it.score = float64(*e.GOMAXPROCS) / limit
	it.Evidence = []Evidence{{Text: fmt.Sprintf("runtime.gomaxprocs = %d; %s allows %g CPUs", *e.GOMAXPROCS, e.CPUQuotaFrom, quota)}}
	it.Finding = fmt.Sprintf("GOMAXPROCS is %d but the cgroup allows %g CPUs: the runtime runs more threads than it gets CPU time for, and the kernel throttles them all; set GOMAXPROCS to %g (Go 1.25+ does unless GOMAXPROCS is set).",
		*e.GOMAXPROCS, quota, limit)
	return it
}

// cpuHotspots: the CPU the process used between the first and last
// process events, against what it can run on (GOMAXPROCS, or its CPU
// quota when lower): a problem at CPUSaturation or more. The evidence, and
// the value when it is not saturated, name where the CPU went: the
// functions of the cpu_profile event with the most samples.
func cpuHotspots(s *stream) Item {
	th := s.th.CPUSaturation
	it := Item{ID: "cpu_hotspots", Title: "CPU hot spots", Unit: "ratio", Limit: f64(th),
		Threshold: fmt.Sprintf("CPU use < %.0f%% of what it can run on", th*100)}
	var ps []Event
	why := "no process snapshot with the CPU time in the stream (diagnose records them; trace does not)"
	for _, e := range s.of("process") {
		if e.CPUNs != nil {
			ps = append(ps, e)
		} else if w, ok := e.Unknown["cpu_ns"]; ok {
			why = "the CPU time could not be read: " + w
		}
	}
	if len(ps) < 2 || !ps[len(ps)-1].Time.After(ps[0].Time) {
		it.Status, it.Why = NA, why
		return it
	}
	first, last := ps[0], ps[len(ps)-1]
	used := float64(*last.CPUNs-min(*last.CPUNs, *first.CPUNs)) / float64(last.Time.Sub(first.Time))
	capacity, of := 0.0, ""
	if last.GOMAXPROCS != nil {
		capacity, of = float64(*last.GOMAXPROCS), fmt.Sprintf("GOMAXPROCS %d", *last.GOMAXPROCS)
	}
	if last.CPUQuota != nil && (capacity == 0 || *last.CPUQuota < capacity) {
		capacity, of = *last.CPUQuota, fmt.Sprintf("a CPU quota of %g", *last.CPUQuota)
	}
	if capacity == 0 {
		it.Status, it.Why = NA, "neither GOMAXPROCS nor a CPU quota is known: "+last.Unknown["gomaxprocs"]
		return it
	}
	ratio := used / capacity
	it.Measured = f64(ratio)
	it.Value = fmt.Sprintf("%.2f CPUs used of %s (%.0f%%)", used, of, ratio*100)
	var funcs []CPUFunc
	var samples uint64
	if cp := s.of("cpu_profile"); len(cp) > 0 {
		funcs, samples = cp[len(cp)-1].Funcs, cp[len(cp)-1].Samples
	}
	if len(funcs) > 0 && samples > 0 {
		it.Value += fmt.Sprintf("; most samples in %s (%.0f%%)", funcs[0].Func, 100*float64(funcs[0].Samples)/float64(samples))
	}
	if ratio < th {
		it.Status = OK
		return it
	}
	it.Status = Problem
	it.score = ratio / th
	for _, f := range funcs[:min(3, len(funcs))] {
		it.Evidence = append(it.Evidence, Evidence{Site: f.Func, Count: f.Samples,
			Text: fmt.Sprintf("%s: %.0f%% of the CPU samples (%d of %d)", f.Func, 100*float64(f.Samples)/float64(samples), f.Samples, samples)})
	}
	if len(it.Evidence) == 0 {
		it.Evidence = append(it.Evidence, Evidence{Text: fmt.Sprintf("%.2f CPUs used of %s; no CPU profile in the stream says where", used, of)})
	}
	it.Finding = fmt.Sprintf("The process used %.0f%% of the CPU it can run on (%s)", ratio*100, of)
	if len(funcs) > 0 {
		it.Finding += fmt.Sprintf(", %.0f%% of it in %s", 100*float64(funcs[0].Samples)/float64(samples), funcs[0].Func)
	}
	it.Finding += ": every wait for the scheduler grows with it. Profile that code, or give the process more CPU."
	return it
}

// lostEvents: anything lost or suppressed leaves the report incomplete.
func lostEvents(s *stream) Item {
	it := Item{ID: "lost", Title: "Lost events", Threshold: "none", Unit: "count", Limit: f64(0)}
	lost := map[string]uint64{}
	var n uint64
	for _, e := range s.of("lost") {
		lost[e.LostEvent+" ("+e.Stream+")"] += e.Count
		n += e.Count
	}
	supp := map[string]uint64{}
	var m uint64
	for _, e := range s.of("summary") {
		for k, c := range e.Suppressed {
			supp[k] += c
			m += c
		}
	}
	it.Measured = f64(float64(n + m))
	if n+m == 0 {
		it.Status, it.Value = OK, "nothing lost"
		return it
	}
	it.Status = Warn
	it.score = 1
	it.Value = fmt.Sprintf("%d lost, %d over the rate limit", n, m)
	for _, k := range slices.Sorted(maps.Keys(lost)) {
		it.Evidence = append(it.Evidence, Evidence{Count: lost[k], Text: fmt.Sprintf("%d %s lost", lost[k], k)})
	}
	for _, k := range slices.Sorted(maps.Keys(supp)) {
		it.Evidence = append(it.Evidence, Evidence{Count: supp[k], Text: fmt.Sprintf("%d %s not written: over the rate limit", supp[k], k)})
	}
	it.Finding = fmt.Sprintf("%d events were lost and %d not written over the rate limit: the items built on them may miss what those showed.", n, m)
	return it
}

// p99 is the nearest-rank 99th percentile of sorted values.
func p99(sorted []uint64) uint64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(0.99*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// dur writes nanoseconds as a short duration: 151ms, 1.2s, 850µs.
func dur(ns uint64) string {
	d := time.Duration(ns)
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d >= time.Microsecond:
		return d.Round(time.Microsecond).String()
	}
	return d.String()
}

// minWaitOf is the attached event's min_wait_ns (0 when absent).
func minWaitOf(s *stream) uint64 {
	for _, e := range s.evs {
		if e.Event == "attached" {
			return e.MinWaitNs
		}
	}
	return 0
}

func minWaitNote(s *stream) string {
	if mw := minWaitOf(s); mw > 0 {
		return ", of waits ≥ " + dur(mw)
	}
	return ""
}

func topKey(m map[string]uint64) string {
	best, n := "", uint64(0)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] > n {
			best, n = k, m[k]
		}
	}
	return best
}

func goroutines(ids []uint64) string {
	if len(ids) == 0 {
		return "goroutine unknown"
	}
	var ss []string
	for _, id := range ids[:min(5, len(ids))] {
		ss = append(ss, strconv.FormatUint(id, 10))
	}
	more := ""
	if len(ids) > 5 {
		more = fmt.Sprintf(" and %d more", len(ids)-5)
	}
	if len(ids) == 1 {
		return "goroutine " + ss[0]
	}
	return "goroutines " + strings.Join(ss, ", ") + more
}

func goroutineOf(e Event) string {
	if e.Goid == nil {
		return "a goroutine"
	}
	return "goroutine " + strconv.FormatUint(*e.Goid, 10)
}

func fdList(fds []int32) string {
	var ss []string
	for _, fd := range fds[:min(8, len(fds))] {
		ss = append(ss, strconv.Itoa(int(fd)))
	}
	more := ""
	if len(fds) > 8 {
		more = fmt.Sprintf(" and %d more", len(fds)-8)
	}
	if len(fds) == 1 {
		return "fd " + ss[0]
	}
	return "fds " + strings.Join(ss, ", ") + more
}

func states(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(m[b], m[a]) })
	var ss []string
	for _, k := range keys {
		ss = append(ss, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(ss) == 0 {
		return "no TCP socket"
	}
	return strings.Join(ss, ", ")
}

// short is file:line with the file's directory and base only.
func short(fileLine string) string {
	dir, base := path.Split(fileLine)
	return path.Join(path.Base(dir), base)
}

// plumbing are the packages between a goroutine's own code and the
// system call it waited in: a stack's telling frames start above them.
var plumbing = []string{"runtime.", "syscall.", "internal/", "net.", "os.", "bufio.", "io.", "crypto/tls.", "golang.org/x/sys/"}

// telling returns up to n frames of stack, "func file:line", starting at
// the innermost frame outside the runtime, syscall and net plumbing.
func telling(stack []Frame, n int) []string {
	start := 0
	for i, f := range stack {
		if f.Func == "" {
			continue
		}
		if !slices.ContainsFunc(plumbing, func(p string) bool { return strings.HasPrefix(f.Func, p) }) {
			start = i
			break
		}
	}
	var out []string
	for i, f := range stack[start:] {
		if len(out) == n || (i > 0 && strings.HasPrefix(f.Func, "runtime.")) {
			break
		}
		if f.Func == "" {
			out = append(out, f.PC)
			continue
		}
		out = append(out, fmt.Sprintf("%s %s:%d", f.Func, short(f.File), f.Line))
	}
	return out
}

// plural is "1 wait", "3 waits".
func plural[N int | uint64 | int64](n N, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func parkedKnown(e Event) bool { return len(e.ParkedOn) > 0 && e.ParkedOn[0] != "" }
