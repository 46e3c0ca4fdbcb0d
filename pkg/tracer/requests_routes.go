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

// targetsWhere are the traced targets that has says yes to, by PID.
func targetsWhere(t *Tracer, has func(pid int) bool) map[uint32]*target {
	t.mu.Lock()
	defer t.mu.Unlock()
	tgs := map[uint32]*target{}
	for pid, tg := range t.targets {
		if has(pid) {
			tgs[uint32(pid)] = tg
		}
	}
	return tgs
}

// series sums a target's kernel histograms by key K (a route, a method):
// each key's description V (what the event lists beside its latency),
// count, time and buckets.
type series[K comparable, V any] map[K]*seriesSum[V]

type seriesSum[V any] struct {
	v       V
	lat     event.Latency
	buckets []uint64
}

// add counts one histogram of k in; new makes k's V the first time.
func (s series[K, V]) add(k K, new func() V, count, sumNs uint64, buckets []uint64) *V {
	sum := s[k]
	if sum == nil {
		sum = &seriesSum[V]{v: new(), buckets: make([]uint64, len(buckets))}
		s[k] = sum
	}
	sum.lat.Count += count
	sum.lat.SumNs += sumNs
	for i, n := range buckets {
		sum.buckets[i] += n
	}
	return &sum.v
}

// top lists the series, each given its latency by with, the busiest
// first (ties by less), cut at topRoutes: the rest as how many and their
// count.
func top[K comparable, V any](s series[K, V], with func(V, event.Latency) V, less func(a, b V) int) (list []V, other int, otherCount uint64) {
	type item struct {
		v V
		n uint64
	}
	var items []item
	for _, sum := range s {
		l := sum.lat
		l.P50GtNs, l.P50LeNs = requests.Percentile(sum.buckets, 0.5)
		l.P99GtNs, l.P99LeNs = requests.Percentile(sum.buckets, 0.99)
		items = append(items, item{with(sum.v, l), l.Count})
	}
	slices.SortFunc(items, func(a, b item) int { return cmp.Or(cmp.Compare(b.n, a.n), less(a.v, b.v)) })
	for i, it := range items {
		if i < topRoutes {
			list = append(list, it.v)
		} else {
			other++
			otherCount += it.n
		}
	}
	return list, other, otherCount
}

// writeHTTPRoutes writes the http_routes events.
func (r *requestTracing) writeHTTPRoutes(t *Tracer, sink Sink) error {
	tgs := targetsWhere(t, r.rq.Attached)
	if len(tgs) == 0 {
		return nil
	}
	// Read without deleting: the metrics' scrape deletes what is no
	// longer traced.
	hists, err := r.rq.Hists(func(uint32) bool { return true })
	if err != nil {
		return nil
	}
	type key struct{ method, route string }
	byPID := map[uint32]series[key, event.HTTPRoute]{}
	for _, h := range hists {
		if h.Client || tgs[h.PID] == nil {
			continue
		}
		if byPID[h.PID] == nil {
			byPID[h.PID] = series[key, event.HTTPRoute]{}
		}
		rt := byPID[h.PID].add(key{h.Method, h.Route}, func() event.HTTPRoute {
			return event.HTTPRoute{Method: h.Method, Route: h.Route, ByClass: map[string]uint64{}}
		}, h.Count, h.SumNs, h.Buckets)
		rt.ByClass[requests.StatusClass(h.Status)] += h.Count
	}
	for pid, tg := range tgs {
		ev := &event.HTTPRoutes{Header: controlHeader("http_routes", tg), SinceNs: uint64(time.Since(tg.since))}
		ev.Routes, ev.OtherRoutes, ev.OtherCount = top(byPID[pid],
			func(rt event.HTTPRoute, l event.Latency) event.HTTPRoute { rt.Latency = l; return rt },
			func(a, b event.HTTPRoute) int {
				return cmp.Or(cmp.Compare(a.Route, b.Route), cmp.Compare(a.Method, b.Method))
			})
		if err := sink.Write(ev); err != nil {
			return err
		}
	}
	return nil
}

// writeGRPCMethods writes the grpc_methods events.
func (r *requestTracing) writeGRPCMethods(t *Tracer, sink Sink) error {
	tgs := targetsWhere(t, r.rq.ServesGRPC)
	if len(tgs) == 0 {
		return nil
	}
	hists, err := r.rq.GRPCHists(func(uint32) bool { return true })
	if err != nil {
		return nil
	}
	byPID := map[uint32]series[string, event.GRPCMethod]{}
	for _, h := range hists {
		if h.Client || tgs[h.PID] == nil {
			continue
		}
		if byPID[h.PID] == nil {
			byPID[h.PID] = series[string, event.GRPCMethod]{}
		}
		m := byPID[h.PID].add(h.Method, func() event.GRPCMethod {
			m := event.GRPCMethod{ByCode: map[string]uint64{}}
			m.Service, m.Method = requests.SplitGRPCMethod(h.Method)
			return m
		}, h.Count, h.SumNs, h.Buckets)
		code := requests.GRPCCodeName(h.Code)
		if code == "" {
			code = "unread"
		}
		m.ByCode[code] += h.Count
	}
	for pid, tg := range tgs {
		ev := &event.GRPCMethods{Header: controlHeader("grpc_methods", tg), SinceNs: uint64(time.Since(tg.since))}
		ev.Methods, ev.OtherMethods, ev.OtherCount = top(byPID[pid],
			func(m event.GRPCMethod, l event.Latency) event.GRPCMethod { m.Latency = l; return m },
			func(a, b event.GRPCMethod) int {
				return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Method, b.Method))
			})
		if err := sink.Write(ev); err != nil {
			return err
		}
	}
	return nil
}
