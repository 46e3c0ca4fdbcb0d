package tracer

import (
	"time"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
)

// perTarget is what Run keeps for each traced PID: its rate limit
// (Options.MaxEventsPerSec, a token bucket holding one second of events)
// and the counts for its next summary event. Only Run's goroutine uses it.
type perTarget struct {
	tokens              float64
	refilled            time.Time
	written, suppressed map[string]uint64
	// below counts events of a chosen kind not written because they were
	// below their threshold (Options.AllConnections).
	below map[string]uint64
	// hists are the cumulative netpoll histograms at the last summary.
	hists map[histID]bpfobj.Hist
	since time.Time
}

type histID struct{ metric, mode string }

func (t *Tracer) perTarget(pid uint32) *perTarget {
	pt := t.perPID[pid]
	if pt == nil {
		now := time.Now()
		pt = &perTarget{tokens: float64(t.opts.MaxEventsPerSec), refilled: now, since: now,
			written: map[string]uint64{}, suppressed: map[string]uint64{}, below: map[string]uint64{}}
		t.perPID[pid] = pt
	}
	return pt
}

// admit says whether ev is written: its kind was chosen (--events), it is
// notable (--connections), and its target is within its rate limit.
// Events below their threshold or over the limit are counted in the
// target's next summary, never dropped silently.
func (t *Tracer) admit(ev event.Event) bool {
	h := ev.Head()
	switch h.Event {
	case "attached", "detached", "lost", "summary":
		return true
	}
	if !t.send[h.Event] {
		return false
	}
	if h.PID == 0 {
		return true
	}
	pt := t.perTarget(h.PID)
	if !t.opts.AllConnections && !t.notable(ev) {
		pt.below[h.Event]++
		return false
	}
	if rate := float64(t.opts.MaxEventsPerSec); rate > 0 {
		now := time.Now()
		pt.tokens = min(rate, pt.tokens+now.Sub(pt.refilled).Seconds()*rate)
		pt.refilled = now
		if pt.tokens < 1 {
			pt.suppressed[h.Event]++
			return false
		}
		pt.tokens--
	}
	pt.written[h.Event]++
	return true
}

// notable says whether a connect or an accept is worth a line: a connect
// that failed or whose handshake took at least MinWait, an accept whose
// connection waited in the queue at least MinWait. Every other event is.
func (t *Tracer) notable(ev event.Event) bool {
	minWait := uint64(t.opts.MinWait)
	switch e := ev.(type) {
	case *event.TCPConnect:
		return e.Result != "ok" || e.HandshakeNs >= minWait
	case *event.TCPAccept:
		return e.QueueWaitKnown && e.QueueWaitNs >= minWait
	}
	return true
}

// limitSink applies admit to everything Run writes.
type limitSink struct {
	Sink
	t *Tracer
}

func (s limitSink) Write(ev event.Event) error {
	if !s.t.admit(ev) {
		return nil
	}
	return s.Sink.Write(ev)
}

// writeSummaries writes one summary event per traced process: its netpoll
// waits since the last one (every wait, sent or not, from the in-kernel
// histograms) and its written and suppressed events.
func (t *Tracer) writeSummaries(sink Sink) error {
	t.mu.Lock()
	procs := make(map[uint32]event.Header, len(t.targets))
	for pid, tg := range t.targets {
		procs[uint32(pid)] = controlHeader("summary", tg)
	}
	t.mu.Unlock()
	return t.summarize(sink, procs)
}

// writeLastSummary writes the summary of a target that was just detached,
// right before its detached event: what it suppressed since the last
// summary is not lost.
func (t *Tracer) writeLastSummary(sink Sink, d *event.Detached) error {
	hdr := d.Header
	hdr.Event, hdr.Time = "summary", time.Now()
	return t.summarize(sink, map[uint32]event.Header{d.PID: hdr})
}

func (t *Tracer) summarize(sink Sink, procs map[uint32]event.Header) error {
	if len(procs) == 0 {
		return nil
	}
	traced := t.tracedNow()
	// Histograms of processes neither traced nor summarized now are
	// deleted, as at a metrics scrape.
	hists, err := t.netpoll.Hists(func(pid uint32) bool { _, ok := procs[pid]; return ok || traced(pid) })
	if err != nil {
		hists = nil // the waits are left out; the event counts still go out
	}
	cur := map[uint32]map[histID]bpfobj.Hist{}
	for _, h := range hists {
		if cur[h.PID] == nil {
			cur[h.PID] = map[histID]bpfobj.Hist{}
		}
		cur[h.PID][histID{h.Metric, h.Mode}] = h
	}
	now := time.Now()
	for pid, hdr := range procs {
		pt := t.perTarget(pid)
		s := &event.Summary{Header: hdr, IntervalNs: uint64(now.Sub(pt.since).Nanoseconds()),
			Waits: map[string]event.WaitStats{}, Written: pt.written, Suppressed: pt.suppressed, BelowThreshold: pt.below}
		s.FDs, _ = readFDs(int(pid), true)
		for id, h := range cur[pid] {
			if id.metric != "netpoll_wait" {
				continue
			}
			d := delta(h, pt.hists[id])
			if d.Count == 0 {
				continue
			}
			sched := delta(cur[pid][histID{"netpoll_sched_delay", id.mode}], pt.hists[histID{"netpoll_sched_delay", id.mode}])
			s.Waits[id.mode] = event.WaitStats{
				Count:           d.Count,
				TotalNs:         d.SumNs,
				IoWaitNs:        delta(cur[pid][histID{"netpoll_io_wait", id.mode}], pt.hists[histID{"netpoll_io_wait", id.mode}]).SumNs,
				SchedDelayNs:    sched.SumNs,
				P50Ns:           quantile(d, 0.50),
				P99Ns:           quantile(d, 0.99),
				SchedDelayP99Ns: quantile(sched, 0.99),
			}
		}
		if err := sink.Write(s); err != nil {
			return err
		}
		pt.hists, pt.since = cur[pid], now
		pt.written, pt.suppressed, pt.below = map[string]uint64{}, map[string]uint64{}, map[string]uint64{}
	}
	return nil
}

// delta is cur minus prev, bucket by bucket.
func delta(cur, prev bpfobj.Hist) bpfobj.Hist {
	d := bpfobj.Hist{Count: cur.Count - prev.Count, SumNs: cur.SumNs - prev.SumNs, Buckets: make([]uint64, len(cur.Buckets))}
	for i := range cur.Buckets {
		d.Buckets[i] = cur.Buckets[i]
		if i < len(prev.Buckets) {
			d.Buckets[i] -= prev.Buckets[i]
		}
	}
	return d
}

// quantile is the upper bound of the log2 bucket holding the q-quantile.
func quantile(h bpfobj.Hist, q float64) uint64 {
	want := uint64(q*float64(h.Count) + 0.5)
	var seen uint64
	for i, n := range h.Buckets {
		seen += n
		if seen >= want && seen > 0 {
			return 1 << (i + 1)
		}
	}
	return 0
}
