package tracer

import (
	"cmp"
	"slices"
	"time"

	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/requests"
)

// topRoutes is how many routes an http_routes event lists (methods a
// grpc_methods event); the rest are counted in other_routes (other_methods)
// and other_count.
const topRoutes = 20

// writeRoutes writes an http_routes event per target with request probes:
// its server requests by method and route since the attach, read from the
// kernel's histograms; and a grpc_methods event, the same for its gRPC
// server calls by method, per target with the gRPC server probes.
func (r *requestTracing) writeRoutes(t *Tracer, sink Sink) error {
	if err := r.writeHTTPRoutes(t, sink); err != nil {
		return err
	}
	return r.writeGRPCMethods(t, sink)
}

// writeHTTPRoutes writes the http_routes events.
func (r *requestTracing) writeHTTPRoutes(t *Tracer, sink Sink) error {
	t.mu.Lock()
	var tgs []*target
	for pid, tg := range t.targets {
		if r.rq.Attached(pid) {
			tgs = append(tgs, tg)
		}
	}
	t.mu.Unlock()
	if len(tgs) == 0 {
		return nil
	}
	want := map[uint32]*target{}
	for _, tg := range tgs {
		want[uint32(tg.proc.PID)] = tg
	}
	// Read without deleting: the metrics' scrape deletes what is no
	// longer traced.
	hists, err := r.rq.Hists(func(uint32) bool { return true })
	if err != nil {
		return nil
	}
	type key struct{ method, route string }
	byPID := map[uint32]map[key]*event.HTTPRoute{}
	buckets := map[uint32]map[key][]uint64{}
	for _, h := range hists {
		if h.Client || want[h.PID] == nil {
			continue
		}
		if byPID[h.PID] == nil {
			byPID[h.PID], buckets[h.PID] = map[key]*event.HTTPRoute{}, map[key][]uint64{}
		}
		k := key{h.Method, h.Route}
		rt := byPID[h.PID][k]
		if rt == nil {
			rt = &event.HTTPRoute{Method: h.Method, Route: h.Route, ByClass: map[string]uint64{}}
			byPID[h.PID][k] = rt
			buckets[h.PID][k] = make([]uint64, len(h.Buckets))
		}
		rt.Count += h.Count
		rt.SumNs += h.SumNs
		rt.ByClass[requests.StatusClass(h.Status)] += h.Count
		for i, n := range h.Buckets {
			buckets[h.PID][k][i] += n
		}
	}
	for _, tg := range tgs {
		pid := uint32(tg.proc.PID)
		ev := &event.HTTPRoutes{Header: controlHeader("http_routes", tg), SinceNs: uint64(time.Since(tg.since))}
		for k, rt := range byPID[pid] {
			rt.P50GtNs, rt.P50LeNs = requests.Percentile(buckets[pid][k], 0.5)
			rt.P99GtNs, rt.P99LeNs = requests.Percentile(buckets[pid][k], 0.99)
			ev.Routes = append(ev.Routes, *rt)
		}
		slices.SortFunc(ev.Routes, func(a, b event.HTTPRoute) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Route, b.Route), cmp.Compare(a.Method, b.Method))
		})
		if len(ev.Routes) > topRoutes {
			for _, rt := range ev.Routes[topRoutes:] {
				ev.OtherRoutes++
				ev.OtherCount += rt.Count
			}
			ev.Routes = ev.Routes[:topRoutes]
		}
		if err := sink.Write(ev); err != nil {
			return err
		}
	}
	return nil
}

// writeGRPCMethods writes the grpc_methods events.
func (r *requestTracing) writeGRPCMethods(t *Tracer, sink Sink) error {
	t.mu.Lock()
	want := map[uint32]*target{}
	for pid, tg := range t.targets {
		if r.rq.ServesGRPC(pid) {
			want[uint32(pid)] = tg
		}
	}
	t.mu.Unlock()
	if len(want) == 0 {
		return nil
	}
	hists, err := r.rq.GRPCHists(func(uint32) bool { return true })
	if err != nil {
		return nil
	}
	byPID := map[uint32]map[string]*event.GRPCMethod{}
	buckets := map[uint32]map[string][]uint64{}
	for _, h := range hists {
		if h.Client || want[h.PID] == nil {
			continue
		}
		if byPID[h.PID] == nil {
			byPID[h.PID], buckets[h.PID] = map[string]*event.GRPCMethod{}, map[string][]uint64{}
		}
		m := byPID[h.PID][h.Method]
		if m == nil {
			m = &event.GRPCMethod{ByCode: map[string]uint64{}}
			m.Service, m.Method = requests.SplitGRPCMethod(h.Method)
			byPID[h.PID][h.Method] = m
			buckets[h.PID][h.Method] = make([]uint64, len(h.Buckets))
		}
		m.Count += h.Count
		m.SumNs += h.SumNs
		code := requests.GRPCCodeName(h.Code)
		if code == "" {
			code = "unread"
		}
		m.ByCode[code] += h.Count
		for i, n := range h.Buckets {
			buckets[h.PID][h.Method][i] += n
		}
	}
	for pid, tg := range want {
		ev := &event.GRPCMethods{Header: controlHeader("grpc_methods", tg), SinceNs: uint64(time.Since(tg.since))}
		for full, m := range byPID[pid] {
			m.P50GtNs, m.P50LeNs = requests.Percentile(buckets[pid][full], 0.5)
			m.P99GtNs, m.P99LeNs = requests.Percentile(buckets[pid][full], 0.99)
			ev.Methods = append(ev.Methods, *m)
		}
		slices.SortFunc(ev.Methods, func(a, b event.GRPCMethod) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Service, b.Service), cmp.Compare(a.Method, b.Method))
		})
		if len(ev.Methods) > topRoutes {
			for _, m := range ev.Methods[topRoutes:] {
				ev.OtherMethods++
				ev.OtherCount += m.Count
			}
			ev.Methods = ev.Methods[:topRoutes]
		}
		if err := sink.Write(ev); err != nil {
			return err
		}
	}
	return nil
}
